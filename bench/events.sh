#!/usr/bin/env bash
# Event-layer benchmark (root): the added cost of connect()/bind() while a SOCKET handle with
# a non-matching filter is open, and FLOW/SOCKET events per second without loss.
# Runs inside a throw-away network namespace (lo only), removed on exit.
# Usage: bench/events.sh [N]   (N = calls per measurement and connections; default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-flow}"
cargo build --release -q -p lindivert --example events_bench
NS="ldbench_events_$$"
ip netns add "$NS"
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip -n "$NS" link set lo up
echo "kernel $(uname -r), $(nproc) CPUs, N=$N"
"$CARGO_TARGET_DIR/release/examples/events_bench" "/var/run/netns/$NS" "$N"
