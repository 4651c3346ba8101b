/*
 * netfilter: block packets matching a filter and answer them like a closed port would:
 * a TCP RST for TCP, an ICMP/ICMPv6 "destination unreachable" for everything else
 * (lindivert's take on WinDivert's netfilter sample).
 *
 *   netfilter filter [priority]
 *
 * Prints one line per blocked packet. Stops on SIGINT/SIGTERM.
 */
#include "lindivert.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static HANDLE handle = INVALID_HANDLE_VALUE;

static void on_signal(int sig) {
    (void)sig;
    /* WinDivertShutdown is safe here: it only flips flags and asks the kernel. */
    WinDivertShutdown(handle, WINDIVERT_SHUTDOWN_BOTH);
}

static void describe(const UINT8 *pkt, UINT len, char *out, size_t n) {
    PWINDIVERT_IPHDR ip = NULL;
    PWINDIVERT_IPV6HDR ip6 = NULL;
    PWINDIVERT_TCPHDR tcp = NULL;
    PWINDIVERT_UDPHDR udp = NULL;
    UINT8 proto = 0;
    char src[64] = "?", dst[64] = "?";
    WinDivertHelperParsePacket(pkt, len, &ip, &ip6, &proto, NULL, NULL, &tcp, &udp, NULL, NULL, NULL, NULL);
    if (ip) {
        WinDivertHelperFormatIPv4Address(WinDivertHelperNtohl(ip->SrcAddr), src, sizeof src);
        WinDivertHelperFormatIPv4Address(WinDivertHelperNtohl(ip->DstAddr), dst, sizeof dst);
    } else if (ip6) {
        UINT a[4];
        WinDivertHelperNtohIPv6Address(ip6->SrcAddr, a);
        WinDivertHelperFormatIPv6Address(a, src, sizeof src);
        WinDivertHelperNtohIPv6Address(ip6->DstAddr, a);
        WinDivertHelperFormatIPv6Address(a, dst, sizeof dst);
    }
    unsigned sp = 0, dp = 0;
    if (tcp) {
        sp = WinDivertHelperNtohs(tcp->SrcPort);
        dp = WinDivertHelperNtohs(tcp->DstPort);
    } else if (udp) {
        sp = WinDivertHelperNtohs(udp->SrcPort);
        dp = WinDivertHelperNtohs(udp->DstPort);
    }
    snprintf(out, n, "proto %u %s:%u -> %s:%u", proto, src, sp, dst, dp);
}

/* The TCP RST that answers `pkt` (addresses and ports swapped). Returns its length. */
static UINT tcp_reset(const UINT8 *pkt, UINT len, UINT8 *out) {
    PWINDIVERT_IPHDR ip = NULL;
    PWINDIVERT_IPV6HDR ip6 = NULL;
    PWINDIVERT_TCPHDR tcp = NULL;
    UINT dlen = 0;
    if (!WinDivertHelperParsePacket(pkt, len, &ip, &ip6, NULL, NULL, NULL, &tcp, NULL, NULL, &dlen, NULL, NULL) ||
        !tcp || tcp->Rst)
        return 0;
    UINT iplen = ip ? 20 : 40;
    memset(out, 0, iplen + 20);
    if (ip) {
        PWINDIVERT_IPHDR r = (PWINDIVERT_IPHDR)out;
        r->Version = 4;
        r->HdrLength = 5;
        r->Length = WinDivertHelperHtons(40);
        r->TTL = 64;
        r->Protocol = 6;
        r->SrcAddr = ip->DstAddr;
        r->DstAddr = ip->SrcAddr;
    } else {
        PWINDIVERT_IPV6HDR r = (PWINDIVERT_IPV6HDR)out;
        r->Version = 6;
        r->Length = WinDivertHelperHtons(20);
        r->NextHdr = 6;
        r->HopLimit = 64;
        memcpy(r->SrcAddr, ip6->DstAddr, 16);
        memcpy(r->DstAddr, ip6->SrcAddr, 16);
    }
    PWINDIVERT_TCPHDR t = (PWINDIVERT_TCPHDR)(out + iplen);
    t->SrcPort = tcp->DstPort;
    t->DstPort = tcp->SrcPort;
    t->HdrLength = 5;
    t->Rst = 1;
    t->Ack = 1;
    /* acknowledge everything the peer sent (SYN and FIN count as one) */
    UINT32 ack = WinDivertHelperNtohl(tcp->SeqNum) + dlen + tcp->Syn + tcp->Fin;
    t->AckNum = WinDivertHelperHtonl(ack);
    t->SeqNum = tcp->Ack ? tcp->AckNum : 0;
    return iplen + 20;
}

