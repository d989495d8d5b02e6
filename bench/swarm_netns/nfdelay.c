// nfdelay: hold every packet of NFQUEUE queue Q for DELAY_MS, then accept it.
//
// The kernel here has no sch_netem (and loads no modules), so
// swarm_netns.sh gets its propagation delay from user space: the hub
// namespace sends each IPv4 packet bridged between two peers to this queue
// (br_netfilter + iptables -j NFQUEUE) and this program gives it its verdict
// DELAY_MS after it came. The delay is constant, so packets leave in the
// order they came and one batch verdict ("accept all ids up to X") releases
// everything due. Only metadata crosses to user space.
//
//   nfdelay QUEUE DELAY_MS           (runs until SIGTERM/SIGINT)
//   build: gcc -O2 -o nfdelay nfdelay.c -lnetfilter_queue -lmnl
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define SLOTS (1u << 17) // packets held at most (a power of two)

static struct { uint32_t id; int64_t due; } held[SLOTS];
static uint32_t first, next;        // held packets are [first, next)
static int64_t delay;               // ns
static unsigned long long seen, passed_early, most;
static volatile sig_atomic_t done;

static int64_t now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int got(struct nfq_q_handle *q, struct nfgenmsg *m, struct nfq_data *d, void *x) {
    (void)m, (void)x;
    struct nfqnl_msg_packet_hdr *h = nfq_get_msg_packet_hdr(d);
    if (!h) return 0;
    uint32_t id = ntohl(h->packet_id);
    seen++;
    if (next - first == SLOTS) { // full: let it go undelayed (counted)
        passed_early++;
        return nfq_set_verdict(q, id, NF_ACCEPT, 0, NULL);
    }
    held[next % SLOTS].id = id;
    held[next % SLOTS].due = now() + delay;
    next++;
    if (next - first > most) most = next - first;
    return 0;
}

static void stop(int s) { (void)s; done = 1; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: nfdelay QUEUE DELAY_MS\n");
        return 2;
    }
    delay = (int64_t)(atof(argv[2]) * 1e6);
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    struct nfq_handle *h = nfq_open();
    struct nfq_q_handle *q = h ? nfq_create_queue(h, atoi(argv[1]), got, NULL) : NULL;
    if (!q || nfq_set_mode(q, NFQNL_COPY_META, 0) < 0) {
        perror("nfdelay: cannot open the queue");
        return 1;
    }
    nfq_set_queue_maxlen(q, SLOTS);
    // If this program falls behind, the kernel passes packets on instead of
    // dropping them.
    nfq_set_queue_flags(q, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN);
    int fd = nfq_fd(h), big = 32 << 20, one = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
    fprintf(stderr, "nfdelay: queue %s, %s ms\n", argv[1], argv[2]);

    static char buf[1 << 16];
    while (!done) {
        int64_t t = now();
        if (first != next && held[first % SLOTS].due <= t) {
            uint32_t last = first;
            while (last + 1 != next && held[(last + 1) % SLOTS].due <= t) last++;
            nfq_set_verdict_batch(q, held[last % SLOTS].id, NF_ACCEPT);
            first = last + 1;
        }
        struct timespec wait, *wp = NULL;
        if (first != next) {
            int64_t w = held[first % SLOTS].due - now();
            if (w < 0) w = 0;
            wait.tv_sec = w / 1000000000LL;
            wait.tv_nsec = w % 1000000000LL;
            wp = &wait;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (ppoll(&p, 1, wp, NULL) > 0) {
            for (int i = 0; i < 512; i++) { // what is queued now, no more
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0) break;
                nfq_handle_packet(h, buf, (int)n);
            }
        }
    }
    if (first != next) nfq_set_verdict_batch(q, held[(next - 1) % SLOTS].id, NF_ACCEPT);
    fprintf(stderr, "nfdelay: %llu packets, at most %llu held, %llu passed undelayed (full)\n", seen, most,
            passed_early);
    nfq_destroy_queue(q);
    nfq_close(h);
    return 0;
}
