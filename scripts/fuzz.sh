#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS seconds each (default 30).
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler for libFuzzer. On a
# stable toolchain RUSTC_BOOTSTRAP=1 enables the nightly-only sanitizer flags cargo-fuzz
# uses. Crashes are written to fuzz/artifacts/<target>/ and make the script fail.
set -euo pipefail

secs="${1:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
targets=(filter_compile packet_parse filter_eval)

cargo fuzz build -O
status=0
for t in "${targets[@]}"; do
    echo "== $t (${secs}s)"
    log="$(mktemp)"
    if cargo fuzz run -O "$t" -- -max_total_time="$secs" >"$log" 2>&1; then
        grep -E '^Done [0-9]+ runs' "$log" || true
    else
        tail -n 40 "$log" >&2
        echo "fuzz.sh: $t failed; the input is in fuzz/artifacts/$t/" >&2
        status=1
    fi
    rm -f "$log"
done
[ "$status" -eq 0 ] && echo "fuzz.sh: no failures"
exit "$status"
