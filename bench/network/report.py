"""Prints the tables of bench/network.sh from its results.tsv (round, setup, key, value).

Medians over rounds. Ratios are against the same run's no-divert row and against the
anchors of the same kind: matching rows against the C NFQUEUE consumer and eBPFDivert with
filter "true", non-matching rows against their non-matching counterparts.
"""

import os
import statistics
import sys

path, rounds, tcp_secs, udp_secs, pings = sys.argv[1:6]
work_us, senders = (sys.argv[6:8] + ["?", "?"])[:2]
multi = int(rounds) > 1

rows = {}
unavailable = {}
errors = {}
for line in open(path):
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 4:
        continue
    _round, setup, key, value = parts
    if key == "unavailable":
        unavailable[setup] = value
        continue
    if key == "error":
        errors.setdefault(setup, []).append(value)
        continue
    try:
        v = float(value)
    except ValueError:
        v = None
    rows.setdefault(setup, {}).setdefault(key, []).append(v)


def med(setup, key):
    vals = [v for v in rows.get(setup, {}).get(key, []) if v is not None and v == v]
    return statistics.median(vals) if vals else None


def nfail(setup, key):
    return sum(1 for v in rows.get(setup, {}).get(key, []) if v is None or v != v)


def threads_of(setup):
    """The --threads of a lindivert setup name (lindivert-tN...)."""
    return int(setup.split("-t", 1)[1].split("-", 1)[0])


def label(setup):
    names = {
        "none": "(a) no divert",
        "nfq": "(b) C NFQUEUE consumer",
        "ebpf": "(c) eBPFDivert recv/send",
        "ebpf-b64": "(c) eBPFDivert recv_ex/send_ex x64",
        "nfq-nomatch": "(b) C NFQUEUE, rule udp dport 9",
        "ebpf-nomatch": "(c) eBPFDivert \"udp.DstPort == 9\"",
    }
    if setup in names:
        return names[setup]
    if setup.startswith("lindivert"):
        n = threads_of(setup)
        if setup.endswith("-nomatch"):
            return f"(d) lindivert \"udp.DstPort == 9\" t{n}"
        extra = ""
        if "-b64" in setup:
            extra += " --batch 64"
        if "-copy" in setup:
            extra += " --copy"
        if "-bp50" in setup:
            extra += " --busy-poll 50"
        if setup.endswith("-work"):
            extra += f" --work-us {work_us}"
        return f"(d) lindivert --threads {n}{extra}"
    return setup


def is_work(setup):
    """The thread-scaling rows (their own workload, their own table)."""
    return setup.endswith("-work")


work_setups = sorted((s for s in set(rows) | set(unavailable) if is_work(s)),
                     key=threads_of)
all_setups = ["none", "nfq", "ebpf", "ebpf-b64"]
extra = sorted(s for s in set(rows) | set(unavailable)
               if s.startswith("lindivert") and not s.endswith("-nomatch") and not is_work(s))
all_setups += extra + ["nfq-nomatch", "ebpf-nomatch"]
all_setups += sorted(s for s in set(rows) | set(unavailable) if s.startswith("lindivert") and s.endswith("-nomatch"))
all_setups += sorted(s for s in set(rows) if s not in all_setups and not is_work(s))


def refs(setup):
    if setup.endswith("-nomatch"):
        return "nfq-nomatch", "ebpf-nomatch"
    return "nfq", "ebpf"


def ratio(v, ref):
    if v is None or ref is None or ref == 0:
        return "-"
    return f"{v / ref:.2f}"


def table(title, key, unit, fmt, higher_better, extra_cols=None):
    if not any(key in r for r in rows.values()):
        return  # workload not run (LDBENCH_WORKLOADS)
    print(title)
    hdr = f"  {'setup':44} {unit:>10}  {'vs none':>7} {'vs NFQ':>7} {'vs eBPF':>7}"
    if multi:
        hdr += f" {'range':>15}"
    for name, _fn in extra_cols or []:
        hdr += f" {name:>12}"
    print(hdr)
    for s in all_setups:
        if s in unavailable:
            print(f"  {label(s):44} lindivert: not available ({unavailable[s]})")
            continue
        if s not in rows or key not in rows[s]:
            continue
        v = med(s, key)
        rn, re_ = refs(s)
        line = f"  {label(s):44} {fmt(v) if v is not None else 'failed':>10}  {ratio(v, med('none', key)):>7}"
        line += f" {ratio(v, med(rn, key)):>7} {ratio(v, med(re_, key)):>7}"
        if multi:
            vals = [x for x in rows[s].get(key, []) if x is not None and x == x]
            line += f" {(fmt(min(vals)) + '..' + fmt(max(vals))) if vals else '-':>15}"
        for _name, fn in extra_cols or []:
            line += f" {fn(s):>12}"
        if nfail(s, key):
            line += f"  ({nfail(s, key)} failed run(s))"
        if s in errors:
            line += f"  [{'; '.join(sorted(set(errors[s])))}]"
        print(line)
    print(f"  ratios: value / reference ({'higher' if higher_better else 'lower'} is better); "
          "non-matching rows are compared with the non-matching anchors")
    print()


