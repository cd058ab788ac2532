/*
 * rest_load: a lean load generator for the hub's REST reservation path.
 *
 * queue_bench.js measures reservations/s of one hub, but its node HTTP
 * clients burn a large share of the machine's two cores (shared with the hub
 * and PostgreSQL), so its number measures node as much as the hub. This one
 * process costs about what pgbench's client costs (reserve_pgbench.sh), so
 * the hub can be read as a ratio of the pgbench ceiling.
 *
 * N keep-alive HTTP/1.1 connections (one per line of FILE: `token arcade_id
 * game_id`, written by the node side, so no JWT code here), plain epoll,
 * non-blocking, one thread. Each connection loops:
 *   POST /api/v1/reservations {"arcade_id":A,"game_id":G}  (Authorization:
 *     Bearer, a fresh Idempotency-Key as the phone app sends)  -> 201, the id
 *     read from "reservation": {"id": ...}
 *   DELETE /api/v1/reservations/{id}                          -> 200
 * Answers are read by Content-Length or chunked (the hub sends
 * Content-Length; headers and body may come in separate reads); an answer
 * that says Connection: close, or a close after a complete answer, makes the
 * next request reconnect.
 *
 * -w seconds of warm-up, then -s measured seconds; in-flight pairs are then
 * finished (a reservation made is cancelled) but not counted. One JSON line:
 * pairs/s, p50/p99 per request (all, reserve, cancel), the client's own CPU
 * (getrusage over the measured seconds) per pair. Any other status than the
 * expected one aborts the run (exit 1) with the answer printed; so does a
 * request without an answer for -t ms: it never hangs. A bench client: the
 * hub's answers are trusted to be HTTP, not checked as hostile input.
 *
 *   rest_load -p PORT -f FILE [-H 127.0.0.1] [-w 2] [-s 10] [-t 10000] [-c CPU] [-P HUB_PID]
 *
 * -c pins this process to a CPU; -P adds the hub's CPU (utime + stime from
 * /proc) over the same measured seconds. Lines {"phase":"measure"} and
 * {"phase":"stop"} mark the measured window as it opens and closes (the
 * caller counts the snapshots its subscribers got in it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity, strcasestr, memmem */
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "chunked.h"

#define TOKEN_MAX 1024
#define REQ_MAX (TOKEN_MAX + 512)
#define ANSWER_MAX (1 << 20) /* a chunked answer's decoded body, at most */

enum { REQ_RESERVE, REQ_CANCEL };

typedef struct conn {
    int fd;        /* -1: not connected (the next request connects) */
    bool busy;     /* a request is out, its answer not complete */
    bool want_out; /* EPOLLOUT asked for: a connect or a partial write */
    int kind;      /* REQ_RESERVE or REQ_CANCEL */
    long long rid; /* the reservation to cancel */
    long arcade, game;
    char token[TOKEN_MAX];
    char out[REQ_MAX];
    size_t out_len, out_off;
    char *in; /* the answer so far */
    size_t in_len, in_cap;
    double started; /* the request's start, for its latency and its timeout */
} conn_t;

/* latencies in µs of the measured window, one array per kind */
typedef struct lat {
    uint32_t *us;
    size_t n, cap;
} lat_t;

static struct sockaddr_in g_addr;
static const char *g_host = "127.0.0.1";
static int g_port;
static int g_ep;
static uint64_t g_rng;
static double g_warm_end, g_end; /* the measured window */
static bool g_stopping;          /* past g_end: finish pairs, start no new ones */
static unsigned long long g_pairs, g_connects;
static lat_t g_lat[2];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rest_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* xorshift64*: Idempotency-Keys only need to differ, not to be secret. */
static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1DULL;
}

/* A version-4-shaped UUID, as the phone app's keys (36 bytes + NUL). */
static void uuid(char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = rnd(), b = rnd();
    for (int i = 0, k = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            out[i] = '-';
            continue;
        }
        uint64_t *src = k < 16 ? &a : &b;
        out[i] = i == 14 ? '4' : hex[*src & 15];
        *src >>= 4;
        k++;
    }
    out[36] = '\0';
}

static void lat_add(lat_t *l, double seconds)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->us = realloc(l->us, l->cap * sizeof *l->us);
        if (!l->us)
            fail("out of memory");
    }
    l->us[l->n++] = (uint32_t)(seconds * 1e6);
}

