/*
 * floor: the machine's floor for one fan-out delivery, with no hub.
 *
 * One process (the sender, pinned to CPU 0) accepts N loopback TCP
 * connections and writes the same server WebSocket text frame (FIN, unmasked,
 * a 128-byte payload by default, as the peer benchmark's messages) to each of them, E rounds, GAP
 * µs apart, with plain epoll + send() as a minimal server would: non-blocking sockets, TCP_NODELAY
 * (as lws sets it), a socket that is full keeps its unsent bytes and is written again when epoll
 * says it is writable. A child process (the reader, pinned to CPU 1) opens the N connections and
 * reads everything.
 *
 * Reported (one JSON line): the sender's CPU (utime + stime, getrusage)
 * per delivered frame, also apart. This is what the kernel costs for one
 * send() of one frame to one socket on this machine (on loopback the sender
 * also pays for much of the receiver's TCP processing): the hub's
 * hub_cpu_us_per_delivery (fanout_cpu.mjs) is read as a ratio of it.
 *
 *   floor [-n N] [-e E] [-g GAP_US] [-s PAYLOAD_BYTES] [-b BATCH] [-c SENDER_CPU] [-r READER_CPU]
 *
 * -b BATCH > 1 writes BATCH frames to a socket per round in one writev()
 * (what the hub does for several frames waiting for one socket); the result
 * is still per frame. -c/-r -1: no pinning.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity, accept4 */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define BATCH_MAX 64
#define PAYLOAD_MAX 4096

typedef struct conn {
    int fd;
    size_t pending; /* bytes of this round's frames not yet taken by the kernel */
} conn_t;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* The reader: N connections, read until the sender closes them all; tells how many bytes came. */
static void reader(int port, int n, int cpu, int ready_fd)
{
    pin(cpu);
    int ep = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            die("reader connect");
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    if (write(ready_fd, "r", 1) != 1)
        die("reader ready");
    unsigned long long got = 0;
    static char buf[65536];
    struct epoll_event evs[256];
    int open = n;
    while (open > 0) {
        int k = epoll_wait(ep, evs, 256, 60000);
        if (k <= 0)
            break; /* a minute without data: the sender is gone */
        for (int i = 0; i < k; i++) {
            ssize_t r = read(evs[i].data.fd, buf, sizeof buf);
            if (r > 0) {
                got += (unsigned long long)r;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(evs[i].data.fd);
                open--;
            }
        }
    }
    _exit(write(ready_fd, &got, sizeof got) == sizeof got ? 0 : 1);
}

