/*
 * lindivert.h - the WinDivert 2.2 C API on Linux (liblindivert.so / liblindivert.a).
 *
 * Written for lindivert; declares WinDivert 2.2's functions, types and constants with
 * WinDivert's names, so WinDivert programs build against it with few changes. Link with
 * `pkg-config --libs lindivert` (or -llindivert).
 *
 * Linux equivalents of the Windows types
 * --------------------------------------
 *   HANDLE               void *  (an opaque number from the library's handle registry;
 *                                 a stale or garbage HANDLE fails with ERROR_INVALID_HANDLE,
 *                                 never undefined behaviour)
 *   INVALID_HANDLE_VALUE (HANDLE)-1, returned by a failed WinDivertOpen
 *   BOOL                 int (TRUE 1, FALSE 0)
 *   UINT, UINT8..UINT64, INT8..INT64   from <stdint.h> (UINT = unsigned int)
 *   LPOVERLAPPED         void *; overlapped I/O does not exist on Linux: the argument must
 *                        be NULL (non-NULL -> FALSE, ERROR_INVALID_PARAMETER). For
 *                        asynchronous use, poll WinDivertGetFd(h) and receive with
 *                        WinDivertRecvEx(..., LINDIVERT_RECV_NONBLOCK, ...).
 *
 * Errors
 * ------
 * Functions fail like WinDivert's (FALSE, INVALID_HANDLE_VALUE, 0) and record a Windows
 * error code, read with WinDivertGetLastError() (per thread; set to ERROR_SUCCESS by every
 * successful call). errno is set to the closest errno at the same time:
 *
 *   code                        value  errno         when
 *   ERROR_SUCCESS                   0  (unchanged)   success; EvalFilter: no match
 *   ERROR_FILE_NOT_FOUND            2  ENOENT        a system object is missing
 *   ERROR_TOO_MANY_OPEN_FILES       4  EMFILE        out of descriptors
 *   ERROR_ACCESS_DENIED             5  EPERM         missing CAP_NET_ADMIN/CAP_NET_RAW/CAP_BPF
 *   ERROR_INVALID_HANDLE            6  EBADF         unknown, closed or garbage HANDLE
 *   ERROR_NOT_ENOUGH_MEMORY         8  ENOMEM
 *   ERROR_BAD_COMMAND              22  ESHUTDOWN     the handle is being closed (by
 *                                                    another thread) during the call
 *   ERROR_GEN_FAILURE              31  EIO (or the   another system error; an internal
 *                                      system's)     failure
 *   ERROR_NOT_SUPPORTED            50  EOPNOTSUPP    the kernel lacks a needed feature
 *   ERROR_INVALID_PARAMETER        87  EINVAL        bad filter, layer, priority, flags,
 *                                                    parameter, NULL pointer, length,
 *                                                    send on RECV_ONLY, recv on SEND_ONLY;
 *                                                    errno EOPNOTSUPP for a layer this
 *                                                    build cannot open (see WinDivertOpen)
 *   ERROR_INSUFFICIENT_BUFFER     122  ENOBUFS       packet or text did not fit (a received
 *                                                    packet is truncated and consumed)
 *   ERROR_NO_DATA                 232  ESHUTDOWN     recv after Shutdown(RECV) once the
 *                                                    queue is empty; send after
 *                                                    Shutdown(SEND)
 *   ERROR_HOST_UNREACHABLE       1232  EHOSTUNREACH  impostor packet's TTL would reach 0
 *   ERROR_TIMEOUT                1460  EAGAIN        LINDIVERT_RECV_NONBLOCK, nothing queued
 *
 * Layers
 * ------
 * NETWORK, NETWORK_FORWARD: nftables + nfnetlink_queue (root or CAP_NET_ADMIN+CAP_NET_RAW).
 * SOCKET: cgroup-v2 eBPF programs (CAP_BPF+CAP_NET_ADMIN; cgroup2 must be mounted).
 * FLOW: ESTABLISHED/DELETED of TCP connections and UDP flows from cgroup-v2 eBPF programs
 *   (CAP_BPF+CAP_NET_ADMIN; cgroup2 must be mounted). UDP flows are DELETED after 60 s
 *   without a packet or when their socket closes; flows of sockets that existed before the
 *   handle was opened may have ProcessId 0 (see docs/DIFFERENCES.md).
 * REFLECT: OPEN/CLOSE of the lindivert handles of the network namespace (from the registry
 *   in their nftables owner tables); the CLOSE of a killed process's handle comes within
 *   ~200 ms.
 * FLOW and REFLECT need WINDIVERT_FLAG_SNIFF|WINDIVERT_FLAG_RECV_ONLY, SOCKET needs
 * RECV_ONLY. Their events carry no data, except REFLECT's: the reported handle's filter
 * object ("@WinDiv_...", NUL-terminated). WinDivertGetFd works at every layer.
 * SOCKET and FLOW need cgroup2 visible: under `ip netns exec` (which remounts /sys) they
 * fail with ERROR_NOT_SUPPORTED; use `unshare --net` or open in a namespace by path.
 * Timestamps are CLOCK_MONOTONIC nanoseconds.
 *
 * Also exported (not declared here): the libebpfdivert ABI (ebpfdivert_*) pydivert's Linux
 * backend loads: PYDIVERT_EBPFDIVERT_LIB=/path/to/liblindivert.so.
 */
