/*
 * nfq_consumer: the plain-C NFQUEUE anchor for bench/network.sh.
 *
 * A passthru consumer of one netfilter queue over raw netlink (libmnl for message framing):
 * binds the queue with copy mode PACKET and NFQA_CFG_F_GSO, drains up to R packet messages per
 * recvmmsg() call, and answers every message of a round with its own NF_ACCEPT verdict, all
 * verdicts of the round in ONE sendmsg (or, with -m batch, one NFQNL_MSG_VERDICT_BATCH).
 *
 *   nfq_consumer [-q QUEUE] [-r R] [-c COPY_RANGE] [-l QUEUE_MAXLEN] [-m multi|batch] [-G] [-d SECONDS]
 *
 *   -G  do not request NFQA_CFG_F_GSO (the kernel then segments GSO packets before queueing)
 *
 * Prints "ready" on stdout once bound, and a summary on stderr at exit (SIGINT/SIGTERM/-d).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define SLOT_SIZE (65536 + 8192) /* a whole GSO packet plus the netlink/nfqueue headers */
#define MAX_R 256

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct nlmsghdr *put_header(char *buf, int type, uint16_t queue, uint16_t flags)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(queue);
    return nlh;
}

/* Sends one config message and waits for its ACK. */
static int config(struct mnl_socket *nl, struct nlmsghdr *nlh)
{
    static uint32_t seq = 1;
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = seq++;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        if (n < 0)
            return -errno;
        int ret = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, mnl_socket_get_portid(nl), NULL, NULL);
        if (ret < 0)
            return -errno;
        if (ret == MNL_CB_STOP)
            return 0;
    }
}

