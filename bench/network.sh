#!/usr/bin/env bash
# Network benchmark (issue 3): passthru cost of lindivert against its anchors, all measured
# in ONE run on the same machine, over a veth pair between two throw-away namespaces.
#
#   bash bench/network.sh [--quick]
#
# Setups (the divert always runs in the sender namespace "a", both directions of its veth):
#   (a) none        no divert
#   (b) nfq         bench/network/nfq_consumer.c: plain C NFQUEUE consumer, recvmmsg + one
#                   verdict sendmsg per round, NFQA_CFG_F_GSO; iptables NFQUEUE rules on
#                   OUTPUT -o veth and INPUT -i veth
#   (c) ebpf        eBPFDivert 0.0.5 (libebpfdivert.so from the pydivert 4.0.1 wheel) through
#                   bench/network/ebpfdivert_passthru.c, filter "true" on the veth, single-packet
#                   recv/send; ebpf-b64: the same with recv_ex/send_ex, 64 packets per call
#   (d) lindivert   target/release/lindivert passthru "true" --threads N [--batch 64] --duration S:
#                   verdicts in place (Handle::recv_with, no copy); -copy: passthru --copy, the
#                   WinDivert-shaped recv_batch/send_batch that copies each packet out and back;
#                   -bp50: passthru --busy-poll 50 (poll 50 us before sleeping)
#   and the *-nomatch variants: a handle (rule) that matches none of the traffic
#   ("udp.DstPort == 9" / iptables -p udp --dport 9).
# Workloads: TCP bulk (iperf3, 1 stream), 64-byte-payload UDP flood (delivered packets/s),
# UDP request/response round trips (10000 per round over 3 fresh starts of the divert, median
# and p99), all from "a" to "b"; thread scaling (lindivert-t1-work, lindivert-t2-work): the
# UDP flood from 2 senders x 8 flows through passthru --work-us 10 --batch 64, --threads 1 vs 2;
# send cost (the *-nomatch rows): the CPU time of sending one 64-byte UDP packet from "a"
# (the non-matching handle or rule open) against an identical twin pair "c"/"d" without
# one, 15000 batches of 64 timed in turn (netbench sendcost).
#
# Environment: LDBENCH_ROUNDS (default 3, --quick 1), LDBENCH_THREADS (lindivert --threads
# values, default "1"), LDBENCH_LINDIVERT (binary to use instead of building), LDBENCH_NO_BUILD=1
# (use target/release/lindivert as it is), LDBENCH_SETUPS (subset, e.g. "none nfq"),
# LDBENCH_WORKLOADS (subset of "tcp udp rtt udpw cost", e.g. "rtt").
set -euo pipefail