#ifndef LINDIVERT_H
#define LINDIVERT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LINDIVERT_VERSION_MAJOR 0
#define LINDIVERT_VERSION_MINOR 1

/* ---- Windows types -------------------------------------------------------------------- */

#ifndef LINDIVERT_NO_WINDOWS_TYPES
typedef void *HANDLE;
typedef int BOOL;
typedef void VOID;
typedef void *PVOID;
typedef unsigned int UINT;
typedef int8_t INT8;
typedef uint8_t UINT8;
typedef int16_t INT16;
typedef uint16_t UINT16;
typedef int32_t INT32;
typedef uint32_t UINT32;
typedef int64_t INT64;
typedef uint64_t UINT64;
typedef void *LPOVERLAPPED;
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
#define INVALID_HANDLE_VALUE ((HANDLE)(intptr_t)-1)
#endif

/* Windows error codes (WinDivertGetLastError). */
#ifndef ERROR_SUCCESS
#define ERROR_SUCCESS 0
#endif
#ifndef ERROR_FILE_NOT_FOUND
#define ERROR_FILE_NOT_FOUND 2
#endif
#ifndef ERROR_TOO_MANY_OPEN_FILES
#define ERROR_TOO_MANY_OPEN_FILES 4
#endif
#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5
#endif
#ifndef ERROR_INVALID_HANDLE
#define ERROR_INVALID_HANDLE 6
#endif
#ifndef ERROR_NOT_ENOUGH_MEMORY
#define ERROR_NOT_ENOUGH_MEMORY 8
#endif
#ifndef ERROR_BAD_COMMAND
#define ERROR_BAD_COMMAND 22
#endif
#ifndef ERROR_GEN_FAILURE
#define ERROR_GEN_FAILURE 31
#endif
#ifndef ERROR_NOT_SUPPORTED
#define ERROR_NOT_SUPPORTED 50
#endif
#ifndef ERROR_INVALID_PARAMETER
#define ERROR_INVALID_PARAMETER 87
#endif
#ifndef ERROR_INSUFFICIENT_BUFFER
#define ERROR_INSUFFICIENT_BUFFER 122
#endif
#ifndef ERROR_NO_DATA
#define ERROR_NO_DATA 232
#endif
#ifndef ERROR_HOST_UNREACHABLE
#define ERROR_HOST_UNREACHABLE 1232
#endif
#ifndef ERROR_TIMEOUT
#define ERROR_TIMEOUT 1460
#endif

/* ---- Layers, events, address ---------------------------------------------------------- */