def udp_through(s):
    h, d = med(s, "udp_handle_pkts"), med(s, "udp_delivered_pkts")
    if s == "none":
        return "-"
    if h is None or not d:
        return "?"
    return f"{min(h / d, 9.99) * 100:.0f}%"


def udp_handle_kpps(s):
    h, d, pps = med(s, "udp_handle_pkts"), med(s, "udp_delivered_pkts"), med(s, "udp_delivered_pps")
    if s == "none":
        return "-"
    if h is None or not d or pps is None:
        return "?"
    return f"{min(h / d, 1.0) * pps / 1e3:.1f}"


def udp_failopen(s):
    f = med(s, "udp_failopen_pkts")
    return "-" if f is None else f"{f:.0f}"


def offered(s):
    o = med(s, "udp_offered_pps")
    return "-" if o is None else f"{o / 1e3:.0f}"


def p99(s):
    v = med(s, "rtt_p99_us")
    return "-" if v is None else f"{v:.1f}"


def added(s):
    v, n = med(s, "rtt_med_us"), med("none", "rtt_med_us")
    return "-" if v is None or n is None else f"{v - n:+.1f}"


def lost(s):
    v = med(s, "rtt_lost")
    return "-" if v is None else f"{v:.0f}"


print(f"== network benchmark: veth (MTU 1500) between two namespaces, divert in the sender's; "
      f"{rounds} round(s), medians")
table(f"TCP bulk, iperf3 1 stream, {tcp_secs} s", "tcp_gbps", "Gbit/s", lambda v: f"{v:.2f}", True)
table(f"UDP 64-byte payloads, sendmmsg flood {udp_secs} s: delivered", "udp_delivered_pps", "kpps",
      lambda v: f"{v / 1e3:.1f}", True,
      [("offered kpps", offered), ("via handle", udp_through), ("handle kpps", udp_handle_kpps),
       ("fail-open", udp_failopen)])
table(f"UDP round trip, 64-byte payload, {pings} exchanges per round: median of the starts", "rtt_med_us", "us",
      lambda v: f"{v:.1f}", False, [("p99 us", p99), ("added us", added), ("lost", lost)])
if any("udp_delivered_pps" in r for r in rows.values()):
    print("  no divert is not an upper bound for the UDP flood on a small machine: without a divert the")
    print("  sender's own syscall carries each packet through veth and the receiving stack; a divert takes")
    print("  it at the hook and re-injects it from another thread, so sender and re-injection run in parallel.")
    print("  via handle: packets the divert program received and re-injected / packets delivered; handle kpps:")
    print("  the delivered rate that went through the handle. eBPFDivert lets packets pass undiverted when its")
    print("  ring buffer is full (fail-open column: packets), which inflates its delivered rate.")
print()


cost_setups = [s for s in all_setups if s.endswith("-nomatch") and "cost_ns_added" in rows.get(s, {})]
if cost_setups:
    print("Send cost of a non-matching packet: CPU time to send one 64-byte UDP packet from the divert's")
    print("namespace (handle or rule open) and from an identical twin namespace without one, batches of 64")
    print("timed in turn; added = median of the batch-by-batch differences (rounds: median)")
    print(f"  {'setup':44} {'with ns':>8} {'twin ns':>8} {'added ns':>9} {'added %':>8}"
          + (f" {'added range':>14}" if multi else ""))
    for s in cost_setups:
        w, o, a = med(s, "cost_ns_with"), med(s, "cost_ns_without"), med(s, "cost_ns_added")
        pct = f"{100 * a / o:+.1f}" if a is not None and o else "-"
        line = (f"  {label(s):44} {(f'{w:.0f}' if w is not None else '-'):>8}"
                f" {(f'{o:.0f}' if o is not None else '-'):>8} {(f'{a:+.0f}' if a is not None else 'failed'):>9}"
                f" {pct:>8}")
        if multi:
            vals = [x for x in rows[s]["cost_ns_added"] if x is not None and x == x]
            line += f" {(f'{min(vals):+.0f}..{max(vals):+.0f}') if vals else '-':>14}"
        if nfail(s, "cost_ns_added"):
            line += f"  [{nfail(s, 'cost_ns_added')} failed]"
        print(line)
    print()


if work_setups:
    print(f"Thread scaling: UDP 64-byte payloads from {senders} flows (processes x sockets), {udp_secs} s, through"
          f" passthru --work-us {work_us} --batch 64 ({work_us} us of the divert's own CPU per packet)")
    print(f"  {'setup':44} {'kpps':>10}  {'vs t1':>7}" + (f" {'range':>15}" if multi else ""))
    base = next((w for w in work_setups if threads_of(w) == 1), None)
    for w in work_setups:
        if w in unavailable:
            print(f"  {label(w):44} lindivert: not available ({unavailable[w]})")
            continue
        v = med(w, "udpw_delivered_pps")
        line = f"  {label(w):44} {(f'{v / 1e3:.1f}' if v is not None else 'failed'):>10}"
        line += f"  {ratio(v, med(base, 'udpw_delivered_pps') if base else None):>7}"
        if multi:
            vals = [x / 1e3 for x in rows.get(w, {}).get("udpw_delivered_pps", []) if x is not None and x == x]
            line += f" {(f'{min(vals):.1f}..{max(vals):.1f}') if vals else '-':>15}"
        if w in errors:
            line += f"  [{'; '.join(sorted(set(errors[w])))}]"
        print(line)
    print("  the divert, not the kernel path it shares with sender and receiver, is the bottleneck here;")
    print("  each thread reads its own queue; the queues take whole flows (a hash of addresses and ports)")
    print()


