#!/usr/bin/env bash
# Fetches the benchmark/oracle anchor: the pydivert 4.0.1 wheel from PyPI, which ships
# libebpfdivert.so (eBPFDivert, with WinDivert's own filter and hash code). It is unpacked
# under bench/.cache and loaded at run time by benchmarks and differential tests; nothing
# from it is committed, linked or redistributed. Prints the path of libebpfdivert.so.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/bench/.cache/pydivert-4.0.1"
lib="$cache/pydivert/bpf/libebpfdivert.so"
if [ ! -f "$lib" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps --only-binary=:all: pydivert==4.0.1 -d "$cache/wheel" >&2
  python3 -m zipfile -e "$cache"/wheel/pydivert-4.0.1-*.whl "$cache" >&2
fi
echo "$lib"