typedef enum {
    WINDIVERT_LAYER_NETWORK = 0,
    WINDIVERT_LAYER_NETWORK_FORWARD = 1,
    WINDIVERT_LAYER_FLOW = 2,
    WINDIVERT_LAYER_SOCKET = 3,
    WINDIVERT_LAYER_REFLECT = 4
} WINDIVERT_LAYER, *PWINDIVERT_LAYER;

typedef enum {
    WINDIVERT_EVENT_NETWORK_PACKET = 0,
    WINDIVERT_EVENT_FLOW_ESTABLISHED = 1,
    WINDIVERT_EVENT_FLOW_DELETED = 2,
    WINDIVERT_EVENT_SOCKET_BIND = 3,
    WINDIVERT_EVENT_SOCKET_CONNECT = 4,
    WINDIVERT_EVENT_SOCKET_LISTEN = 5,
    WINDIVERT_EVENT_SOCKET_ACCEPT = 6,
    WINDIVERT_EVENT_SOCKET_CLOSE = 7,
    WINDIVERT_EVENT_REFLECT_OPEN = 8,
    WINDIVERT_EVENT_REFLECT_CLOSE = 9
} WINDIVERT_EVENT, *PWINDIVERT_EVENT;

/* NETWORK and NETWORK_FORWARD data: interface indexes (if_nametoindex numbering). */
typedef struct {
    UINT32 IfIdx;
    UINT32 SubIfIdx;
} WINDIVERT_DATA_NETWORK, *PWINDIVERT_DATA_NETWORK;

/* FLOW data. Addresses are 128-bit host-order integers, [0] least significant; IPv4 is
 * IPv4-mapped ([0] = a.b.c.d, [1] = 0x0000FFFF). EndpointId is the socket cookie. */
typedef struct {
    UINT64 EndpointId;
    UINT64 ParentEndpointId;
    UINT32 ProcessId;
    UINT32 LocalAddr[4];
    UINT32 RemoteAddr[4];
    UINT16 LocalPort;
    UINT16 RemotePort;
    UINT8 Protocol;
} WINDIVERT_DATA_FLOW, *PWINDIVERT_DATA_FLOW;

/* SOCKET data: the same fields as FLOW. */
typedef struct {
    UINT64 EndpointId;
    UINT64 ParentEndpointId;
    UINT32 ProcessId;
    UINT32 LocalAddr[4];
    UINT32 RemoteAddr[4];
    UINT16 LocalPort;
    UINT16 RemotePort;
    UINT8 Protocol;
} WINDIVERT_DATA_SOCKET, *PWINDIVERT_DATA_SOCKET;

/* REFLECT data. */
typedef struct {
    INT64 Timestamp;
    UINT32 ProcessId;
    WINDIVERT_LAYER Layer;
    UINT64 Flags;
    INT16 Priority;
} WINDIVERT_DATA_REFLECT, *PWINDIVERT_DATA_REFLECT;

/* The 80-byte WINDIVERT_ADDRESS (bit fields in the x86-64/aarch64 little-endian order).
 * Bit fields here and in the header structs are declared UINT32 (unsigned int), the only
 * portable bit-field type in ISO C; the layout equals WinDivert's (checked below). */
typedef struct {
    INT64 Timestamp;
    UINT32 Layer : 8;
    UINT32 Event : 8;
    UINT32 Sniffed : 1;
    UINT32 Outbound : 1;
    UINT32 Loopback : 1;
    UINT32 Impostor : 1;
    UINT32 IPv6 : 1;
    UINT32 IPChecksum : 1;
    UINT32 TCPChecksum : 1;
    UINT32 UDPChecksum : 1;
    UINT32 Reserved1 : 8;
    UINT32 Reserved2;
    union {
        WINDIVERT_DATA_NETWORK Network;
        WINDIVERT_DATA_FLOW Flow;
        WINDIVERT_DATA_SOCKET Socket;
        WINDIVERT_DATA_REFLECT Reflect;
        UINT8 Reserved3[64];
    };
} WINDIVERT_ADDRESS, *PWINDIVERT_ADDRESS;