# The whole script is one function, parsed before it runs, so editing this file cannot disturb
# a run in progress.
main() {
root="$(cd "$(dirname "$0")/.." && pwd)"
here="$root/bench/network"

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "usage: bash bench/network.sh [--quick]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then echo "bench/network.sh: needs root (network namespaces)" >&2; exit 1; fi
for tool in ip iperf3 iptables gcc python3 ss; do
  command -v "$tool" >/dev/null || { echo "bench/network.sh: missing $tool" >&2; exit 1; }
done

if [ "$quick" = 1 ]; then
  rounds="${LDBENCH_ROUNDS:-1}"; tcp_secs=5; udp_secs=2
else
  rounds="${LDBENCH_ROUNDS:-3}"; tcp_secs=5; udp_secs=3
fi
pings=10000
# Round trips settle into a speed that holds for the life of the processes (how the threads
# land on the 2 vCPUs; medians of one start differ by up to 20 us between starts): each round
# measures 3 fresh starts and reports the median of all starts.
rtt_starts=3
threads_list="${LDBENCH_THREADS:-1}"
workloads="${LDBENCH_WORKLOADS:-tcp udp rtt udpw cost}"
# Thread scaling (the *-work rows): the divert spends $work_us us of its own CPU on each packet
# (passthru --work-us, a stand-in for an application's per-packet work), fed by $udpw_senders
# flood processes of $udpw_flows flows (source ports) each, so the divert, not the kernel path
# it shares with the traffic, is the bottleneck; the queues take whole flows (spread by flow),
# so there must be several; those rows run only this workload, for --threads 1 and 2.
work_us=10
udpw_senders=2
udpw_flows=8
# Send cost of non-matching packets (the *-nomatch rows): batches of 64 packets timed in
# turn through namespace a (divert open) and its twin c (none); throughput ratios move
# +-15-30 % between rounds on a noisy machine, this difference only by a few ns
cost_batches=15000

out="$root/bench/out/network"
mkdir -p "$out"
# One run at a time: two runs on the same machine spoil each other's numbers and logs.
exec 9>"$out/.lock"
if ! flock -n 9; then
  echo "bench/network.sh: waiting for another run to finish ..." >&2
  flock -w 900 9 || { echo "bench/network.sh: another run still holds $out/.lock" >&2; exit 1; }
fi
rm -f "$out"/r[0-9]*-* "$out"/*.log "$out"/*.out "$out"/*.err
results="$out/results.tsv"
: > "$results"
t_start=$(date +%s)
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- namespaces and cleanup
NSA="ldbench_$$_a"
NSB="ldbench_$$_b"
# the twin of a/b for the send-cost workload: set up alike, never with a divert
NSC="ldbench_$$_c"
NSD="ldbench_$$_d"
IFA=ldb0
IFB=ldb1
ADDRA=198.18.0.1   # RFC 2544 benchmark range, only inside our own namespaces
ADDRB=198.18.0.2
bgpids=""

ns_kill_all() {  # processes living in our namespaces are ours
  local ns="$1" p
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}
ns_down() {
  local ns
  for ns in "$NSA" "$NSB" "$NSC" "$NSD"; do
    if ip netns list | grep -qw "$ns"; then
      ns_kill_all "$ns"
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}
cleanup() { ns_down; }
trap cleanup EXIT
trap 'exit 130' INT TERM

veth_pair() {  # NS1 NS2: lo up in both, a veth between them, ADDRA in NS1, ADDRB in NS2
  local n1="$1" n2="$2" i
  ip netns add "$n1"
  ip netns add "$n2"
  ip -n "$n1" link set lo up
  ip -n "$n2" link set lo up
  ip link add "$IFA" netns "$n1" mtu 1500 type veth peer name "$IFB" netns "$n2" mtu 1500
  ip -n "$n1" addr add "$ADDRA/30" dev "$IFA"
  ip -n "$n2" addr add "$ADDRB/30" dev "$IFB"
  ip -n "$n1" link set "$IFA" up
  ip -n "$n2" link set "$IFB" up
  for i in $(seq 50); do
    ip netns exec "$n1" ping -c1 -W1 "$ADDRB" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench/network.sh: veth between $n1 and $n2 does not pass traffic" >&2
  return 1
}
ns_up() {  # [twin]: also the c/d pair
  ns_down
  veth_pair "$NSA" "$NSB"
  [ "${1:-}" = twin ] && veth_pair "$NSC" "$NSD"
  return 0
}
inA() { ip netns exec "$NSA" "$@"; }
inB() { ip netns exec "$NSB" "$@"; }

wait_file_line() {  # FILE PATTERN TIMEOUT_S
  local i n=$(( ${3%.*} * 20 ))
  for i in $(seq "$n"); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
stop_pid() {  # PID [SIGNAL...]: each signal in turn (default TERM), 2 s apart, then SIGKILL
  local pid="$1" sig i
  shift
  [ $# -gt 0 ] || set -- TERM
  for sig in "$@"; do
    kill -"$sig" "$pid" 2>/dev/null || break
    for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null || break
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- build
echo "== build"
cc_flags="-O2 -Wall -Wextra"
gcc $cc_flags -o "$out/netbench" "$here/netbench.c"
gcc $cc_flags -o "$out/nfq_consumer" "$here/nfq_consumer.c" -lmnl
gcc $cc_flags -o "$out/ebpfdivert_passthru" "$here/ebpfdivert_passthru.c" -ldl
NB="$out/netbench"
ebpf_lib="$(bash "$root/scripts/fetch-anchors.sh")"

ld_bin=""
ld_reason=""
if [ -n "${LDBENCH_LINDIVERT:-}" ]; then
  ld_bin="$LDBENCH_LINDIVERT"
else
  ld_bin="${CARGO_TARGET_DIR:-$root/target}/release/lindivert"
  if [ "${LDBENCH_NO_BUILD:-0}" != 1 ] && command -v cargo >/dev/null; then
    if ! (cd "$root" && cargo build --release --quiet -p lindivert-cli) >"$out/cargo-build.log" 2>&1; then
      ld_reason="cargo build --release -p lindivert-cli failed: $(grep -m1 -E '^error' "$out/cargo-build.log" || tail -n1 "$out/cargo-build.log")"
    fi
  fi
fi
if [ -z "$ld_reason" ] && [ ! -x "$ld_bin" ]; then
  ld_reason="$ld_bin does not exist"
fi

# ---------------------------------------------------------------- divert setups
# divert_start SETUP LOGNAME: starts the divert for SETUP in namespace a; sets DPID.
DPID=""
DKIND=""
divert_start() {
  local setup="$1" log="$2" filter="true" rulematch=""
  DPID=""
  DKIND=""
  case "$setup" in
    none) return 0 ;;
    *-nomatch) filter="udp.DstPort == 9"; rulematch="-p udp --dport 9" ;;
  esac
  case "$setup" in
    nfq*)
      DKIND=nfq
      ip netns exec "$NSA" "$out/nfq_consumer" -q 0 -r 64 >"$log.out" 2>"$log.err" &
      DPID=$!
      wait_file_line "$log.out" ready 5 || { echo "nfq_consumer did not start: $(cat "$log.err")" >&2; return 1; }
      # shellcheck disable=SC2086
      inA iptables -w -A OUTPUT -o "$IFA" $rulematch -j NFQUEUE --queue-num 0
      # shellcheck disable=SC2086
      inA iptables -w -A INPUT -i "$IFA" $rulematch -j NFQUEUE --queue-num 0
      ;;
    ebpf*)
      DKIND=ebpf
      local batch=1
      case "$setup" in ebpf-b64*) batch=64 ;; esac
      ip netns exec "$NSA" "$out/ebpfdivert_passthru" "$ebpf_lib" "$filter" "$IFA" --batch "$batch" >"$log.out" 2>"$log.err" &
      DPID=$!
      wait_file_line "$log.out" ready 10 || { echo "ebpfdivert_passthru did not start: $(cat "$log.err")" >&2; return 1; }
      ;;
    lindivert*)
      DKIND=lindivert
      local n="${setup#*-t}"; n="${n%%-*}"
      local lbatch=1 lcopy=()
      case "$setup" in *-b64*) lbatch=64 ;; esac
      case "$setup" in *-copy*) lcopy=(--copy) ;; esac
      case "$setup" in *-bp50*) lcopy+=(--busy-poll 50) ;; esac
      case "$setup" in *-work*) lbatch=64; lcopy+=(--work-us "$work_us") ;; esac
      ip netns exec "$NSA" "$ld_bin" passthru "$filter" --threads "$n" --batch "$lbatch" "${lcopy[@]}" --duration 120 >"$log.out" 2>"$log.err" &
      DPID=$!
      # Ready when its queue is bound (NFQUEUE back end) or it says so; else give it 2 s.
      local i
      for i in $(seq 40); do
        kill -0 "$DPID" 2>/dev/null || { echo "lindivert passthru exited: $(tail -n3 "$log.err")" >&2; return 1; }
        if grep -qi ready "$log.out" 2>/dev/null ||
           inA cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null | grep -q .; then
          sleep 0.3; break
        fi
        sleep 0.05
      done
      ;;
  esac
  bgpids="$bgpids $DPID"
}
divert_stop() {
  [ -n "$DPID" ] || return 0
  if [ "$DKIND" = nfq ]; then
    # rules first, then the consumer (queued packets still get their verdicts)
    inA iptables -w -F OUTPUT
    inA iptables -w -F INPUT
  fi
  stop_pid "$DPID" INT TERM
  DPID=""
}
divert_count() {  # LOG: packets the divert program passed through its handle
  case "$DKIND" in
    nfq) sed -n 's/.*queue 0, \([0-9]*\) packets.*/\1/p' "$1.err" | tail -n1 ;;
    lindivert) sed -n 's/^passthru: \([0-9]*\) packets.*/\1/p' "$1.out" | tail -n1 ;;
    ebpf) sed -n 's/.*received \([0-9]*\) packets.*/\1/p' "$1.err" | tail -n1 ;;
  esac
}
divert_failopen() {  # LOG: eBPFDivert packets let through undiverted (ring buffer full)
  [ "$DKIND" = ebpf ] && sed -n 's/.*ringbuf_full=\([0-9]*\).*/\1/p' "$1.err" | tail -n1
  return 0
}

rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$results"; }

# ---------------------------------------------------------------- workloads
run_tcp() {  # ROUND SETUP
  local r="$1" s="$2" log="$out/r$1-$2-tcp" srv
  divert_start "$s" "$log" || { rec "$r" "$s" error "divert did not start"; divert_stop; return 0; }
  ip netns exec "$NSB" iperf3 -s -1 -p 5201 >"$log.srv" 2>&1 &
  srv=$!; bgpids="$bgpids $srv"
  local i
  for i in $(seq 100); do inB ss -Hltn 'sport = :5201' | grep -q . && break; sleep 0.05; done
  if inA timeout $((tcp_secs + 20)) iperf3 -c "$ADDRB" -p 5201 -t "$tcp_secs" -J >"$log.json" 2>"$log.cerr"; then
    rec "$r" "$s" tcp_gbps "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9)' "$log.json")"
  else
    rec "$r" "$s" tcp_gbps fail
  fi
  stop_pid "$srv"
  divert_stop
  local c; c="$(divert_count "$log")"; [ -n "$c" ] && rec "$r" "$s" tcp_handle_pkts "$c"
  return 0
}
run_udp() {
  local r="$1" s="$2" log="$out/r$1-$2-udp" snk
  divert_start "$s" "$log" || { rec "$r" "$s" error "divert did not start"; divert_stop; return 0; }
  ip netns exec "$NSB" "$NB" sink 9000 $((udp_secs + 15)) >"$log.sink" 2>&1 &
  snk=$!; bgpids="$bgpids $snk"
  wait_file_line "$log.sink" ready 5 || true
  inA timeout $((udp_secs + 10)) "$NB" flood "$ADDRB" 9000 64 "$udp_secs" >"$log.flood" 2>&1 || true
  local i
  for i in $(seq 200); do kill -0 "$snk" 2>/dev/null || break; sleep 0.05; done
  stop_pid "$snk"
  divert_stop
  local sent recv
  sent="$(awk '/^sent/ {print $2, $4}' "$log.flood")"
  recv="$(awk '/^received/ {print $2, $4}' "$log.sink")"
  rec "$r" "$s" udp_offered_pps "${sent#* }"
  rec "$r" "$s" udp_delivered_pkts "${recv% *}"
  rec "$r" "$s" udp_delivered_pps "${recv#* }"
  local c f; c="$(divert_count "$log")"; f="$(divert_failopen "$log")"
  [ -n "$c" ] && rec "$r" "$s" udp_handle_pkts "$c"
  [ -n "$f" ] && rec "$r" "$s" udp_failopen_pkts "$f"
  return 0
}
run_udpw() {  # ROUND SETUP: thread scaling: $udpw_senders floods, $work_us us of work per packet
  local r="$1" s="$2" log="$out/r$1-$2-udpw" snk i fl=()
  divert_start "$s" "$log" || { rec "$r" "$s" error "divert did not start"; divert_stop; return 0; }
  ip netns exec "$NSB" "$NB" sink 9000 $((udp_secs + 15)) >"$log.sink" 2>&1 &
  snk=$!; bgpids="$bgpids $snk"
  wait_file_line "$log.sink" ready 5 || true
  for i in $(seq "$udpw_senders"); do
    inA timeout $((udp_secs + 10)) "$NB" flood "$ADDRB" 9000 64 "$udp_secs" "$udpw_flows" >"$log.flood$i" 2>&1 &
    fl+=("$!")
  done
  wait "${fl[@]}" 2>/dev/null || true
  for i in $(seq 200); do kill -0 "$snk" 2>/dev/null || break; sleep 0.05; done
  stop_pid "$snk"
  divert_stop
  local recv; recv="$(awk '/^received/ {print $2, $4}' "$log.sink")"
  rec "$r" "$s" udpw_delivered_pps "${recv#* }"
  local c; c="$(divert_count "$log")"; [ -n "$c" ] && rec "$r" "$s" udpw_handle_pkts "$c"
  return 0
}
run_cost() {  # ROUND SETUP: CPU cost of sending a non-matching packet through a (divert
  # open) against its twin c (none), interleaved batch by batch (netbench sendcost); the
  # packets go to b (and d), where nothing listens
  local r="$1" s="$2" log="$out/r$1-$2-cost" with without diff
  divert_start "$s" "$log" || { rec "$r" "$s" error "divert did not start"; divert_stop; return 0; }
  if "$NB" sendcost "/var/run/netns/$NSA" "/var/run/netns/$NSC" "$ADDRB" 9000 "$cost_batches" >"$log.cost" 2>&1; then
    read -r _ with without diff < <(grep '^sendcost' "$log.cost")
    rec "$r" "$s" cost_ns_with "$with"
    rec "$r" "$s" cost_ns_without "$without"
    rec "$r" "$s" cost_ns_added "$diff"
  else
    rec "$r" "$s" cost_ns_added fail
  fi
  divert_stop
  return 0
}
run_rtt() {  # $rtt_starts fresh starts of the divert (and echo), $pings / $rtt_starts each
  local r="$1" s="$2" k log ech
  for k in $(seq "$rtt_starts"); do
    log="$out/r$1-$2-rtt$k"
    divert_start "$s" "$log" || { rec "$r" "$s" error "divert did not start"; divert_stop; return 0; }
    ip netns exec "$NSB" "$NB" echo 9001 >"$log.echo" 2>&1 &
    ech=$!; bgpids="$bgpids $ech"
    wait_file_line "$log.echo" ready 5 || true
    inA timeout 60 "$NB" pingpong "$ADDRB" 9001 $((pings / rtt_starts)) 64 >"$log.ping" 2>&1 || true
    stop_pid "$ech"
    divert_stop
    read -r _ med p99 _ _ lost < <(grep '^rtt_us' "$log.ping" || echo "rtt_us fail fail fail fail fail")
    rec "$r" "$s" rtt_med_us "$med"
    rec "$r" "$s" rtt_p99_us "$p99"
    rec "$r" "$s" rtt_lost "$lost"
    local c; c="$(divert_count "$log")"; [ -n "$c" ] && rec "$r" "$s" rtt_handle_pkts "$c"
  done
  return 0
}

