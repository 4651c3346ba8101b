/* Times WinDivert's own filter evaluator, ebpfdivert_helper_eval_filter() in
 * libebpfdivert.so (the pydivert 4.0.1 wheel), on the benchmark cases.
 * Usage: anchor_eval LIB PACKETS CASES ITERATIONS
 * Prints one line per case: "<ns per eval>\t<result>".
 * The library is loaded at run time; nothing of it is linked or shipped. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*eval_fn)(const char *, const void *, uint32_t, const void *);

struct pkt { char name[64]; unsigned char data[2048]; uint32_t len; };

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s LIB PACKETS CASES ITERATIONS\n", argv[0]); return 2; }
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    eval_fn eval = (eval_fn)dlsym(lib, "ebpfdivert_helper_eval_filter");
    if (!eval) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 1; }
    long iters = atol(argv[4]);

    static struct pkt pkts[32];
    int npkts = 0;
    char line[4096];
    FILE *f = fopen(argv[2], "r");
    if (!f) { perror(argv[2]); return 1; }
    while (fgets(line, sizeof line, f) && npkts < 32) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        struct pkt *p = &pkts[npkts++];
        snprintf(p->name, sizeof p->name, "%s", line);
        p->len = 0;
        for (char *h = tab + 1; hexval(h[0]) >= 0 && hexval(h[1]) >= 0 && p->len < sizeof p->data; h += 2)
            p->data[p->len++] = (unsigned char)(hexval(h[0]) * 16 + hexval(h[1]));
    }
    fclose(f);

    f = fopen(argv[3], "r");
    if (!f) { perror(argv[3]); return 1; }
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = 0;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        const char *filter = tab + 1;
        struct pkt *p = NULL;
        for (int i = 0; i < npkts; i++) if (!strcmp(pkts[i].name, line)) p = &pkts[i];
        if (!p) { fprintf(stderr, "unknown packet %s\n", line); return 1; }
        /* WINDIVERT_ADDRESS: 80 bytes; Layer=NETWORK, Outbound=1, IPv6 per packet. */
        unsigned char addr[80] __attribute__((aligned(8)));
        memset(addr, 0, sizeof addr);
        uint32_t bits = (1u << 17) | ((p->data[0] >> 4) == 6 ? (1u << 20) : 0);
        memcpy(addr + 8, &bits, 4);
        int result = eval(filter, p->data, p->len, addr);
        for (long i = 0; i < iters / 10; i++) eval(filter, p->data, p->len, addr); /* warm-up */
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) eval(filter, p->data, p->len, addr);
        double t1 = now_ns();
        printf("%.1f\t%d\n", (t1 - t0) / iters, result);
    }
    return 0;
}