/* ---- Flags, parameters, shutdown, limits ---------------------------------------------- */

#define WINDIVERT_FLAG_SNIFF 0x0001
#define WINDIVERT_FLAG_DROP 0x0002
#define WINDIVERT_FLAG_RECV_ONLY 0x0004
#define WINDIVERT_FLAG_READ_ONLY WINDIVERT_FLAG_RECV_ONLY
#define WINDIVERT_FLAG_SEND_ONLY 0x0008
#define WINDIVERT_FLAG_WRITE_ONLY WINDIVERT_FLAG_SEND_ONLY
#define WINDIVERT_FLAG_NO_INSTALL 0x0010
#define WINDIVERT_FLAG_FRAGMENTS 0x0020

typedef enum {
    WINDIVERT_PARAM_QUEUE_LENGTH = 0,
    WINDIVERT_PARAM_QUEUE_TIME = 1,
    WINDIVERT_PARAM_QUEUE_SIZE = 2,
    WINDIVERT_PARAM_VERSION_MAJOR = 3,
    WINDIVERT_PARAM_VERSION_MINOR = 4
} WINDIVERT_PARAM, *PWINDIVERT_PARAM;
#define WINDIVERT_PARAM_MAX WINDIVERT_PARAM_VERSION_MINOR
/* lindivert extension (WinDivertSetParam/GetParam, NETWORK and NETWORK_FORWARD handles only,
 * else ERROR_INVALID_PARAMETER): a receive that finds its queue empty polls for up to this
 * many microseconds before it sleeps (lower latency, more CPU). Default 0 (off), max 10000. */
#define LINDIVERT_PARAM_BUSY_POLL ((WINDIVERT_PARAM)64)
#define LINDIVERT_PARAM_BUSY_POLL_MAX 10000

typedef enum {
    WINDIVERT_SHUTDOWN_RECV = 0x1,
    WINDIVERT_SHUTDOWN_SEND = 0x2,
    WINDIVERT_SHUTDOWN_BOTH = 0x3
} WINDIVERT_SHUTDOWN, *PWINDIVERT_SHUTDOWN;
#define WINDIVERT_SHUTDOWN_MAX WINDIVERT_SHUTDOWN_BOTH

#define WINDIVERT_PRIORITY_HIGHEST 30000
#define WINDIVERT_PRIORITY_LOWEST (-WINDIVERT_PRIORITY_HIGHEST)
#define WINDIVERT_PARAM_QUEUE_LENGTH_DEFAULT 4096
#define WINDIVERT_PARAM_QUEUE_LENGTH_MIN 32
#define WINDIVERT_PARAM_QUEUE_LENGTH_MAX 16384
#define WINDIVERT_PARAM_QUEUE_TIME_DEFAULT 2000 /* ms */
#define WINDIVERT_PARAM_QUEUE_TIME_MIN 100
#define WINDIVERT_PARAM_QUEUE_TIME_MAX 16000
#define WINDIVERT_PARAM_QUEUE_SIZE_DEFAULT 4194304 /* bytes */
#define WINDIVERT_PARAM_QUEUE_SIZE_MIN 65535
#define WINDIVERT_PARAM_QUEUE_SIZE_MAX 33554432
#define WINDIVERT_BATCH_MAX 0xFF
#define WINDIVERT_MTU_MAX (40 + 0xFFFF)

/* WinDivertRecvEx flag (Linux extension): do not wait; ERROR_TIMEOUT if nothing is queued. */
#define LINDIVERT_RECV_NONBLOCK 0x1

/* ---- Core functions -------------------------------------------------------------------- */

/* Open a handle: filter text (or a compiled "@WinDiv_..." object), layer, priority in
 * [WINDIVERT_PRIORITY_LOWEST, WINDIVERT_PRIORITY_HIGHEST], flags. INVALID_HANDLE_VALUE on
 * error. A filter error is ERROR_INVALID_PARAMETER: WinDivertHelperCompileFilter gives its
 * message and position. */