int main(int argc, char **argv)
{
    int queue = 0, r = 64, maxlen = 0, gso = 1, batch_verdict = 0, opt;
    unsigned copy_range = 0xffff;
    double duration = 0;
    while ((opt = getopt(argc, argv, "q:r:c:l:m:Gd:")) != -1) {
        switch (opt) {
        case 'q': queue = atoi(optarg); break;
        case 'r': r = atoi(optarg); break;
        case 'c': copy_range = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'l': maxlen = atoi(optarg); break;
        case 'm': batch_verdict = !strcmp(optarg, "batch"); break;
        case 'G': gso = 0; break;
        case 'd': duration = atof(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-q QUEUE] [-r R] [-c COPY_RANGE] [-l MAXLEN] [-m multi|batch] [-G] [-d S]\n",
                    argv[0]);
            return 2;
        }
    }
    if (r < 1)
        r = 1;
    if (r > MAX_R)
        r = MAX_R;

    struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        perror("nfq_consumer: netlink socket");
        return 1;
    }
    int fd = mnl_socket_get_fd(nl);
    int rcvbuf = 16 << 20, one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));

    char cbuf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = put_header(cbuf, NFQNL_MSG_CONFIG, (uint16_t)queue, 0);
    struct nfqnl_msg_config_cmd cmd = {.command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_INET)};
    mnl_attr_put(nlh, NFQA_CFG_CMD, sizeof(cmd), &cmd);
    int err = config(nl, nlh);
    if (err) {
        fprintf(stderr, "nfq_consumer: bind queue %d: %s\n", queue, strerror(-err));
        return 1;
    }
    nlh = put_header(cbuf, NFQNL_MSG_CONFIG, (uint16_t)queue, 0);
    struct nfqnl_msg_config_params params = {.copy_range = htonl(copy_range), .copy_mode = NFQNL_COPY_PACKET};
    mnl_attr_put(nlh, NFQA_CFG_PARAMS, sizeof(params), &params);
    if (maxlen > 0)
        mnl_attr_put_u32(nlh, NFQA_CFG_QUEUE_MAXLEN, htonl((uint32_t)maxlen));
    if (gso) {
        mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
        mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
    }
    err = config(nl, nlh);
    if (err) {
        fprintf(stderr, "nfq_consumer: configure queue %d: %s\n", queue, strerror(-err));
        return 1;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

    char *slots = malloc((size_t)r * SLOT_SIZE);
    struct iovec *iov = calloc((size_t)r, sizeof(*iov));
    struct mmsghdr *msgs = calloc((size_t)r, sizeof(*msgs));
    struct sockaddr_nl *peers = calloc((size_t)r, sizeof(*peers));
    for (int i = 0; i < r; i++) {
        iov[i].iov_base = slots + (size_t)i * SLOT_SIZE;
        iov[i].iov_len = SLOT_SIZE;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &peers[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
    }
    /* One verdict message: nlmsghdr + nfgenmsg + NFQA_VERDICT_HDR = 32 bytes, aligned. */
    const size_t vmsg = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg)) +
                        MNL_ATTR_HDRLEN + MNL_ALIGN(sizeof(struct nfqnl_msg_verdict_hdr));
    size_t vcap = (size_t)r * 16 * vmsg; /* a datagram normally holds one packet; be generous */
    char *vbuf = malloc(vcap);

    printf("ready\n");
    fflush(stdout);

    uint64_t packets = 0, rounds = 0, bytes = 0, gso_pkts = 0, truncated = 0, nl_errors = 0,
             send_errors = 0, max_round = 0;
    double end = duration > 0 ? now_s() + duration : 0;
    while (!stop && (end == 0 || now_s() < end)) {
        for (int i = 0; i < r; i++)
            msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
        int n = recvmmsg(fd, msgs, (unsigned)r, MSG_WAITFORONE, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EINTR && errno != ENOBUFS) {
                perror("nfq_consumer: recvmmsg");
                break;
            }
            continue;
        }
        size_t vlen = 0;
        uint32_t max_id = 0, in_round = 0;
        for (int i = 0; i < n; i++) {
            if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
                truncated++;
            int len = (int)msgs[i].msg_len;
            for (struct nlmsghdr *m = iov[i].iov_base; mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
                if (m->nlmsg_type == NLMSG_ERROR) {
                    const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
                    if (e->error)
                        nl_errors++;
                    continue;
                }
                if (m->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
                    continue;
                uint32_t id = 0, info = 0;
                int have_id = 0;
                struct nlattr *a;
                mnl_attr_for_each(a, m, sizeof(struct nfgenmsg))
                {
                    switch (mnl_attr_get_type(a)) {
                    case NFQA_PACKET_HDR: {
                        const struct nfqnl_msg_packet_hdr *ph = mnl_attr_get_payload(a);
                        id = ntohl(ph->packet_id);
                        have_id = 1;
                        break;
                    }
                    case NFQA_PAYLOAD:
                        bytes += mnl_attr_get_payload_len(a);
                        break;
                    case NFQA_SKB_INFO:
                        info = ntohl(mnl_attr_get_u32(a));
                        break;
                    }
                }
                if (!have_id)
                    continue;
                packets++;
                in_round++;
                if (info & NFQA_SKB_GSO)
                    gso_pkts++;
                if (batch_verdict) {
                    if (id > max_id)
                        max_id = id;
                    continue;
                }
                if (vlen + vmsg > vcap)
                    continue; /* cannot happen with the sizes above */
                struct nlmsghdr *v = put_header(vbuf + vlen, NFQNL_MSG_VERDICT, (uint16_t)queue, 0);
                struct nfqnl_msg_verdict_hdr vh = {.verdict = htonl(NF_ACCEPT), .id = htonl(id)};
                mnl_attr_put(v, NFQA_VERDICT_HDR, sizeof(vh), &vh);
                vlen += v->nlmsg_len;
            }
        }
        if (batch_verdict && in_round) {
            struct nlmsghdr *v = put_header(vbuf, NFQNL_MSG_VERDICT_BATCH, (uint16_t)queue, 0);
            struct nfqnl_msg_verdict_hdr vh = {.verdict = htonl(NF_ACCEPT), .id = htonl(max_id)};
            mnl_attr_put(v, NFQA_VERDICT_HDR, sizeof(vh), &vh);
            vlen = v->nlmsg_len;
        }
        if (in_round > max_round)
            max_round = in_round;
        rounds++;
        if (vlen && mnl_socket_sendto(nl, vbuf, vlen) < 0)
            send_errors++;
    }
    fprintf(stderr,
            "nfq_consumer: queue %d, %llu packets (%llu GSO, %llu bytes) in %llu rounds (max %llu/round), "
            "truncated %llu, netlink errors %llu, send errors %llu\n",
            queue, (unsigned long long)packets, (unsigned long long)gso_pkts, (unsigned long long)bytes,
            (unsigned long long)rounds, (unsigned long long)max_round, (unsigned long long)truncated,
            (unsigned long long)nl_errors, (unsigned long long)send_errors);
    mnl_socket_close(nl);
    return 0;
}
