/*
 * netbench: the small UDP load tools of bench/network.sh.
 *
 *   netbench sink PORT MAX_SECONDS           count delivered datagrams (recvmmsg); exits 1 s
 *                                            after the last one; prints "received N span_s pps"
 *   netbench flood DST PORT SIZE SECONDS [FLOWS]  send SIZE-byte UDP payloads as fast as
 *                                            possible, from FLOWS sockets in turn (default 1)
 *                                            (sendmmsg, 64 per call); prints "sent N secs pps errors"
 *   netbench echo PORT                       UDP echo server (until killed)
 *   netbench pingpong DST PORT COUNT SIZE    COUNT request/response round trips after 100 warm-up
 *                                            ones; prints "rtt_us median p99 min mean lost"
 *   netbench sendcost NETNS_A NETNS_B DST PORT BATCHES
 *                                            the CPU cost of sending a 64-byte UDP packet through
 *                                            namespace A against B (paths /var/run/netns/..., set up
 *                                            alike but for what is under test in A): one socket
 *                                            made in each, batches of 64 sent (sendmmsg) to DST:PORT
 *                                            in turn (ABBA...), each batch timed; drifts in the
 *                                            machine's speed hit both alike, so small differences
 *                                            show. Prints "sendcost A_ns B_ns paired_diff_ns" per
 *                                            packet: means of the middle 80 % of the batches, and
 *                                            the median of the batch-by-batch differences.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        die("socket");
    return fd;
}

static void bind_port(int fd, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("bind");
}

static void connect_to(int fd, const char *dst, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, dst, &a.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", dst);
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
}

static void set_timeout(int fd, int opt, double secs)
{
    struct timeval tv = {.tv_sec = (time_t)secs, .tv_usec = (suseconds_t)((secs - (time_t)secs) * 1e6)};
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

static int sink(int port, double max_secs)
{
    int fd = udp_socket();
    int rcv = 8 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    bind_port(fd, port);
    set_timeout(fd, SO_RCVTIMEO, 0.1);
    static char bufs[BATCH][2048];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof(bufs[i]);
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    printf("ready\n");
    fflush(stdout);
    uint64_t count = 0;
    double start = now_s(), first = 0, last = 0;
    for (;;) {
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        double t = now_s();
        if (n > 0) {
            if (!count)
                first = t;
            count += n;
            last = t;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            die("recvmmsg");
        }
        if (count && t - last > 1.0)
            break;
        if (t - start > max_secs)
            break;
    }
    double span = last - first;
    printf("received %llu %.6f %.0f\n", (unsigned long long)count, span, span > 0 ? count / span : 0.0);
    return 0;
}

static int flood(const char *dst, int port, int size, double secs, int flows)
{
    /* FLOWS sockets (source ports), each batch from the next one in turn */
    int fds[64];
    if (flows < 1 || flows > 64)
        flows = 1;
    for (int i = 0; i < flows; i++) {
        fds[i] = udp_socket();
        connect_to(fds[i], dst, port);
        int snd = 4 << 20;
        setsockopt(fds[i], SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd));
    }
    static char payload[65536];
    if (size < 1 || size > (int)sizeof(payload))
        size = 64;
    memset(payload, 'x', size);
    struct iovec iov = {.iov_base = payload, .iov_len = (size_t)size};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t sent = 0, errors = 0;
    double start = now_s(), t = start;
    unsigned turn = 0;
    while (t - start < secs) {
        int n = sendmmsg(fds[turn++ % (unsigned)flows], msgs, BATCH, 0);
        if (n > 0)
            sent += n;
        else if (n < 0) {
            errors++;
            if (errno != ENOBUFS && errno != EAGAIN && errno != EPERM && errno != ECONNREFUSED &&
                errno != EINTR)
                die("sendmmsg");
        }
        t = now_s();
    }
    printf("sent %llu %.6f %.0f %llu\n", (unsigned long long)sent, t - start, sent / (t - start),
           (unsigned long long)errors);
    return 0;
}