HANDLE WinDivertOpen(const char *filter, WINDIVERT_LAYER layer, INT16 priority, UINT64 flags);

/* Wait for one packet (NETWORK*) or event (SOCKET, FLOW: no data, pass NULL, 0). pRecvLen and
 * pAddr may be NULL. A packet longer than packetLen is truncated, consumed, and the call
 * fails with ERROR_INSUFFICIENT_BUFFER (*pRecvLen and *pAddr are still set). */
BOOL WinDivertRecv(HANDLE handle, VOID *pPacket, UINT packetLen, UINT *pRecvLen,
                   WINDIVERT_ADDRESS *pAddr);

/* Batch receive: *pAddrLen (in/out, bytes) in [80, WINDIVERT_BATCH_MAX * 80]; packets are
 * packed back to back. flags: 0 or LINDIVERT_RECV_NONBLOCK. lpOverlapped must be NULL. */
BOOL WinDivertRecvEx(HANDLE handle, VOID *pPacket, UINT packetLen, UINT *pRecvLen,
                     UINT64 flags, WINDIVERT_ADDRESS *pAddr, UINT *pAddrLen,
                     LPOVERLAPPED lpOverlapped);

/* Re-inject (or inject) a packet. pAddr->Outbound picks the direction; IfIdx the inbound
 * interface; checksum bits 0 = recompute; Impostor = decrement TTL first. */
BOOL WinDivertSend(HANDLE handle, const VOID *pPacket, UINT packetLen, UINT *pSendLen,
                   const WINDIVERT_ADDRESS *pAddr);

/* Batch send: packets back to back, addrLen = N * 80 bytes of addresses (1 <= N <= 255).
 * flags must be 0, lpOverlapped NULL. */
BOOL WinDivertSendEx(HANDLE handle, const VOID *pPacket, UINT packetLen, UINT *pSendLen,
                     UINT64 flags, const WINDIVERT_ADDRESS *pAddr, UINT addrLen,
                     LPOVERLAPPED lpOverlapped);

BOOL WinDivertShutdown(HANDLE handle, WINDIVERT_SHUTDOWN how);

/* Close: rules removed, queued packets re-injected. Calls blocked in other threads return
 * (ERROR_BAD_COMMAND); later calls with the handle fail with ERROR_INVALID_HANDLE. */
BOOL WinDivertClose(HANDLE handle);

BOOL WinDivertSetParam(HANDLE handle, WINDIVERT_PARAM param, UINT64 value);
BOOL WinDivertGetParam(HANDLE handle, WINDIVERT_PARAM param, UINT64 *pValue);

/* Linux: the calling thread's last error (see the table above). */
UINT WinDivertGetLastError(void);

/* Linux: a descriptor that polls readable (level-triggered) when a receive may find a
 * packet or event; -1 on error. Owned by the handle: do not close it. */
int WinDivertGetFd(HANDLE handle);

/* ---- Packet headers (network byte order in memory) ------------------------------------ */

typedef struct {
    UINT32 HdrLength : 4;
    UINT32 Version : 4;
    UINT8 TOS;
    UINT16 Length;
    UINT16 Id;
    UINT16 FragOff0;
    UINT8 TTL;
    UINT8 Protocol;
    UINT16 Checksum;
    UINT32 SrcAddr;
    UINT32 DstAddr;
} WINDIVERT_IPHDR, *PWINDIVERT_IPHDR;

/* FragOff0 is the raw flags/offset word read little-endian: offset bits 0xFF1F (still in
 * network order), MF 0x0020, DF 0x0040, reserved 0x0080. */
