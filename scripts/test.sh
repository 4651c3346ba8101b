#!/usr/bin/env bash
# The test command (README): every test, unprivileged and privileged, then pydivert 4.0.1's
# own test suite on liblindivert.so. Run as root: the privileged tests create their own
# network namespaces, veth pairs, nftables owner tables and eBPF programs and remove them
# again; they never touch the root namespace's rules. Differential tests load WinDivert's
# own code from the pydivert wheel's libebpfdivert.so (fetched from PyPI by
# scripts/fetch-anchors.sh) as an oracle.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the privileged tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF); run it with sudo" >&2
  exit 1
fi
LINDIVERT_EBPFDIVERT_LIB="$(bash scripts/fetch-anchors.sh)"
export LINDIVERT_EBPFDIVERT_LIB
export LINDIVERT_VECTORS="${LINDIVERT_VECTORS:-$root/../shared/vectors/windivert_filter_vectors.json}"
export LINDIVERT_REQUIRE_ALL=1

echo "== build"
cargo build --workspace --release --all-targets --all-features
LINDIVERT_PYTHON="$(bash scripts/pydivert-tests.sh --setup-only)"
export LINDIVERT_PYTHON

echo "== cargo test"
cargo test --workspace --release --all-features

echo "== pydivert 4.0.1 test suite on liblindivert.so"
# Deselected, with the reason (README, "pydivert"): this test asserts a limitation lindivert
# does not have (eBPFDivert cannot refuse LISTEN/ACCEPT, so it expects opening such a
# blocking SOCKET handle to fail; lindivert blocks all four operations).
bash scripts/pydivert-tests.sh \
  -k "not test_socket_layer_blocks_connect"