/* utime + stime of process pid in seconds, from /proc (-1: not readable). */
static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *sorted, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p / 100 * (double)n);
    return sorted[i < n ? i : n - 1] / 1000.0;
}

static void watch(conn_t *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        fail("epoll_ctl: %s", strerror(errno));
    c->want_out = out;
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->want_out = false;
}

static void conn_open(conn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0 && errno != EINPROGRESS)
        fail("connect: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        fail("epoll_ctl add: %s", strerror(errno));
    c->want_out = true; /* the write waits for the connect */
    g_connects++;
}

/* Sends what is left of c->out; asks for EPOLLOUT while some is. */
static void flush(conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN))
            break;
        if (w < 0)
            fail("send: %s", strerror(errno));
        c->out_off += (size_t)w;
    }
    if ((c->out_off < c->out_len) != c->want_out)
        watch(c, c->out_off < c->out_len);
}

static void start(conn_t *c, int kind)
{
    c->kind = kind;
    c->in_len = 0;
    c->out_off = 0;
    int n;
    if (kind == REQ_RESERVE) {
        char body[96], key[37];
        int blen =
            snprintf(body, sizeof body, "{\"arcade_id\":%ld,\"game_id\":%ld}", c->arcade, c->game);
        uuid(key);
        n = snprintf(c->out, sizeof c->out,
                     "POST /api/v1/reservations HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                     "Idempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
                     g_host, g_port, c->token, key, blen, body);
    } else {
        n = snprintf(c->out, sizeof c->out,
                     "DELETE /api/v1/reservations/%lld HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Authorization: Bearer %s\r\n\r\n",
                     c->rid, g_host, g_port, c->token);
    }
    if (n < 0 || (size_t)n >= sizeof c->out)
        fail("a request does not fit in %zu bytes (the token is too long)", sizeof c->out);
    c->out_len = (size_t)n;
    c->busy = true;
    c->started = now_s();
    if (c->fd < 0)
        conn_open(c); /* the request goes out on EPOLLOUT */
    else
        flush(c);
}

/* The value of header `name` (with its colon) in head[0..len), or NULL. */
static const char *header(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *p = head; p && p < head + len;) {
        const char *eol = memmem(p, (size_t)(head + len - p), "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/*
 * "reservation": {... "id": N ...}: the id key at depth 1 of that object
 * (jsonb puts short keys first, but nested objects may have ids too).
 */
static long long reservation_id(const char *body, size_t len)
{
    const char *p = memmem(body, len, "\"reservation\"", 13), *end = body + len;
    if (!p || !(p = memchr(p, '{', (size_t)(end - p))))
        return -1;
    int depth = 0;
    for (; p < end; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0)
                return -1;
        } else if (*p == '"') {
            const char *s = ++p;
            while (p < end && *p != '"')
                p += *p == '\\' ? 2 : 1;
            if (depth == 1 && p - s == 2 && s[0] == 'i' && s[1] == 'd') {
                const char *v = p + 1;
                while (v < end && (*v == ' ' || *v == ':'))
                    v++;
                return v < end && isdigit((unsigned char)*v) ? strtoll(v, NULL, 10) : -1;
            }
        }
    }
    return -1;
}

static void finished(conn_t *c, int status, const char *body, size_t blen)
{
    double t = now_s();
    int want = c->kind == REQ_RESERVE ? 201 : 200;
    if (status != want) {
        fprintf(stderr, "rest_load: %s answered %d (expected %d): %.*s\n",
                c->kind == REQ_RESERVE ? "POST /api/v1/reservations" : "DELETE", status, want,
                (int)blen, body);
        exit(1);
    }
    bool measured = t >= g_warm_end && t < g_end;
    if (measured)
        lat_add(&g_lat[c->kind], t - c->started);
    c->busy = false;
    if (c->kind == REQ_RESERVE) {
        c->rid = reservation_id(body, blen);
        if (c->rid < 0) {
            fprintf(stderr, "rest_load: no reservation id in: %.*s\n", (int)blen, body);
            exit(1);
        }
        start(c, REQ_CANCEL); /* even when stopping: leave no reservation behind */
        return;
    }
    g_pairs += measured;
    if (!g_stopping)
        start(c, REQ_RESERVE);
}

/*
 * Reads what came, one recv per event (epoll is level-triggered: what does
 * not fit comes with the next event); finishes the request once its answer
 * is complete.
 */