#define WINDIVERT_IPHDR_GET_FRAGOFF(hdr) ((UINT16)((hdr)->FragOff0 & 0xFF1F))
#define WINDIVERT_IPHDR_GET_MF(hdr) (((hdr)->FragOff0 & 0x0020) != 0)
#define WINDIVERT_IPHDR_GET_DF(hdr) (((hdr)->FragOff0 & 0x0040) != 0)
#define WINDIVERT_IPHDR_GET_RESERVED(hdr) (((hdr)->FragOff0 & 0x0080) != 0)
#define WINDIVERT_IPHDR_SET_FRAGOFF(hdr, val)                                                 \
    do {                                                                                      \
        (hdr)->FragOff0 = (UINT16)(((hdr)->FragOff0 & 0x00E0) | ((val) & 0xFF1F));            \
    } while (0)
#define WINDIVERT_IPHDR_SET_MF(hdr, val)                                                      \
    do {                                                                                      \
        (hdr)->FragOff0 = (UINT16)(((hdr)->FragOff0 & 0xFFDF) | (((val) & 0x1) << 5));        \
    } while (0)
#define WINDIVERT_IPHDR_SET_DF(hdr, val)                                                      \
    do {                                                                                      \
        (hdr)->FragOff0 = (UINT16)(((hdr)->FragOff0 & 0xFFBF) | (((val) & 0x1) << 6));        \
    } while (0)
#define WINDIVERT_IPHDR_SET_RESERVED(hdr, val)                                                \
    do {                                                                                      \
        (hdr)->FragOff0 = (UINT16)(((hdr)->FragOff0 & 0xFF7F) | (((val) & 0x1) << 7));        \
    } while (0)

typedef struct {
    UINT32 TrafficClass0 : 4;
    UINT32 Version : 4;
    UINT32 FlowLabel0 : 4;
    UINT32 TrafficClass1 : 4;
    UINT16 FlowLabel1;
    UINT16 Length;
    UINT8 NextHdr;
    UINT8 HopLimit;
    UINT32 SrcAddr[4];
    UINT32 DstAddr[4];
} WINDIVERT_IPV6HDR, *PWINDIVERT_IPV6HDR;

/* As in WinDivert, FlowLabel1 is the raw (network order) low 16 bits of the flow label. */
#define WINDIVERT_IPV6HDR_GET_TRAFFICCLASS(hdr)                                               \
    ((UINT8)(((hdr)->TrafficClass0 << 4) | (hdr)->TrafficClass1))
#define WINDIVERT_IPV6HDR_GET_FLOWLABEL(hdr)                                                  \
    ((UINT32)(((UINT32)(hdr)->FlowLabel0 << 16) | (UINT32)(hdr)->FlowLabel1))
#define WINDIVERT_IPV6HDR_SET_TRAFFICCLASS(hdr, val)                                          \
    do {                                                                                      \
        (hdr)->TrafficClass0 = ((UINT32)(val) >> 4) & 0xF;                                    \
        (hdr)->TrafficClass1 = (UINT32)(val) & 0xF;                                           \
    } while (0)
#define WINDIVERT_IPV6HDR_SET_FLOWLABEL(hdr, val)                                             \
    do {                                                                                      \
        (hdr)->FlowLabel0 = ((UINT32)(val) >> 16) & 0xF;                                      \
        (hdr)->FlowLabel1 = (UINT16)((UINT32)(val) & 0xFFFF);                                         \
    } while (0)

typedef struct {
    UINT8 Type;
    UINT8 Code;
    UINT16 Checksum;
    UINT32 Body;
} WINDIVERT_ICMPHDR, *PWINDIVERT_ICMPHDR;

typedef struct {
    UINT8 Type;
    UINT8 Code;
    UINT16 Checksum;
    UINT32 Body;
} WINDIVERT_ICMPV6HDR, *PWINDIVERT_ICMPV6HDR;

typedef struct {
    UINT16 SrcPort;
    UINT16 DstPort;
    UINT32 SeqNum;
    UINT32 AckNum;
    UINT32 Reserved1 : 4;
    UINT32 HdrLength : 4;
    UINT32 Fin : 1;
    UINT32 Syn : 1;
    UINT32 Rst : 1;
    UINT32 Psh : 1;
    UINT32 Ack : 1;
    UINT32 Urg : 1;
    UINT32 Reserved2 : 2;
    UINT16 Window;
    UINT16 Checksum;
    UINT16 UrgPtr;
} WINDIVERT_TCPHDR, *PWINDIVERT_TCPHDR;