# ---------------------------------------------------------------- plan
setups="none nfq ebpf ebpf-b64"
for n in $threads_list; do setups="$setups lindivert-t$n lindivert-t$n-b64 lindivert-t$n-copy lindivert-t$n-bp50"; done
setups="$setups nfq-nomatch ebpf-nomatch"
for n in $threads_list; do setups="$setups lindivert-t$n-nomatch"; done
setups="$setups lindivert-t1-work lindivert-t2-work"
[ -n "${LDBENCH_SETUPS:-}" ] && setups="$LDBENCH_SETUPS"

ns_up
if [ -z "$ld_reason" ]; then
  echo "== probe: lindivert passthru"
  set +e
  inA timeout 15 "$ld_bin" passthru "true" --threads 1 --duration 1 >"$out/lindivert-probe.out" 2>"$out/lindivert-probe.err"
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    msg="$(grep -m1 -v '^\s*$' "$out/lindivert-probe.err" || true)"
    [ "$rc" = 124 ] && msg="did not exit within --duration 1"
    ld_reason="\`lindivert passthru \"true\" --threads 1 --duration 1\` exited with $rc: ${msg:-no message}"
  fi
fi
if [ -n "$ld_reason" ]; then
  for s in $setups; do
    case "$s" in lindivert*) rec 0 "$s" unavailable "$ld_reason" ;; esac
  done
  setups="$(for s in $setups; do case "$s" in lindivert*) ;; *) printf '%s ' "$s" ;; esac; done)"
