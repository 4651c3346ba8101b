/*
 * ebpfdivert_passthru: the eBPFDivert anchor for bench/network.sh.
 *
 * dlopen()s libebpfdivert.so (the Linux backend shipped in the pydivert 4.0.1 wheel),
 * opens a NETWORK-layer handle with a filter on the given interfaces and re-injects every
 * packet it receives unchanged (WinDivert's passthru sample), until SIGINT/SIGTERM or the
 * duration runs out.
 *
 *   ebpfdivert_passthru LIB FILTER IFNAMES [--batch N] [--duration S] [--ring-bytes B]
 *
 * IFNAMES is a comma-separated list ("" = the library's default). --batch 1 (default) uses
 * ebpfdivert_recv/ebpfdivert_send; N > 1 uses ebpfdivert_recv_ex/ebpfdivert_send_ex with up to N
 * packets per call. Prints "ready" on stdout once the handle is open, and a summary on stderr
 * at exit.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* WINDIVERT_ADDRESS is 80 bytes; the passthru only carries it from recv to send. */
typedef struct {
    uint64_t words[10];
} wd_address;

struct ebpfdivert_open_opts {
    size_t sz;
    char **ifnames;
    uint32_t ring_bytes;
};

typedef void *(*open_fn)(const char *, int, int16_t, uint64_t, struct ebpfdivert_open_opts *);
typedef int (*recv_fn)(void *, void *, uint32_t, uint32_t *, wd_address *, int);
typedef int (*recv_ex_fn)(void *, void *, uint32_t, uint32_t *, wd_address *, uint32_t *, int);
typedef int (*send_fn)(void *, const void *, uint32_t, uint32_t *, const wd_address *);
typedef int (*send_ex_fn)(void *, const void *, uint32_t, uint32_t *, const wd_address *, uint32_t);
typedef int (*close_fn)(void *);
typedef int (*shutdown_fn)(void *, int);
typedef const char *(*strerror_fn)(int);
typedef const char *(*version_fn)(void);
typedef int (*stats_fn)(void *, uint64_t *, int);

/* Kernel counters in the order of pydivert's STAT_NAMES (ebpfdivert_shared.h STAT_*). */
static const char *const stat_names[] = {"diverted", "dropped", "sniffed", "parsing_errors",
                                         "ringbuf_full", "queue_full", "too_big"};