typedef struct {
    UINT16 SrcPort;
    UINT16 DstPort;
    UINT16 Length;
    UINT16 Checksum;
} WINDIVERT_UDPHDR, *PWINDIVERT_UDPHDR;

/* ---- Helpers ---------------------------------------------------------------------------- */

#define WINDIVERT_HELPER_NO_IP_CHECKSUM 1
#define WINDIVERT_HELPER_NO_ICMP_CHECKSUM 2
#define WINDIVERT_HELPER_NO_ICMPV6_CHECKSUM 4
#define WINDIVERT_HELPER_NO_TCP_CHECKSUM 8
#define WINDIVERT_HELPER_NO_UDP_CHECKSUM 16

/* Filter compile error kinds (WinDivertHelperCompileFilter's errorStr gives the text). */
#define WINDIVERT_ERROR_NO_MEMORY 1
#define WINDIVERT_ERROR_TOO_DEEP 2
#define WINDIVERT_ERROR_TOO_LONG 3
#define WINDIVERT_ERROR_BAD_TOKEN 4
#define WINDIVERT_ERROR_BAD_TOKEN_FOR_LAYER 5
#define WINDIVERT_ERROR_UNEXPECTED_TOKEN 6
#define WINDIVERT_ERROR_INDEX_OOB 7
#define WINDIVERT_ERROR_OUTPUT_TOO_SHORT 8
#define WINDIVERT_ERROR_BAD_OBJECT 9
#define WINDIVERT_ERROR_ASSERTION_FAILED 10
#define WINDIVERT_FILTER_MAXLEN 256

/* WinDivert's 64-bit packet hash; 0 if the packet does not parse. */
UINT64 WinDivertHelperHashPacket(const VOID *pPacket, UINT packetLen, UINT64 seed);

/* Every output is optional (NULL); absent headers are set to NULL. FALSE if the packet is
 * not valid IPv4/IPv6 or is truncated. ppNext/pNextLen: the rest of a batch buffer. */
BOOL WinDivertHelperParsePacket(const VOID *pPacket, UINT packetLen, PWINDIVERT_IPHDR *ppIpHdr,
                                PWINDIVERT_IPV6HDR *ppIpv6Hdr, UINT8 *pProtocol,
                                PWINDIVERT_ICMPHDR *ppIcmpHdr, PWINDIVERT_ICMPV6HDR *ppIcmpv6Hdr,
                                PWINDIVERT_TCPHDR *ppTcpHdr, PWINDIVERT_UDPHDR *ppUdpHdr,
                                PVOID *ppData, UINT *pDataLen, PVOID *ppNext, UINT *pNextLen);

/* Text -> host-order address (IPv6: UINT32[4], [0] least significant). */
BOOL WinDivertHelperParseIPv4Address(const char *addrStr, UINT32 *pAddr);
BOOL WinDivertHelperParseIPv6Address(const char *addrStr, UINT32 *pAddr);
/* Host-order address -> text; ERROR_INSUFFICIENT_BUFFER (truncated, NUL-terminated). */
BOOL WinDivertHelperFormatIPv4Address(UINT32 addr, char *buffer, UINT bufLen);
BOOL WinDivertHelperFormatIPv6Address(const UINT32 *pAddr, char *buffer, UINT bufLen);

/* Recompute checksums (flags: WINDIVERT_HELPER_NO_*); sets pAddr's checksum bits if given. */
BOOL WinDivertHelperCalcChecksums(VOID *pPacket, UINT packetLen, WINDIVERT_ADDRESS *pAddr,
                                  UINT64 flags);
