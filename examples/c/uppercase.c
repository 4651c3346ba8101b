/* The README's C example: divert outbound UDP to one port, upper-case the payload,
 * re-inject it. `uppercase PORT COUNT`. Build:
 *   cc -o uppercase examples/c/uppercase.c $(pkg-config --cflags --libs lindivert) */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <lindivert.h>

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 7777, count = argc > 2 ? atoi(argv[2]) : 1;
    char filter[64];
    snprintf(filter, sizeof filter, "outbound and udp.DstPort == %d", port);
    HANDLE h = WinDivertOpen(filter, WINDIVERT_LAYER_NETWORK, 0, 0);
    if (h == INVALID_HANDLE_VALUE) {
        fprintf(stderr, "open: error %u\n", WinDivertGetLastError());
        return 1;
    }
    puts("ready");
    fflush(stdout);
    static unsigned char packet[WINDIVERT_MTU_MAX];
    for (int i = 0; i < count; i++) {
        UINT len;
        WINDIVERT_ADDRESS addr;
        if (!WinDivertRecv(h, packet, sizeof packet, &len, &addr)) {
            fprintf(stderr, "recv: error %u\n", WinDivertGetLastError());
            return 1;
        }
        unsigned char *data;
        UINT data_len;
        if (WinDivertHelperParsePacket(packet, len, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                       (PVOID *)&data, &data_len, NULL, NULL)) {
            for (UINT j = 0; j < data_len; j++) data[j] = (unsigned char)toupper(data[j]);
            WinDivertHelperCalcChecksums(packet, len, &addr, 0);
        }
        if (!WinDivertSend(h, packet, len, NULL, &addr)) {
            fprintf(stderr, "send: error %u\n", WinDivertGetLastError());
            return 1;
        }
    }
    return WinDivertClose(h) ? 0 : 1;
}