/* The ICMP (port unreachable) or ICMPv6 (port unreachable) error that answers `pkt`. */
static UINT unreachable(const UINT8 *pkt, UINT len, UINT8 *out) {
    PWINDIVERT_IPHDR ip = NULL;
    PWINDIVERT_IPV6HDR ip6 = NULL;
    PWINDIVERT_ICMPHDR icmp = NULL;
    PWINDIVERT_ICMPV6HDR icmp6 = NULL;
    if (!WinDivertHelperParsePacket(pkt, len, &ip, &ip6, NULL, &icmp, &icmp6, NULL, NULL, NULL, NULL, NULL, NULL))
        return 0;
    if ((icmp && icmp->Type != 8) || (icmp6 && icmp6->Type < 128))
        return 0; /* never answer an error with an error */
    if (ip) {
        UINT quote = ip->HdrLength * 4u + 8u;
        if (quote > len)
            quote = len;
        UINT total = 20 + 8 + quote;
        memset(out, 0, 28);
        PWINDIVERT_IPHDR r = (PWINDIVERT_IPHDR)out;
        r->Version = 4;
        r->HdrLength = 5;
        r->Length = WinDivertHelperHtons((UINT16)total);
        r->TTL = 64;
        r->Protocol = 1;
        r->SrcAddr = ip->DstAddr;
        r->DstAddr = ip->SrcAddr;
        PWINDIVERT_ICMPHDR e = (PWINDIVERT_ICMPHDR)(out + 20);
        e->Type = 3; /* destination unreachable */
        e->Code = 3; /* port unreachable */
        memcpy(out + 28, pkt, quote);
        return total;
    }
    UINT quote = len > 1232 ? 1232 : len;
    UINT total = 40 + 8 + quote;
    memset(out, 0, 48);
    PWINDIVERT_IPV6HDR r = (PWINDIVERT_IPV6HDR)out;
    r->Version = 6;
    r->Length = WinDivertHelperHtons((UINT16)(8 + quote));
    r->NextHdr = 58;
    r->HopLimit = 64;
    memcpy(r->SrcAddr, ip6->DstAddr, 16);
    memcpy(r->DstAddr, ip6->SrcAddr, 16);
    PWINDIVERT_ICMPV6HDR e = (PWINDIVERT_ICMPV6HDR)(out + 40);
    e->Type = 1; /* destination unreachable */
    e->Code = 4; /* port unreachable */
    memcpy(out + 48, pkt, quote);
    return total;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s filter [priority]\n", argv[0]);
        return 2;
    }
    int priority = argc > 2 ? atoi(argv[2]) : 0;
    handle = WinDivertOpen(argv[1], WINDIVERT_LAYER_NETWORK, (INT16)priority, 0);
    if (handle == INVALID_HANDLE_VALUE) {
        const char *msg = "";
        UINT pos = 0;
        if (!WinDivertHelperCompileFilter(argv[1], WINDIVERT_LAYER_NETWORK, NULL, 0, &msg, &pos))
            fprintf(stderr, "error: invalid filter at %u: %s\n", pos, msg);
        else
            fprintf(stderr, "error: cannot open the handle (%u)\n", WinDivertGetLastError());
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("netfilter: blocking \"%s\"\n", argv[1]);
    fflush(stdout);

    static UINT8 pkt[WINDIVERT_MTU_MAX], reply[WINDIVERT_MTU_MAX];
    for (;;) {
        WINDIVERT_ADDRESS addr;
        UINT len = 0;
        if (!WinDivertRecv(handle, pkt, sizeof pkt, &len, &addr)) {
            UINT err = WinDivertGetLastError();
            if (err == ERROR_NO_DATA)
                break;
            if (err != ERROR_INSUFFICIENT_BUFFER)
                fprintf(stderr, "warning: receive failed (%u)\n", err);
            continue;
        }
        char what[200];
        describe(pkt, len, what, sizeof what);
        UINT8 proto = 0;
        WinDivertHelperParsePacket(pkt, len, NULL, NULL, &proto, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        UINT rlen = proto == 6 ? tcp_reset(pkt, len, reply) : unreachable(pkt, len, reply);
        printf("blocked %s%s\n", what, rlen ? (proto == 6 ? " (reset)" : " (unreachable)") : "");
        fflush(stdout);
        if (!rlen)
            continue; /* just drop it */
        /* The answer goes back the other way: inbound if the packet was outbound. For
         * loopback traffic both directions meet on lo. */
        WINDIVERT_ADDRESS raddr = addr;
        raddr.Outbound = addr.Loopback ? 1 : !addr.Outbound;
        raddr.Impostor = 0;
        WinDivertHelperCalcChecksums(reply, rlen, &raddr, 0);
        if (!WinDivertSend(handle, reply, rlen, NULL, &raddr))
            fprintf(stderr, "warning: cannot send the answer (%u)\n", WinDivertGetLastError());
    }
    WinDivertClose(handle);
    printf("netfilter: stopped\n");
    return 0;
}