/* TTL/HopLimit - 1; FALSE if it is <= 1 (unchanged) or the packet is not IP. */
BOOL WinDivertHelperDecrementTTL(VOID *pPacket, UINT packetLen);

/* Check a filter and (object != NULL) write its "@WinDiv_..." object. On error: FALSE,
 * *errorStr = a static message, *errorPos = the character position. */
BOOL WinDivertHelperCompileFilter(const char *filter, WINDIVERT_LAYER layer, char *object,
                                  UINT objLen, const char **errorStr, UINT *errorPos);
/* TRUE = match; FALSE with WinDivertGetLastError() == 0 = no match; otherwise an error. */
BOOL WinDivertHelperEvalFilter(const char *filter, const VOID *pPacket, UINT packetLen,
                               const WINDIVERT_ADDRESS *pAddr);
/* Compile and decompile to canonical text. */
BOOL WinDivertHelperFormatFilter(const char *filter, WINDIVERT_LAYER layer, char *buffer,
                                 UINT bufLen);

UINT16 WinDivertHelperNtohs(UINT16 x);
UINT16 WinDivertHelperHtons(UINT16 x);
UINT32 WinDivertHelperNtohl(UINT32 x);
UINT32 WinDivertHelperHtonl(UINT32 x);
UINT64 WinDivertHelperNtohll(UINT64 x);
UINT64 WinDivertHelperHtonll(UINT64 x);
/* Network-order 16 bytes <-> host-order UINT32[4]; in-place use allowed. */
void WinDivertHelperNtohIPv6Address(const UINT *inAddr, UINT *outAddr);
void WinDivertHelperHtonIPv6Address(const UINT *inAddr, UINT *outAddr);
/* Old spellings. */
void WinDivertHelperNtohIpv6Address(const UINT *inAddr, UINT *outAddr);
void WinDivertHelperHtonIpv6Address(const UINT *inAddr, UINT *outAddr);

/* ---- Layout checks ---------------------------------------------------------------------- */

#ifdef __cplusplus
#define LINDIVERT_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define LINDIVERT_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif
LINDIVERT_STATIC_ASSERT(sizeof(WINDIVERT_ADDRESS) == 80, "WINDIVERT_ADDRESS is 80 bytes");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_ADDRESS, Reserved2) == 12, "Reserved2 at 12");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_ADDRESS, Network) == 16, "union at 16");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_DATA_FLOW, Protocol) == 56, "Flow.Protocol at 56");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_DATA_REFLECT, Priority) == 24, "Reflect.Priority");
LINDIVERT_STATIC_ASSERT(sizeof(WINDIVERT_IPHDR) == 20, "WINDIVERT_IPHDR is 20 bytes");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_IPHDR, TOS) == 1, "IPHDR.TOS at 1");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_IPHDR, Length) == 2, "IPHDR.Length at 2");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_IPHDR, TTL) == 8, "IPHDR.TTL at 8");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_IPV6HDR, FlowLabel1) == 2, "FlowLabel1 at 2");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_IPV6HDR, SrcAddr) == 8, "IPV6HDR.SrcAddr at 8");
LINDIVERT_STATIC_ASSERT(offsetof(WINDIVERT_TCPHDR, Window) == 14, "TCPHDR.Window at 14");
LINDIVERT_STATIC_ASSERT(sizeof(WINDIVERT_IPV6HDR) == 40, "WINDIVERT_IPV6HDR is 40 bytes");
LINDIVERT_STATIC_ASSERT(sizeof(WINDIVERT_TCPHDR) == 20, "WINDIVERT_TCPHDR is 20 bytes");
LINDIVERT_STATIC_ASSERT(sizeof(WINDIVERT_UDPHDR) == 8, "WINDIVERT_UDPHDR is 8 bytes");
LINDIVERT_STATIC_ASSERT(sizeof(WINDIVERT_ICMPHDR) == 8, "WINDIVERT_ICMPHDR is 8 bytes");

#ifdef __cplusplus
}
#endif

#endif /* LINDIVERT_H */