#define NSTATS (int)(sizeof(stat_names) / sizeof(stat_names[0]))

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "ebpfdivert_passthru: missing symbol %s\n", name);
        exit(2);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s LIB FILTER IFNAMES [--batch N] [--duration S] [--ring-bytes B]\n", argv[0]);
        return 2;
    }
    const char *libpath = argv[1], *filter = argv[2];
    char *ifarg = strdup(argv[3]);
    unsigned batch = 1;
    double duration = 0;
    uint32_t ring_bytes = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch"))
            batch = (unsigned)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration"))
            duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--ring-bytes"))
            ring_bytes = (uint32_t)strtoul(argv[i + 1], NULL, 0);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1)
        batch = 1;
    if (batch > 255)
        batch = 255;

    void *lib = dlopen(libpath, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "ebpfdivert_passthru: dlopen: %s\n", dlerror());
        return 2;
    }
    open_fn d_open = (open_fn)sym(lib, "ebpfdivert_open");
    recv_fn d_recv = (recv_fn)sym(lib, "ebpfdivert_recv");
    recv_ex_fn d_recv_ex = (recv_ex_fn)sym(lib, "ebpfdivert_recv_ex");
    send_fn d_send = (send_fn)sym(lib, "ebpfdivert_send");
    send_ex_fn d_send_ex = (send_ex_fn)sym(lib, "ebpfdivert_send_ex");
    close_fn d_close = (close_fn)sym(lib, "ebpfdivert_close");
    shutdown_fn d_shutdown = (shutdown_fn)sym(lib, "ebpfdivert_shutdown");
    strerror_fn d_strerror = (strerror_fn)sym(lib, "ebpfdivert_strerror");
    version_fn d_version = (version_fn)sym(lib, "ebpfdivert_version");
    stats_fn d_stats = (stats_fn)sym(lib, "ebpfdivert_get_handle_stats");

    /* NULL-terminated interface list, as pydivert's EBPFDivert(interfaces=[...]) builds it. */
    char *names[16] = {0};
    int nnames = 0;
    for (char *save = NULL, *tok = strtok_r(ifarg, ",", &save); tok && nnames < 15;
         tok = strtok_r(NULL, ",", &save))
        names[nnames++] = tok;
    struct ebpfdivert_open_opts opts = {sizeof(opts), nnames ? names : NULL, ring_bytes};

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    errno = 0;
    void *h = d_open(filter, 0 /* NETWORK */, 0, 0, &opts);
    if (!h) {
        int e = errno ? errno : EIO;
        fprintf(stderr, "ebpfdivert_passthru: ebpfdivert_open(\"%s\"): %s\n", filter, d_strerror(e));
        return 1;
    }
    fprintf(stderr, "ebpfdivert_passthru: %s, filter \"%s\", batch %u\n", d_version(), filter, batch);
    printf("ready\n");
    fflush(stdout);

    const uint32_t bufsize = batch == 1 ? 65535 + 64 : batch * 1600u + 65536;
    unsigned char *buf = malloc(bufsize);
    wd_address *addr = calloc(batch, sizeof(wd_address));
    uint64_t rpk = 0, spk = 0, calls = 0, recv_err = 0, send_err = 0, bytes = 0;
    int last_recv_err = 0, last_send_err = 0;
    double end = duration > 0 ? now_s() + duration : 0;

    while (!stop && (end == 0 || now_s() < end)) {
        uint32_t len = 0, alen = 1;
        int ret;
        if (batch == 1) {
            ret = d_recv(h, buf, bufsize, &len, addr, 200);
        } else {
            /* This API counts addresses (not bytes as WinDivertRecvEx does), in and out. */
            alen = batch;
            ret = d_recv_ex(h, buf, bufsize, &len, addr, &alen, 200);
        }
        if (ret < 0) {
            if (ret == -EAGAIN || ret == -ETIMEDOUT || ret == -EINTR)
                continue;
            recv_err++;
            last_recv_err = -ret;
            if (ret == -ESHUTDOWN || ret == -EBADF)
                break;
            continue;
        }
        if (len == 0)
            continue;
        calls++;
        rpk += alen;
        bytes += len;
        uint32_t sent = 0;
        if (batch == 1)
            ret = d_send(h, buf, len, &sent, addr);
        else
            ret = d_send_ex(h, buf, len, &sent, addr, alen);
        if (ret < 0) {
            send_err++;
            last_send_err = -ret;
        } else {
            spk++;
        }
    }
    uint64_t st[NSTATS] = {0};
    int nst = d_stats(h, st, NSTATS);
    d_shutdown(h, 3);
    d_close(h);
    fprintf(stderr,
            "ebpfdivert_passthru: received %llu packets in %llu calls (%llu bytes), send calls ok %llu, "
            "recv errors %llu (last %s), send errors %llu (last %s)\n",
            (unsigned long long)rpk, (unsigned long long)calls, (unsigned long long)bytes,
            (unsigned long long)spk, (unsigned long long)recv_err,
            last_recv_err ? d_strerror(last_recv_err) : "-", (unsigned long long)send_err,
            last_send_err ? d_strerror(last_send_err) : "-");
    fprintf(stderr, "ebpfdivert_passthru: kernel counters:");
    for (int i = 0; i < nst && i < NSTATS; i++)
        fprintf(stderr, " %s=%llu", stat_names[i], (unsigned long long)st[i]);
    fprintf(stderr, "\n");
    return 0;
}
