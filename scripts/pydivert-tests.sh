#!/bin/sh
# Run pydivert's test suite on lindivert: pydivert's Linux backend loads liblindivert.so
# (which exports the libebpfdivert ABI) through PYDIVERT_EBPFDIVERT_LIB.
#
#   scripts/pydivert-tests.sh [pytest args...]
#
# Environment:
#   LINDIVERT_LIB    the library (default: $CARGO_TARGET_DIR or target, release/liblindivert.so;
#                    built with `cargo build --release -p lindivert-ffi` if missing)
#   PYDIVERT_WHEEL   a pydivert wheel to install (default: the one scripts/fetch-anchors.sh
#                    downloads from PyPI into bench/.cache)
#   PYDIVERT_VENV    the virtualenv to (re)use (default: <target>/pydivert-venv)
#
# Needs root (nftables, nfqueue, raw sockets, BPF). The suite runs in a fresh network
# namespace (`unshare --net`, loopback up), so it never touches the host's traffic;
# `unshare` rather than `ip netns exec`, which remounts /sys and hides cgroup2 from the
# SOCKET layer.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
LIB=${LINDIVERT_LIB:-$TARGET/release/liblindivert.so}
VENV=${PYDIVERT_VENV:-$TARGET/pydivert-venv}

if [ "$(id -u)" != 0 ]; then
    echo "pydivert-tests: needs root (try: sudo -E $0)" >&2
    exit 77
fi

if [ ! -f "$LIB" ]; then
    (cd "$ROOT" && cargo build --release -p lindivert-ffi)
fi

if [ -z "${PYDIVERT_WHEEL:-}" ]; then
    bash "$ROOT/scripts/fetch-anchors.sh" >/dev/null
    for w in "$ROOT"/bench/.cache/pydivert-4.0.1/wheel/pydivert-4.0.1-*.whl; do
        [ -f "$w" ] && PYDIVERT_WHEEL=$w
    done
fi
if [ -n "${PYDIVERT_WHEEL:-}" ]; then
    SPEC="pydivert[test] @ file://$(cd "$(dirname "$PYDIVERT_WHEEL")" && pwd)/$(basename "$PYDIVERT_WHEEL")"
else
    SPEC="pydivert[test]==4.0.1"
fi

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q "$SPEC" pytest pytest-asyncio pytest-timeout

export PYDIVERT_EBPFDIVERT_LIB="$LIB"
PY="$VENV/bin/python"
if [ "${1:-}" = "--setup-only" ]; then
    echo "$PY"
    exit 0
fi
exec unshare --net sh -c '
    ip link set lo up
    cd /tmp
    exec "$0" -m pytest --pyargs pydivert.tests -p no:cacheprovider -o asyncio_mode=auto \
        --timeout 120 -rfE "$@"
' "$PY" "$@"