static void on_readable(conn_t *c)
{
    if (c->in_cap - c->in_len < 4096) {
        c->in_cap = c->in_cap ? c->in_cap * 2 : 16384;
        if (!(c->in = realloc(c->in, c->in_cap)))
            fail("out of memory");
    }
    ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        if (c->busy) {
            c->in[c->in_len] = '\0';
            fail("the hub closed the connection during a request (%s): %s",
                 r < 0 ? strerror(errno) : "EOF", c->in);
        }
        conn_close(c); /* idle and closed: the next request reconnects */
        return;
    }
    c->in_len += (size_t)r;
    if (!c->busy)
        return;
    c->in[c->in_len] = '\0';
    char *eoh = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!eoh)
        return;
    size_t head = (size_t)(eoh - c->in) + 4, vlen;
    int status = c->in_len > 12 ? atoi(c->in + 9) : 0; /* "HTTP/1.1 201 " */
    const char *v;
    char *body = c->in + head;
    long blen;
    if ((v = header(c->in, head, "transfer-encoding:", &vlen)) && vlen >= 7 &&
        strncasecmp(v, "chunked", 7) == 0) {
        /* the hub's own decoder (hub/net/chunked.c), from the body's start at each read */
        static char decoded[ANSWER_MAX + 1]; /* + the '\0' below; one thread */
        chunked_t ck;
        size_t used, dlen = 0;
        chunked_init(&ck);
        body = decoded;
        int r = chunked_feed(&ck, c->in + head, c->in_len - head, &used, body, ANSWER_MAX, &dlen);
        if (r == CHUNKED_MORE)
            return;
        if (r != CHUNKED_DONE)
            fail("a malformed chunked answer, or one over %d bytes: %s", ANSWER_MAX, c->in);
        blen = (long)dlen;
    } else if ((v = header(c->in, head, "content-length:", &vlen))) {
        blen = atol(v);
        if (c->in_len - head < (size_t)blen)
            return;
    } else {
        fail("an answer without Content-Length nor chunked: %s", c->in);
    }
    bool close_after = (v = header(c->in, head, "connection:", &vlen)) && vlen >= 5 &&
                       strncasecmp(v, "close", 5) == 0;
    if (close_after)
        conn_close(c);
    body[blen] = '\0';
    finished(c, status, body, (size_t)blen);
}

static void on_event(conn_t *c, uint32_t events)
{
    if (events & EPOLLOUT) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err)
            fail("connect to the hub: %s", strerror(err));
        flush(c);
    }
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        on_readable(c);
}

/* FILE: one line per connection, `token arcade_id game_id`. */
static conn_t *load(const char *path, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail("%s: %s", path, strerror(errno));
    conn_t *conns = NULL;
    int cap = 0;
    *n = 0;
    char line[TOKEN_MAX + 64];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '\n' || line[0] == '#')
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            if (!(conns = realloc(conns, (size_t)cap * sizeof *conns)))
                fail("out of memory");
        }
        conn_t *c = memset(&conns[*n], 0, sizeof *conns);
        c->fd = -1;
        if (sscanf(line, "%1023s %ld %ld", c->token, &c->arcade, &c->game) != 3)
            fail("%s: a line is not `token arcade_id game_id`: %s", path, line);
        (*n)++;
    }
    fclose(f);
    if (!*n)
        fail("%s: no connections", path);
    return conns;
}

