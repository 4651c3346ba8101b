/*
 * passthru: divert packets matching a filter and re-inject them unchanged, in batches,
 * from several threads (lindivert's take on WinDivert's passthru sample).
 *
 *   passthru [filter] [threads] [batch] [priority]
 *
 * Prints one line per batch when PASSTHRU_VERBOSE is set. Stops on SIGINT/SIGTERM.
 */
#define _POSIX_C_SOURCE 200809L
#include "lindivert.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static HANDLE handle;
static UINT batch = 1;
static int verbose;

static void *worker(void *arg) {
    (void)arg;
    size_t cap = (size_t)batch * WINDIVERT_MTU_MAX;
    UINT8 *packets = malloc(cap);
    WINDIVERT_ADDRESS *addrs = calloc(batch, sizeof *addrs);
    if (!packets || !addrs) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (;;) {
        UINT len = 0, alen = batch * (UINT)sizeof *addrs;
        if (!WinDivertRecvEx(handle, packets, (UINT)cap, &len, 0, addrs, &alen, NULL)) {
            UINT err = WinDivertGetLastError();
            if (err == ERROR_NO_DATA || err == ERROR_INVALID_HANDLE || err == ERROR_BAD_COMMAND)
                break;
            fprintf(stderr, "warning: receive failed (%u)\n", err);
            continue;
        }
        if (verbose)
            printf("batch: %u packet(s), %u bytes\n", alen / (UINT)sizeof *addrs, len);
        if (!WinDivertSendEx(handle, packets, len, NULL, 0, addrs, alen, NULL))
            fprintf(stderr, "warning: send failed (%u)\n", WinDivertGetLastError());
        fflush(stdout);
    }
    free(packets);
    free(addrs);
    return NULL;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : "true";
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    int b = argc > 3 ? atoi(argv[3]) : 1;
    int priority = argc > 4 ? atoi(argv[4]) : 0;
    verbose = getenv("PASSTHRU_VERBOSE") != NULL;
    if (threads < 1 || threads > 64 || b < 1 || b > WINDIVERT_BATCH_MAX ||
        priority < WINDIVERT_PRIORITY_LOWEST || priority > WINDIVERT_PRIORITY_HIGHEST) {
        fprintf(stderr, "usage: %s [filter] [threads 1-64] [batch 1-%d] [priority]\n", argv[0],
                WINDIVERT_BATCH_MAX);
        return 2;
    }
    batch = (UINT)b;

    handle = WinDivertOpen(filter, WINDIVERT_LAYER_NETWORK, (INT16)priority, 0);
    if (handle == INVALID_HANDLE_VALUE) {
        const char *msg = "";
        UINT pos = 0;
        UINT err = WinDivertGetLastError();
        if (err == ERROR_INVALID_PARAMETER &&
            !WinDivertHelperCompileFilter(filter, WINDIVERT_LAYER_NETWORK, NULL, 0, &msg, &pos)) {
            fprintf(stderr, "error: invalid filter at %u: %s\n", pos, msg);
            return 1;
        }
        fprintf(stderr, "error: cannot open the handle (%u)\n", err);
        return 1;
    }
    printf("passthru: %d thread(s), batch %u, filter \"%s\"\n", threads, batch, filter);
    fflush(stdout);

    /* Signals are taken by the main thread with sigwait; workers never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    int sig = 0;
    sigwait(&set, &sig);
    /* Stop receiving, let workers finish, close (re-injects whatever is queued). */
    WinDivertShutdown(handle, WINDIVERT_SHUTDOWN_RECV);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    WinDivertClose(handle);
    free(t);
    printf("passthru: stopped\n");
    return 0;
}