/* Writes what c still owes of this round (the same frames for everyone). */
static int send_round(conn_t *c, struct iovec *iov, int batch, size_t round_bytes, int ep)
{
    struct iovec part[BATCH_MAX];
    size_t skip = round_bytes - c->pending;
    int m = 0;
    for (int i = 0; i < batch; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        part[m].iov_base = (char *)iov[i].iov_base + skip;
        part[m].iov_len = iov[i].iov_len - skip;
        skip = 0;
        m++;
    }
    struct msghdr mh = {.msg_iov = part, .msg_iovlen = (size_t)m};
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;
    c->pending -= w > 0 ? (size_t)w : 0;
    if (c->pending) { /* full: wait for EPOLLOUT, as a server would */
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int n = 1000, rounds = 500, gap_us = 2000, payload = 128, batch = 1;
    int sender_cpu = 0, reader_cpu = 1, opt;
    while ((opt = getopt(argc, argv, "n:e:g:s:b:c:r:")) != -1) {
        switch (opt) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'e':
            rounds = atoi(optarg);
            break;
        case 'g':
            gap_us = atoi(optarg);
            break;
        case 's':
            payload = atoi(optarg);
            break;
        case 'b':
            batch = atoi(optarg);
            break;
        case 'c':
            sender_cpu = atoi(optarg);
            break;
        case 'r':
            reader_cpu = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: floor [-n N] [-e E] [-g GAP_US] [-s PAYLOAD_BYTES] [-b BATCH] "
                            "[-c SENDER_CPU] [-r READER_CPU]\n");
            return 2;
        }
    }
    if (n < 1 || rounds < 1 || gap_us < 0 || payload < 1 || payload > PAYLOAD_MAX || batch < 1 ||
        batch > BATCH_MAX) {
        fprintf(stderr, "floor: N, E >= 1, GAP >= 0, 1 <= PAYLOAD <= %d, 1 <= BATCH <= %d\n",
                PAYLOAD_MAX, BATCH_MAX);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* one frame: FIN + text, a 7- or 16-bit length, an unmasked payload */
    static unsigned char frame[4 + PAYLOAD_MAX];
    size_t hd = payload < 126 ? 2 : 4;
    frame[0] = 0x81;
    if (hd == 2) {
        frame[1] = (unsigned char)payload;
    } else {
        frame[1] = 126;
        frame[2] = (unsigned char)(payload >> 8);
        frame[3] = (unsigned char)payload;
    }
    memset(frame + hd, 'x', (size_t)payload);
    int frame_bytes = (int)hd + payload;
    struct iovec iov[BATCH_MAX];
    for (int i = 0; i < batch; i++)
        iov[i] = (struct iovec){frame, (size_t)frame_bytes};
    size_t round_bytes = (size_t)frame_bytes * (size_t)batch;

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
        die("listen");
    int ready[2];
    if (pipe(ready) != 0)
        die("pipe");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(ready[0]);
        reader(ntohs(sa.sin_port), n, reader_cpu, ready[1]);
    }
    close(ready[1]);
    pin(sender_cpu);

    conn_t *conns = calloc((size_t)n, sizeof *conns);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0)
            die("accept");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = 0, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    char r;
    if (read(ready[0], &r, 1) != 1)
        die("reader not ready");
    usleep(200000);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    unsigned long long blocked = 0;
    struct epoll_event evs[256];
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < n; i++) {
            if (conns[i].pending) { /* still full from the last round: it is a late reader */
                blocked++;
                continue;
            }
            conns[i].pending = round_bytes;
            if (send_round(&conns[i], iov, batch, round_bytes, ep) != 0)
                die("send");
        }
        /* wait out the gap, writing to sockets that became writable */
        double until = now_s() + gap_us / 1e6;
        for (;;) {
            int left_ms = (int)((until - now_s()) * 1000);
            int k = epoll_wait(ep, evs, 256, left_ms > 0 ? left_ms : 0);
            for (int j = 0; j < k; j++) {
                conn_t *c = evs[j].data.ptr;
                if (send_round(c, iov, batch, round_bytes, ep) != 0)
                    die("send");
                if (!c->pending) {
                    struct epoll_event ev = {.events = 0, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (now_s() >= until)
                break;
        }
    }
    /* drain what is still owed */
    for (;;) {
        int owed = 0;
        for (int i = 0; i < n; i++)
            owed += conns[i].pending != 0;
        if (!owed)
            break;
        int k = epoll_wait(ep, evs, 256, 1000);
        for (int j = 0; j < k; j++) {
            conn_t *c = evs[j].data.ptr;
            if (send_round(c, iov, batch, round_bytes, ep) != 0)
                die("send");
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    double wall = now_s() - t0;
    for (int i = 0; i < n; i++)
        close(conns[i].fd);
    unsigned long long got = 0;
    if (read(ready[0], &got, sizeof got) != sizeof got)
        got = 0;
    int status = 1;
    waitpid(child, &status, 0);
    double user = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
    double sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
    double frames = (double)n * rounds * batch - (double)blocked * batch;
    printf("{\"floor\":true,\"sockets\":%d,\"events\":%d,\"gap_us\":%d,\"frame_bytes\":%d,"
           "\"batch\":%d,\"frames\":%.0f,\"skipped_full\":%llu,\"reader_ok\":%s,"
           "\"sender_cpu_us_per_frame\":%.3f,\"user_us\":%.3f,\"sys_us\":%.3f,"
           "\"sends_per_s\":%.0f,\"wall_ms\":%.0f}\n",
           n, rounds, gap_us, frame_bytes, batch, frames, blocked,
           WIFEXITED(status) && got == (unsigned long long)frames * (unsigned long long)frame_bytes
               ? "true"
               : "false",
           (user + sys) * 1e6 / frames, user * 1e6 / frames, sys * 1e6 / frames,
           frames / batch / wall, wall * 1000);
    fflush(stdout);
    free(conns);
    close(ep);
    close(lfd);
    close(ready[0]);
    return 0;
}
