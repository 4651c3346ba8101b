"""The README's Python example: pydivert 4.0.1, unchanged, running on lindivert.

Run with PYDIVERT_EBPFDIVERT_LIB=/path/to/liblindivert.so; `uppercase.py PORT COUNT`
diverts outbound UDP to PORT, upper-cases COUNT payloads and re-injects them.
"""
import sys

import pydivert

port = int(sys.argv[1]) if len(sys.argv) > 1 else 7777
count = int(sys.argv[2]) if len(sys.argv) > 2 else 1

with pydivert.Divert(f"outbound and udp.DstPort == {port}") as w:
    print("ready", flush=True)
    for _ in range(count):
        packet = w.recv()
        packet.payload = packet.payload.upper()
        w.send(packet)