def handle_rate(s):
    """Delivered packets/s that went through the handle (eBPFDivert's fail-open excluded)."""
    h, d, pps = med(s, "udp_handle_pkts"), med(s, "udp_delivered_pkts"), med(s, "udp_delivered_pps")
    if h is None or not d or pps is None:
        return None
    return min(h / d, 1.0) * pps


def check(v, ref, goal, higher=True):
    """'0.83 no' style cell: the ratio v/ref against goal."""
    if v is None or ref is None or ref == 0:
        return "-"
    r = v / ref
    ok = r >= goal if higher else r <= goal
    return f"{r:.2f} {'yes' if ok else 'NO'}"


def added_us(s):
    v, n = med(s, "rtt_med_us"), med("none", "rtt_med_us")
    return None if v is None or n is None else v - n


# The issue's goals, checked on this run's medians (each a ratio and whether it holds).
lind = [s for s in all_setups if s.startswith("lindivert") and not s.endswith("-nomatch") and s in rows]
w1 = next((w for w in work_setups if threads_of(w) == 1 and w in rows), None)
wn = [w for w in work_setups if threads_of(w) > 1 and w in rows]
if lind:
    print("Goals (issue 3), this run:")
    hdr = (f"  {'setup':44} {'TCP/none':>10} {'TCP/eBPF':>10} {'UDP/NFQ':>10} {'UDP/eBPF*':>10}"
           f" {'RTT+/NFQ+':>10}")
    print(hdr)
    print(f"  {'goal':44} {'>= 0.75':>10} {'>= 2':>10} {'>= 1':>10} {'>= 1.5':>10} {'<= 1':>10}")
    for s in lind:
        a, c = added_us(s), added_us("nfq")
        print(f"  {label(s):44} {check(med(s, 'tcp_gbps'), med('none', 'tcp_gbps'), 0.75):>10}"
              f" {check(med(s, 'tcp_gbps'), med('ebpf', 'tcp_gbps'), 2.0):>10}"
              f" {check(med(s, 'udp_delivered_pps'), med('nfq', 'udp_delivered_pps'), 1.0):>10}"
              f" {check(handle_rate(s), handle_rate('ebpf'), 1.5):>10}"
              f" {check(a, c, 1.0, higher=False):>10}")
    nom = [s for s in all_setups if s.startswith("lindivert") and s.endswith("-nomatch") and s in rows]
    if nom:
        print(f"  {'non-matching (goal: within 5 % of no divert)':44} {'TCP/none':>10} {'UDP/none':>10}"
              f" {'RTT/none':>10} {'cost/twin':>10}")
        for s in nom:
            w, o = med(s, "cost_ns_added"), med(s, "cost_ns_without")
            print(f"  {label(s):44} {check(med(s, 'tcp_gbps'), med('none', 'tcp_gbps'), 0.95):>10}"
                  f" {check(med(s, 'udp_delivered_pps'), med('none', 'udp_delivered_pps'), 0.95):>10}"
                  f" {check(med(s, 'rtt_med_us'), med('none', 'rtt_med_us'), 1.05, higher=False):>10}"
                  f" {check(None if w is None or o is None else o + w, o, 1.05, higher=False):>10}")
    ts = sorted({threads_of(s) for s in lind})
    if len(ts) > 1:
        base = f"lindivert-t{ts[0]}"
        for t in ts[1:]:
            s = f"lindivert-t{t}"
            if s in rows and base in rows:
                print(f"  --threads {t} vs {ts[0]} (goal: more where cores allow; this machine has"
                      f" {os.cpu_count()} CPUs): TCP {check(med(s, 'tcp_gbps'), med(base, 'tcp_gbps'), 1.0)},"
                      f" UDP {check(med(s, 'udp_delivered_pps'), med(base, 'udp_delivered_pps'), 1.0)}")
    if w1:
        for w in wn:
            print(f"  --threads {threads_of(w)} vs 1, {work_us} us of work per packet (goal: more where cores"
                  f" allow; {os.cpu_count()} CPUs): {check(med(w, 'udpw_delivered_pps'), med(w1, 'udpw_delivered_pps'), 1.1)}"
                  " (yes at >= 1.1)")
    print("  *: eBPFDivert's rate through its handle (its fail-open packets excluded); RTT+: added round"
          " trip;")
    print("  cost/twin: a non-matching packet's send cost against the twin namespace's (table above)")
    print()