fi

echo "== run: $rounds round(s); TCP ${tcp_secs}s, UDP ${udp_secs}s, $rtt_starts x $((pings / rtt_starts)) round trips; setups: $setups"
read -r -a plan <<< "$setups"
for r in $(seq "$rounds"); do
  # round 1 in plan order, later rounds each in their own fixed shuffle: slow drifts of the
  # machine favour no setup, and no setup always runs right after the same one (with a
  # rotated order, the row measured right after eBPFDivert's had the slowest round trips of
  # all lindivert rows in every round of three runs; not seen in other orders, cause unknown)
  if [ "$r" = 1 ]; then
    order=("${plan[@]}")
  else
    mapfile -t order < <(python3 -c 'import random, sys; v = sys.argv[2:]; random.Random(int(sys.argv[1])).shuffle(v); print("\n".join(v))' "$r" "${plan[@]}")
  fi
  for s in "${order[@]}"; do
    printf '   round %d/%d  %-22s' "$r" "$rounds" "$s"
    case "$s" in
      *-nomatch) case " $workloads " in *" cost "*) ns_up twin ;; *) ns_up ;; esac ;;
      *) ns_up ;;
    esac
    case "$s" in
      *-work) case " $workloads " in *" udpw "*) run_udpw "$r" "$s" ;; esac ;;
      *)
        case " $workloads " in *" tcp "*) run_tcp "$r" "$s" ;; esac
        case " $workloads " in *" udp "*) run_udp "$r" "$s" ;; esac
        case " $workloads " in *" rtt "*) run_rtt "$r" "$s" ;; esac
        case "$s" in
          *-nomatch) case " $workloads " in *" cost "*) run_cost "$r" "$s" ;; esac ;;
        esac
        ;;
    esac
    awk -F'\t' -v r="$r" -v s="$s" '$1==r && $2==s && ($3=="tcp_gbps"||$3=="udp_delivered_pps"||$3=="rtt_med_us"||$3=="udpw_delivered_pps"||$3=="cost_ns_added") {printf " %s=%s", $3, $4}' "$results"
    echo
  done
done
ns_down

# ---------------------------------------------------------------- report
echo
echo "machine: $(nproc) CPU(s), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average at start: $load_start, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes numbers noisy; compare rows of one run)"
python3 "$here/report.py" "$results" "$rounds" "$tcp_secs" "$udp_secs" "$rtt_starts starts x $((pings / rtt_starts))" "$work_us" "$udpw_senders x $udpw_flows"

# ---------------------------------------------------------------- leftovers
left=""
ip netns list | grep -q "ldbench_$$_" && left="$left namespaces"
for p in $bgpids; do  # still alive and still one of our programs (pids may be reused)
  exe="$(readlink "/proc/$p/exe" 2>/dev/null || true)"
  [ -n "$exe" ] || continue
  case "$exe" in "$out"/*|*/iperf3|"$ld_bin") left="$left $p:$exe" ;; esac
done
if [ -n "$left" ]; then echo "cleanup: LEFT OVER:$left" >&2; else echo "cleanup: namespaces, rules and processes removed"; fi
echo "total time: $(( $(date +%s) - t_start )) s; raw results: $results, logs: $out/"
}

# (exit on the same line: bash reads no further, even if this file was edited meanwhile)
main "$@"; exit
