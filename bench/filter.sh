#!/usr/bin/env bash
# Filter-evaluation benchmark: lindivert (compiled filter; text compiled per call) against
# WinDivert's own evaluator (ebpfdivert_helper_eval_filter in the pydivert 4.0.1 wheel's
# libebpfdivert.so), same filters, same packets, same run.
#   bash bench/filter.sh [ITERATIONS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
iters="${1:-2000000}"
lib="$(bash "$root/scripts/fetch-anchors.sh")"
out="$root/bench/out"; mkdir -p "$out"
cc -O2 -o "$out/anchor_eval" "$root/bench/filter/anchor_eval.c" -ldl
(cd "$root" && cargo build --quiet --release -p lindivert-core --example filter_bench)
tdir="${CARGO_TARGET_DIR:-$root/target}"
"$tdir/release/examples/filter_bench" "$root/bench/filter/packets.txt" "$root/bench/filter/cases.txt" "$iters" > "$out/lindivert.tsv"
"$out/anchor_eval" "$lib" "$root/bench/filter/packets.txt" "$root/bench/filter/cases.txt" "$((iters / 20))" > "$out/windivert.tsv"
python3 - "$root/bench/filter/cases.txt" "$out/lindivert.tsv" "$out/windivert.tsv" <<'PY'
import sys
cases = [l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
ours = [l.split() for l in open(sys.argv[2])]
theirs = [l.split() for l in open(sys.argv[3])]
print(f"{'filter':62} {'lindivert':>10} {'text':>9} {'WinDivert':>10} {'compiled x':>11} {'text x':>7}  agree")
gc = gt = 1.0
bad = 0
for (pkt, flt), o, t in zip(cases, ours, theirs):
    comp, text, res = float(o[0]), float(o[1]), int(o[2])
    wd, wres = float(t[0]), int(t[1])
    agree = "yes" if (wres > 0) == (res > 0) else "NO"
    bad += agree != "yes"
    gc *= wd / comp; gt *= wd / text
    print(f"{flt[:62]:62} {comp:8.1f}ns {text:7.0f}ns {wd:8.0f}ns {wd/comp:10.1f}x {wd/text:6.1f}x  {agree}")
n = len(cases)
print(f"geometric mean speed-up: compiled {gc ** (1/n):.1f}x, text {gt ** (1/n):.1f}x over WinDivert's evaluator ({n} cases)")
sys.exit(1 if bad else 0)
PY