__attribute__((noreturn)) static void echo(int port)
{
    int fd = udp_socket();
    bind_port(fd, port);
    char buf[2048];
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("recvfrom");
        }
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int pingpong(const char *dst, int port, int count, int size)
{
    int fd = udp_socket();
    connect_to(fd, dst, port);
    set_timeout(fd, SO_RCVTIMEO, 0.2);
    char buf[2048], rbuf[2048];
    if (size < 8 || size > (int)sizeof(buf))
        size = 64;
    memset(buf, 'p', sizeof(buf));
    double *rtt = calloc((size_t)count, sizeof(double));
    int got = 0, lost = 0;
    const int warmup = 100;
    for (uint32_t seq = 0; (int)seq < count + warmup; seq++) {
        memcpy(buf, &seq, sizeof(seq));
        double t0 = now_s();
        if (send(fd, buf, (size_t)size, 0) < 0) {
            lost++;
            continue;
        }
        for (;;) {
            ssize_t n = recv(fd, rbuf, sizeof(rbuf), 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                lost++; /* timeout (or ICMP error): counted as lost */
                break;
            }
            uint32_t r;
            memcpy(&r, rbuf, sizeof(r));
            if (r != seq)
                continue; /* a late answer to an earlier request */
            if ((int)seq >= warmup)
                rtt[got++] = (now_s() - t0) * 1e6;
            break;
        }
    }
    if (!got) {
        printf("rtt_us nan nan nan nan %d\n", lost);
        return 0;
    }
    qsort(rtt, (size_t)got, sizeof(double), cmp_double);
    double sum = 0;
    for (int i = 0; i < got; i++)
        sum += rtt[i];
    int p99 = (int)(0.99 * (got - 1) + 0.5);
    printf("rtt_us %.1f %.1f %.1f %.1f %d\n", rtt[got / 2], rtt[p99], rtt[0], sum / got, lost);
    return 0;
}

/* An unconnected UDP socket made in the network namespace at PATH (the thread returns to
 * its own namespace after). */
static int udp_socket_in(const char *path)
{
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || ns < 0)
        die(path);
    if (setns(ns, CLONE_NEWNET) < 0)
        die("setns");
    int fd = udp_socket();
    int snd = 16 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd));
    if (setns(self, CLONE_NEWNET) < 0)
        die("setns back");
    close(ns);
    close(self);
    return fd;
}

static int sendcost(const char *ns_a, const char *ns_b, const char *dst, int port, int batches)
{
    int fd[2] = {udp_socket_in(ns_a), udp_socket_in(ns_b)};
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, dst, &to.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", dst);
        return 2;
    }
    if (batches < 10)
        batches = 10;
    static char payload[64];
    struct iovec iov = {.iov_base = payload, .iov_len = sizeof(payload)};
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof(to);
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    /* ns per batch; the clock is CLOCK_MONOTONIC seconds as a double (now_s), exact to
     * well below a nanosecond at these magnitudes */
    double *t[2] = {calloc((size_t)batches, sizeof(double)), calloc((size_t)batches, sizeof(double))};
    double *diff = calloc((size_t)batches, sizeof(double));
    for (int w = 0; w < 1000; w++) /* warm both paths (routes, neighbours, caches) */
        sendmmsg(fd[w & 1], msgs, BATCH, 0);
    for (int r = 0; r < batches; r++) {
        for (int k = 0; k < 2; k++) {
            int j = (r & 1) ? 1 - k : k; /* ABBA: neither always goes first */
            double t0 = now_s();
            int n = sendmmsg(fd[j], msgs, BATCH, 0);
            t[j][r] = (now_s() - t0) * 1e9;
            if (n != BATCH) {
                fprintf(stderr, "sendcost: sendmmsg sent %d of %d: %s\n", n, BATCH, strerror(errno));
                return 1;
            }
        }
        diff[r] = t[0][r] - t[1][r];
    }
    double mean[2];
    for (int j = 0; j < 2; j++) {
        qsort(t[j], (size_t)batches, sizeof(double), cmp_double);
        int lo = batches / 10, hi = batches - batches / 10;
        double sum = 0;
        for (int r = lo; r < hi; r++)
            sum += t[j][r];
        mean[j] = sum / (hi - lo) / BATCH;
    }
    qsort(diff, (size_t)batches, sizeof(double), cmp_double);
    printf("sendcost %.1f %.1f %.1f\n", mean[0], mean[1], diff[batches / 2] / BATCH);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 4 && !strcmp(argv[1], "sink"))
        return sink(atoi(argv[2]), atof(argv[3]));
    if (argc >= 6 && !strcmp(argv[1], "flood"))
        return flood(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), argc >= 7 ? atoi(argv[6]) : 1);
    if (argc >= 3 && !strcmp(argv[1], "echo"))
        echo(atoi(argv[2]));
    if (argc >= 6 && !strcmp(argv[1], "pingpong"))
        return pingpong(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc >= 7 && !strcmp(argv[1], "sendcost"))
        return sendcost(argv[2], argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: netbench sink PORT MAX_S | flood DST PORT SIZE S [FLOWS] | echo PORT | "
                    "pingpong DST PORT COUNT SIZE | sendcost NETNS_A NETNS_B DST PORT BATCHES\n");
    return 2;
}