static void usage(void)
{
    fprintf(stderr, "usage: rest_load -p PORT -f FILE [-H HOST_IPV4] [-w WARMUP_S] [-s SECONDS] "
                    "[-t TIMEOUT_MS] [-c CPU] [-P HUB_PID]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    double warmup = 2, seconds = 10;
    int timeout_ms = 10000, cpu = -1, hub_pid = 0, opt;
    while ((opt = getopt(argc, argv, "p:f:H:w:s:t:c:P:")) != -1) {
        switch (opt) {
        case 'p':
            g_port = atoi(optarg);
            break;
        case 'f':
            file = optarg;
            break;
        case 'H':
            g_host = optarg;
            break;
        case 'w':
            warmup = atof(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 't':
            timeout_ms = atoi(optarg);
            break;
        case 'c':
            cpu = atoi(optarg);
            break;
        case 'P':
            hub_pid = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (!file || g_port <= 0 || g_port > 65535 || warmup < 0 || seconds <= 0 || timeout_ms <= 0)
        usage();
    g_addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    if (inet_pton(AF_INET, g_host, &g_addr.sin_addr) != 1)
        fail("-H %s: not an IPv4 address", g_host);
    signal(SIGPIPE, SIG_IGN);
    pin(cpu);
    g_rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(now_s() * 1e9);
    int n;
    conn_t *conns = load(file, &n);
    if ((g_ep = epoll_create1(0)) < 0)
        fail("epoll_create1: %s", strerror(errno));

    double t0 = now_s();
    g_warm_end = t0 + warmup;
    g_end = g_warm_end + seconds;
    for (int i = 0; i < n; i++)
        start(&conns[i], REQ_RESERVE);
    struct rusage ru0 = {0}, ru1 = {0};
    double hub0 = 0, hub1 = 0;
    bool measuring = false;
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        if (!measuring && t >= g_warm_end) {
            getrusage(RUSAGE_SELF, &ru0);
            hub0 = hub_pid ? proc_cpu_s(hub_pid) : 0;
            measuring = true;
            puts("{\"phase\":\"measure\"}"); /* for a caller counting its own side */
            fflush(stdout);
        }
        if (!g_stopping && t >= g_end) {
            getrusage(RUSAGE_SELF, &ru1);
            hub1 = hub_pid ? proc_cpu_s(hub_pid) : 0;
            g_stopping = true;
            puts("{\"phase\":\"stop\"}");
            fflush(stdout);
        }
        int busy = 0;
        for (int i = 0; i < n; i++) {
            busy += conns[i].busy;
            if (conns[i].busy && t - conns[i].started > timeout_ms / 1000.0)
                fail("%s: no answer within -t %d ms",
                     conns[i].kind == REQ_RESERVE ? "POST" : "DELETE", timeout_ms);
        }
        if (g_stopping && !busy)
            break;
        int k = epoll_wait(g_ep, evs, 256, 100);
        if (k < 0 && errno != EINTR)
            fail("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < k; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }

    uint32_t *all = malloc((g_lat[0].n + g_lat[1].n + 1) * sizeof *all);
    if (!all)
        fail("out of memory");
    memcpy(all, g_lat[0].us, g_lat[0].n * sizeof *all);
    memcpy(all + g_lat[0].n, g_lat[1].us, g_lat[1].n * sizeof *all);
    size_t na = g_lat[0].n + g_lat[1].n;
    qsort(all, na, sizeof *all, cmp_u32);
    for (int k = 0; k < 2; k++)
        qsort(g_lat[k].us, g_lat[k].n, sizeof *all, cmp_u32);
    double user = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
    double sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
    printf("{\"rest_load\":true,\"connections\":%d,\"warmup_s\":%g,\"seconds\":%g,\"pairs\":%llu,"
           "\"pairs_per_s\":%.1f,\"requests\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"reserve_p50_ms\":%.3f,\"reserve_p99_ms\":%.3f,\"cancel_p50_ms\":%.3f,"
           "\"cancel_p99_ms\":%.3f,\"non_2xx\":0,\"reconnects\":%llu,\"client_user_s\":%.3f,"
           "\"client_sys_s\":%.3f,\"client_cpu_us_per_pair\":%.1f,\"hub_cpu_s\":%.2f}\n",
           n, warmup, seconds, g_pairs, g_pairs / seconds, na, pct_ms(all, na, 50),
           pct_ms(all, na, 99), na ? all[na - 1] / 1000.0 : 0, pct_ms(g_lat[0].us, g_lat[0].n, 50),
           pct_ms(g_lat[0].us, g_lat[0].n, 99), pct_ms(g_lat[1].us, g_lat[1].n, 50),
           pct_ms(g_lat[1].us, g_lat[1].n, 99), g_connects - (unsigned long long)n, user, sys,
           g_pairs ? (user + sys) * 1e6 / (double)g_pairs : 0,
           hub_pid && hub0 >= 0 && hub1 >= 0 ? hub1 - hub0 : -1.0);
    for (int i = 0; i < n; i++) {
        conn_close(&conns[i]);
        free(conns[i].in);
    }
    free(conns);
    free(all);
    free(g_lat[0].us);
    free(g_lat[1].us);
    close(g_ep);
    return g_pairs ? 0 : 1;
}
