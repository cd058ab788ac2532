/*
 * pg_pool: non-blocking libpq connections on one libuv loop (see pg_pool.h).
 *
 * Each connection is a small state machine:
 *
 *   DOWN --backoff timer--> CONNECTING --PQconnectPoll OK--> READY <--> BUSY
 *     ^                         |                              |        |
 *     +----- failure, timeout --+------ lost (EOF, error) -----+--------+
 *
 * A connection owns one uv_timer_t (connect timeout while CONNECTING, backoff
 * while DOWN) and at most one uv_poll_t on PQsocket(). The poll handle is
 * heap-allocated and replaced whenever the socket may have changed: libpq
 * closes and reopens sockets while connecting (next address, SSL retry), and
 * may get the same fd number back, which epoll would no longer watch. So while
 * connecting, every PQconnectPoll step gets a fresh poll handle.
 *
 * A host name in the conninfo is resolved before every connect (storage/
 * resolve.c, in libuv's thread pool) and handed to libpq as hostaddr, with
 * host= kept for TLS and SNI: libpq then does no DNS on the loop, and a
 * failover that moves the name is followed at the next reconnect. The
 * resolution runs in CONNECTING under the same connect timer.
 *
 * The poll handle is always closed before PQfinish() closes its fd: uv_close
 * removes the fd from epoll at once, and a uv handle must never outlive the
 * fd it watches. Once connected the mask stays UV_READABLE: UV_WRITABLE is
 * added only while PQflush() says bytes are left (a statement bigger than
 * the socket buffer), because libuv turns every mask change into
 * EPOLL_CTL_DEL + EPOLL_CTL_ADD.
 *
 * Prepared statements: the pool numbers each distinct SQL text once
 * (pool->stmts, a short array searched by hash: a few dozen texts); a
 * connection keeps a bitmap of the numbers it has prepared, named
 * "rn<epoch>_<number>". The bitmap is cleared whenever the session is new
 * (conn_drop) or may have lost its statements (conn_forget: after a DISCARD
 * or DEALLOCATE sent through the pool, or a stale statement; it also moves
 * to fresh names, so a retried prepare never meets an old name).
 *
 * Queries wait in one FIFO. pg_pool_query() never sends or calls back on the
 * caller's stack: it queues and wakes an idle handle, which hands the queue to
 * free connections. So a callback can never run inside pg_pool_query(), and
 * a send failure is handled like any other connection loss.
 *
 * Memory: the pool and its connections are freed in the close callback of
 * the last uv handle, after pg_pool_close(). Every user callback may call
 * pg_pool_query() or pg_pool_close(); code after a callback checks
 * pool->closing before touching a connection again.
 */
#include "pg_pool.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "resolve.h"

#define DEFAULT_SIZE 4
#define MAX_SIZE 256
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_STATEMENT_TIMEOUT_MS 10000
#define DEFAULT_MAX_QUEUED 10000
#define BACKOFF_MIN_MS 100
/* capped at 1 s: a database that is back is used within about a second (issue 8) */
#define BACKOFF_MAX_MS 1000
#define MAX_PARAMS 65535 /* the protocol's limit */
/* SQL texts given a statement name; the hub has a few dozen, later ones run unnamed */
#define MAX_STATEMENTS 128

typedef enum {
    CONN_DOWN,       /* waiting for the backoff timer */
    CONN_CONNECTING, /* PQconnectPoll in progress, connect timer armed */
    CONN_READY,      /* connected, idle */
    CONN_BUSY,       /* connected, one query in flight */
    CONN_CLOSED,     /* pool closing */
} conn_state_t;

typedef struct pg_query {
    struct pg_query *next;
    pg_query_cb cb;
    void *arg;
    uint64_t sent_ns; /* uv_hrtime() at send; 0 while queued */
    int stmt;         /* index in pool->stmts, or -1: sent as an unnamed statement */
    int retried;      /* prepared and run again once already (stmt_stale) */
    int resets;       /* DISCARD or DEALLOCATE: the session's statements go */
    int nparams;
    const char *const *params; /* points into the same allocation */
    const char *sql;
} pg_query_t;

typedef struct pg_conn {
    pg_pool_t *pool;
    int index;
    conn_state_t state;
    PGconn *pg;
    uv_poll_t *poll; /* NULL when not watching; freed in its close callback */
    int poll_fd;
    int poll_events;
    int flushing;   /* PQflush() returned 1: watch UV_WRITABLE until it returns 0 */
    int preparing;  /* the round trip in flight prepares inflight's statement */
    unsigned epoch; /* in statement names; bumped by conn_forget */
    uint64_t prepared[MAX_STATEMENTS / 64]; /* bit n: statement n is prepared here */
    PGresult *result; /* the in-flight query's result, until PQgetResult says NULL */
    uv_timer_t timer; /* connect timeout (CONNECTING) or backoff (DOWN) */
    int backoff_ms;
    pg_query_t *inflight;
    resolve_req_t *resolving; /* CONNECTING: the host name is being resolved */
} pg_conn_t;

struct pg_pool {
    uv_loop_t *loop;
    const char *keywords[6]; /* the last two: host + hostaddr once resolved */
    const char *values[6];
    char *conninfo;
    char *resolve_host; /* the conninfo's host when it is a name: resolve it first */
    char *last_addrs;   /* what it resolved to last (logged when it changes) */
    char *options;      /* "-c statement_timeout=N", after any options of conninfo */
    int connect_timeout_ms;
    int max_queued;
    int prepared; /* use named statements (pg_pool_config_t.prepared) */
    pg_observe_cb observe;
    void *observe_arg;
    pg_log_cb log;
    void *log_arg;
    void (*on_up)(void *arg);
    void *on_up_arg;
    void (*on_notify)(void *arg, const char *channel, const char *payload);
    void *on_notify_arg;

    pg_conn_t *conns;
    int size;
    int nup; /* connections READY or BUSY */

    pg_query_t *head, *tail;
    int nqueued;

    struct {
        uint32_t hash;
        char *sql;
    } stmts[MAX_STATEMENTS]; /* statement n's text; the first nstmts are used */
    int nstmts;
    unsigned long prepares; /* prepare round trips that succeeded, all connections */

    uv_idle_t kick; /* hands queued queries to free connections, off the caller's stack */
    int open_handles;
    int closing;
    int warned; /* "unavailable" was logged; log the recovery */
};

static void conn_connect(pg_conn_t *c);
static void conn_lost(pg_conn_t *c, const char *why);
static void conn_dispatch(pg_conn_t *c);
static void on_poll(uv_poll_t *handle, int status, int events);
static void on_timer(uv_timer_t *t);

/* ---- small helpers ---- */

const char *pg_one_line(const char *msg, char *buf, size_t len)
{
    size_t o = 0;
    int space = 0;

    if (len == 0)
        return "";
    for (; msg && *msg && o + 1 < len; msg++) {
        if (isspace((unsigned char)*msg)) {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < len)
            buf[o++] = ' ';
        space = 0;
        buf[o++] = *msg;
    }
    buf[o] = '\0';
    return buf;
}

static void pool_log(pg_log_cb log, void *arg, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Connection state changes are rare and matter to operators: one line each, to the hook. */
static void pool_log(pg_log_cb log, void *arg, int level, const char *fmt, ...)
{
    char msg[640];
    va_list ap;

    if (!log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log(arg, level, msg);
}

static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Frees the pool once pg_pool_close() ran and the last handle is closed. */
static void pool_handle_closed(pg_pool_t *pool)
{
    if (--pool->open_handles > 0 || !pool->closing)
        return;
    free(pool->conns);
    free(pool->conninfo);
    free(pool->resolve_host);
    free(pool->last_addrs);
    free(pool->options);
    for (int i = 0; i < pool->nstmts; i++)
        free(pool->stmts[i].sql);
    free(pool);
}

static void on_handle_closed(uv_handle_t *h)
{
    pool_handle_closed(h->data);
}

static void on_poll_closed(uv_handle_t *h)
{
    pg_pool_t *pool = ((pg_conn_t *)h->data)->pool;

    free(h);
    pool_handle_closed(pool);
}

/* ---- queries ---- */

/* One allocation: the struct, the param pointer array, then every string. */
static pg_query_t *query_new(const char *sql, int nparams, const char *const *params,
                             pg_query_cb cb, void *arg)
{
    size_t sql_len = strlen(sql) + 1, total = sizeof(pg_query_t), off;
    size_t *lens = NULL;
    const char **pp;
    pg_query_t *q;
    char *p;

    if (nparams > 0) {
        lens = calloc((size_t)nparams, sizeof(*lens));
        if (!lens)
            return NULL;
    }
    total += (size_t)nparams * sizeof(char *) + sql_len;
    for (int i = 0; i < nparams; i++) {
        if (params[i]) {
            lens[i] = strlen(params[i]) + 1;
            total += lens[i];
        }
    }
    q = malloc(total);
    if (!q) {
        free(lens);
        return NULL;
    }
    q->next = NULL;
    q->cb = cb;
    q->arg = arg;
    q->sent_ns = 0;
    q->stmt = -1;
    q->retried = 0;
    q->resets = 0;
    q->nparams = nparams;
    pp = (const char **)(q + 1);
    p = (char *)(pp + nparams);
    off = 0;
    memcpy(p, sql, sql_len);
    q->sql = p;
    off += sql_len;
    for (int i = 0; i < nparams; i++) {
        if (params[i]) {
            memcpy(p + off, params[i], lens[i]);
            pp[i] = p + off;
            off += lens[i];
        } else {
            pp[i] = NULL;
        }
    }
    q->params = nparams > 0 ? pp : NULL;
    free(lens);
    return q;
}

/*
 * Completes q: observer first (for queries that reached the server), then
 * the caller's callback, then frees q and res. The callback may re-enter.
 */
static void query_finish(pg_pool_t *pool, pg_query_t *q, int status, PGresult *res,
                         const char *errmsg)
{
    if (q->sent_ns && pool->observe)
        pool->observe(pool->observe_arg, (double)(uv_hrtime() - q->sent_ns) / 1e9, status);
    q->cb(q->arg, status, res, errmsg);
    PQclear(res);
    free(q);
}

/* Fails a detached list, every entry: each accepted query gets its one callback. */
static void query_fail_list(pg_pool_t *pool, pg_query_t *q, const char *errmsg)
{
    while (q) {
        pg_query_t *next = q->next;
        query_finish(pool, q, PG_EUNAVAILABLE, NULL, errmsg);
        q = next;
    }
}

static pg_query_t *queue_detach(pg_pool_t *pool)
{
    pg_query_t *q = pool->head;

    pool->head = pool->tail = NULL;
    pool->nqueued = 0;
    return q;
}

static pg_query_t *queue_pop(pg_pool_t *pool)
{
    pg_query_t *q = pool->head;

    if (q) {
        pool->head = q->next;
        if (!pool->head)
            pool->tail = NULL;
        pool->nqueued--;
        q->next = NULL;
    }
    return q;
}

/* ---- prepared statements ---- */

/* FNV-1a: texts are few and chosen by the hub's code, not by clients. */
static uint32_t stmt_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/*
 * The statement number of sql: found, or the next free one (a copy of sql
 * is kept). -1 when the table is full or out of memory: run it unnamed.
 */
static int stmt_number(pg_pool_t *pool, const char *sql)
{
    uint32_t h = stmt_hash(sql);
    char *copy;

    for (int i = 0; i < pool->nstmts; i++)
        if (pool->stmts[i].hash == h && strcmp(pool->stmts[i].sql, sql) == 0)
            return i;
    if (pool->nstmts == MAX_STATEMENTS || !(copy = strdup(sql)))
        return -1;
    pool->stmts[pool->nstmts].hash = h;
    pool->stmts[pool->nstmts].sql = copy;
    return pool->nstmts++;
}

/*
 * DISCARD ALL and DEALLOCATE drop a session's prepared statements (every
 * DISCARD is taken alike: a needless prepare at worst). Such a statement is
 * never prepared itself, and its connection forgets its set once it ran.
 */
static int sql_resets_session(const char *sql)
{
    static const char *const words[] = {"DISCARD", "DEALLOCATE"};

    while (isspace((unsigned char)*sql))
        sql++;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);
        if (strncasecmp(sql, words[i], n) == 0 && !isalnum((unsigned char)sql[n]) && sql[n] != '_')
            return 1;
    }
    return 0;
}

static int conn_has_stmt(const pg_conn_t *c, int n)
{
    return (int)((c->prepared[n / 64] >> (n % 64)) & 1);
}

/* The session may have lost its statements: prepare again, under new names. */
static void conn_forget(pg_conn_t *c)
{
    memset(c->prepared, 0, sizeof(c->prepared));
    c->epoch++;
}

/*
 * A named statement failed in a way a fresh prepare may cure, before
 * anything ran: its result type changed under it (a function dropped and
 * re-created, 0A000 "cached plan must not change result type"), the session
 * no longer has it (26000: a DISCARD ALL, a pooler that moved us) or has one
 * of its name already (42P05: the same pooler).
 */
static int stmt_stale(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    return state && (strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0 ||
                     strcmp(state, "42P05") == 0);
}

/* ---- connection plumbing ---- */

static void conn_unwatch(pg_conn_t *c)
{
    if (!c->poll)
        return;
    uv_close((uv_handle_t *)c->poll, on_poll_closed);
    c->poll = NULL;
    c->poll_events = 0;
}

/*
 * Watches PQsocket() for events. A new poll handle is made when the socket
 * changed or fresh is set (see the top of the file). Returns 0 or -1.
 */
static int conn_watch(pg_conn_t *c, int events, int fresh)
{
    int fd = PQsocket(c->pg);

    if (fd < 0)
        return -1;
    if (c->poll && (fresh || c->poll_fd != fd))
        conn_unwatch(c);
    if (!c->poll) {
        uv_poll_t *p = malloc(sizeof(*p));

        if (!p)
            return -1;
        if (uv_poll_init_socket(c->pool->loop, p, fd) != 0) {
            free(p);
            return -1;
        }
        p->data = c;
        c->pool->open_handles++;
        c->poll = p;
        c->poll_fd = fd;
        c->poll_events = 0;
    }
    if (c->poll_events != events) {
        if (uv_poll_start(c->poll, events, on_poll) != 0)
            return -1;
        c->poll_events = events;
    }
    return 0;
}

/* Closes the libpq side of c: poll handle first, then the fd via PQfinish. */
static void conn_drop(pg_conn_t *c)
{
    resolve_cancel(c->resolving);
    c->resolving = NULL;
    conn_unwatch(c);
    PQclear(c->result);
    c->result = NULL;
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->flushing = 0;
    c->preparing = 0;
    memset(c->prepared, 0, sizeof(c->prepared)); /* the next session has none */
}

/*
 * The connection failed or died: drop it, fail its in-flight query, and, if
 * it was the last one up, every queued query (nothing may wait for a pool
 * with no connection). Reconnect from the backoff timer.
 */
static void conn_lost(pg_conn_t *c, const char *why)
{
    pg_pool_t *pool = c->pool;
    pg_query_t *q = c->inflight, *queued = NULL;
    int was_up = c->state == CONN_READY || c->state == CONN_BUSY;
    char msg[512];

    c->inflight = NULL;
    if (was_up) {
        pool->nup--;
        snprintf(msg, sizeof(msg), "connection to PostgreSQL lost: %s", why);
        pool_log(pool->log, pool->log_arg, PG_LOG_WARN, "pg_pool: connection %d lost: %s", c->index,
                 why);
    } else {
        snprintf(msg, sizeof(msg), "cannot connect to PostgreSQL: %s", why);
        if (pool->nup == 0 && !pool->warned)
            pool_log(pool->log, pool->log_arg, PG_LOG_WARN,
                     "pg_pool: cannot connect to PostgreSQL (retrying): %s", why);
    }
    if (pool->nup == 0)
        pool->warned = 1;
    conn_drop(c);

    c->state = CONN_DOWN;
    uv_timer_stop(&c->timer);
    /* jittered: the pool's connections (and other hubs) do not retry in step */
    uv_timer_start(&c->timer, on_timer,
                   (uint64_t)(c->backoff_ms / 2 + rand() % (c->backoff_ms / 2 + 1)), 0);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;

    if (pool->nup == 0)
        queued = queue_detach(pool);
    if (q)
        query_fail_list(pool, q, msg);
    query_fail_list(pool, queued, "no connection to PostgreSQL is up");
}

static void conn_connected(pg_conn_t *c)
{
    pg_pool_t *pool = c->pool;

    uv_timer_stop(&c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0) {
        char line[256];
        conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
        return;
    }
    if (conn_watch(c, UV_READABLE, 0) < 0) {
        conn_lost(c, "cannot watch the socket");
        return;
    }
    c->state = CONN_READY;
    c->backoff_ms = BACKOFF_MIN_MS;
    pool->nup++;
    if (pool->warned) {
        pool->warned = 0;
        pool_log(pool->log, pool->log_arg, PG_LOG_INFO,
                 "pg_pool: connected to PostgreSQL (connection %d)", c->index);
    }
    conn_dispatch(c);
    if (pool->nup == 1 && pool->on_up)
        pool->on_up(pool->on_up_arg); /* what waited for a connection can run now */
}

/* One PQconnectPoll step, on a socket event (or right after PQconnectStart). */
static void conn_connect_step(pg_conn_t *c, PostgresPollingStatusType st)
{
    char line[512];

    switch (st) {
    case PGRES_POLLING_OK:
        conn_connected(c);
        return;
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE, 1) < 0)
            conn_lost(c, "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, UV_WRITABLE, 1) < 0)
            conn_lost(c, "cannot watch the socket");
        return;
    default:
        conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
        return;
    }
}

/* Starts libpq's connect; keywords/values are read during the call only. */
static void conn_start(pg_conn_t *c, const char *const *keywords, const char *const *values)
{
    pg_pool_t *pool = c->pool;
    char line[512];

    c->pg = PQconnectStartParams(keywords, values, 1);
    if (!c->pg) {
        c->state = CONN_CONNECTING;
        conn_lost(c, "out of memory");
        return;
    }
    c->state = CONN_CONNECTING;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
        return;
    }
    PQsetNoticeProcessor(c->pg, quiet_notice, NULL);
    if (!uv_is_active((uv_handle_t *)&c->timer)) /* armed already if a resolution ran first */
        uv_timer_start(&c->timer, on_timer, (uint64_t)pool->connect_timeout_ms, 0);
    /* libpq: after PQconnectStart, behave as if PQconnectPoll returned WRITING. */
    conn_connect_step(c, PGRES_POLLING_WRITING);
}

/*
 * The host name resolved: connect to its addresses, in order, as hostaddr,
 * with the name repeated as host (libpq pairs the two lists) so that TLS
 * still verifies and sends the name.
 */
static void on_host_resolved(void *arg, int status, const resolve_result_t *res)
{
    pg_conn_t *c = arg;
    pg_pool_t *pool = c->pool;
    size_t hlen = strlen(pool->resolve_host) + 1;
    char addrs[RESOLVE_MAX_ADDRS * (RESOLVE_ADDR_LEN + 1)], why[512];
    char *hosts;

    c->resolving = NULL;
    if (status < 0) {
        snprintf(why, sizeof(why), "cannot resolve host %s: %s", pool->resolve_host,
                 uv_strerror(status));
        conn_lost(c, why);
        return;
    }
    hosts = malloc(hlen * (size_t)res->n);
    if (!hosts || resolve_join(res, addrs, sizeof(addrs)) != 0) {
        free(hosts);
        conn_lost(c, "out of memory");
        return;
    }
    for (int i = 0; i < res->n; i++) {
        memcpy(hosts + hlen * (size_t)i, pool->resolve_host, hlen);
        hosts[hlen * (size_t)(i + 1) - 1] = i + 1 < res->n ? ',' : '\0';
    }
    if (!pool->last_addrs || strcmp(pool->last_addrs, addrs) != 0) {
        pool_log(pool->log, pool->log_arg, PG_LOG_INFO, "pg_pool: host %s resolved to %s",
                 pool->resolve_host, addrs);
        free(pool->last_addrs);
        pool->last_addrs = strdup(addrs);
    }
    const char *keywords[6], *values[6];
    memcpy(keywords, pool->keywords, sizeof(keywords));
    memcpy(values, pool->values, sizeof(values));
    keywords[3] = "host";
    values[3] = hosts;
    keywords[4] = "hostaddr";
    values[4] = addrs;
    keywords[5] = values[5] = NULL;
    conn_start(c, keywords, values);
    free(hosts);
}

static void conn_connect(pg_conn_t *c)
{
    pg_pool_t *pool = c->pool;
    char why[512];
    int err = 0;

    if (!pool->resolve_host) {
        conn_start(c, pool->keywords, pool->values);
        return;
    }
    c->state = CONN_CONNECTING;
    uv_timer_start(&c->timer, on_timer, (uint64_t)pool->connect_timeout_ms, 0);
    c->resolving = resolve_start(pool->loop, pool->resolve_host, on_host_resolved, c, &err);
    if (!c->resolving) {
        snprintf(why, sizeof(why), "cannot resolve host %s: %s", pool->resolve_host,
                 uv_strerror(err));
        conn_lost(c, why);
    }
}

static void on_timer(uv_timer_t *t)
{
    pg_conn_t *c = t->data;
    char why[64];

    if (c->state == CONN_CONNECTING) {
        snprintf(why, sizeof(why), "connect timed out after %d ms", c->pool->connect_timeout_ms);
        conn_lost(c, why);
    } else if (c->state == CONN_DOWN) {
        conn_connect(c);
    }
}

/*
 * Sends one round trip of c->inflight: the statement unnamed when it has no
 * number; else its prepare when c has not prepared it yet (conn_complete
 * then sends the execution), else its execution by name. Then flushes, and
 * watches for writability only if bytes are left. A failure loses c.
 */
static void conn_send(pg_conn_t *c)
{
    pg_query_t *q = c->inflight;
    char line[512], name[32];
    int r;

    if (q->stmt < 0) {
        r = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
    } else {
        snprintf(name, sizeof(name), "rn%u_%d", c->epoch, q->stmt);
        c->preparing = !conn_has_stmt(c, q->stmt);
        /* NULL types: the server infers them, as for an unnamed statement */
        r = c->preparing ? PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL)
                         : PQsendQueryPrepared(c->pg, name, q->nparams, q->params, NULL, NULL, 0);
    }
    if (!r) {
        conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
        return;
    }
    r = PQflush(c->pg);
    if (r < 0) {
        conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
        return;
    }
    c->flushing = r == 1;
    if (conn_watch(c, c->flushing ? UV_READABLE | UV_WRITABLE : UV_READABLE, 0) < 0)
        conn_lost(c, "cannot watch the socket");
}

/* Sends the next queued query if c is free. */
static void conn_dispatch(pg_conn_t *c)
{
    pg_pool_t *pool = c->pool;
    pg_query_t *q;

    if (pool->closing || c->state != CONN_READY || !pool->head)
        return;
    q = queue_pop(pool);
    c->inflight = q;
    c->state = CONN_BUSY;
    q->sent_ns = uv_hrtime();
    conn_send(c);
}

/* Hands queued queries to every free connection. */
static void pool_dispatch(pg_pool_t *pool)
{
    for (int i = 0; i < pool->size && pool->head && !pool->closing; i++)
        conn_dispatch(&pool->conns[i]);
}

static void on_kick(uv_idle_t *h)
{
    pg_pool_t *pool = h->data;

    uv_idle_stop(h);
    pool_dispatch(pool);
}

/*
 * Errors that mean "the server is going away", not "your statement is
 * wrong": the connection is lost whatever libpq's status says yet.
 */
static int is_connection_error(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    if (!state)
        return 0;
    return strncmp(state, "08", 2) == 0    /* connection exception */
           || strcmp(state, "57P01") == 0  /* admin_shutdown */
           || strcmp(state, "57P02") == 0  /* crash_shutdown */
           || strcmp(state, "57P03") == 0; /* cannot_connect_now */
}

/*
 * The round trip just ended was not the query's last: its statement is now
 * prepared, or its named statement was stale (stmt_stale; once per query).
 * Sends the next one and returns 1; 0 when the query is complete.
 * A failed prepare completes the query with its error, as the unnamed
 * statement would have.
 */
static int conn_next_step(pg_conn_t *c, const PGresult *res)
{
    pg_query_t *q = c->inflight;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (c->preparing && st == PGRES_COMMAND_OK) {
        c->prepared[q->stmt / 64] |= UINT64_C(1) << (q->stmt % 64);
        c->pool->prepares++;
    } else if (q->stmt >= 0 && !q->retried && st == PGRES_FATAL_ERROR && stmt_stale(res)) {
        q->retried = 1;
        conn_forget(c);
    } else {
        c->preparing = 0;
        return 0;
    }
    conn_send(c); /* sets c->preparing again */
    return 1;
}

/* The in-flight query's results are all in (PQgetResult returned NULL). */
static void conn_complete(pg_conn_t *c)
{
    pg_pool_t *pool = c->pool;
    pg_query_t *q = c->inflight;
    PGresult *res = c->result;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    char line[1024];
    int status;

    c->result = NULL;

    if (PQstatus(c->pg) == CONNECTION_BAD || (res && is_connection_error(res))) {
        const char *why = res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg);
        pg_one_line(why, line, sizeof(line));
        PQclear(res);
        conn_lost(c, line);
        return;
    }
    if (conn_next_step(c, res)) {
        PQclear(res);
        return;
    }

    c->inflight = NULL;
    c->state = CONN_READY;
    if (q->resets)
        conn_forget(c);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
        status = PG_OK;
        line[0] = '\0';
    } else if (res) {
        /*
         * The primary message only: its DETAIL may quote a row's values
         * ("Failing row contains (...)": names, pseudos), and errmsg is logged.
         */
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        status = PG_EQUERY;
        pg_one_line(primary ? primary : PQresultErrorMessage(res), line, sizeof(line));
    } else {
        status = PG_EQUERY;
        pg_one_line(PQerrorMessage(c->pg), line, sizeof(line));
    }
    query_finish(pool, q, status, res, status == PG_OK ? NULL : line);
    if (pool->closing)
        return;
    conn_dispatch(c);
}

/* Socket events of a connected connection. */
static void conn_io(pg_conn_t *c, int events)
{
    PGnotify *n;
    char line[512];

    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
        return;
    }
    while ((n = PQnotifies(c->pg)) != NULL) {
        if (c->pool->on_notify)
            c->pool->on_notify(c->pool->on_notify_arg, n->relname, n->extra);
        PQfreemem(n);
        if (c->pool->closing)
            return; /* the callback closed the pool (freed later, in a close callback) */
    }

    if (c->flushing) {
        int r = PQflush(c->pg);

        if (r < 0) {
            conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
            return;
        }
        if (r == 0) {
            c->flushing = 0;
            if (conn_watch(c, UV_READABLE, 0) < 0) {
                conn_lost(c, "cannot watch the socket");
                return;
            }
        }
    }

    if (c->state == CONN_READY) {
        /* Idle: only an EOF or a server notice can arrive; nothing to deliver. */
        if (PQstatus(c->pg) == CONNECTION_BAD)
            conn_lost(c, pg_one_line(PQerrorMessage(c->pg), line, sizeof(line)));
        return;
    }

    /*
     * Keep the first result, or the first error if one comes later. The
     * kept result survives across events: PQisBusy can turn true again
     * between a result and the ReadyForQuery that ends the query. COPY is
     * not supported (PQgetResult would never return NULL).
     */
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        ExecStatusType st;

        if (!r) {
            conn_complete(c);
            return;
        }
        st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            conn_lost(c, "COPY is not supported by pg_pool");
            return;
        }
        if (!c->result) {
            c->result = r;
        } else if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) &&
                   PQresultStatus(c->result) != PGRES_FATAL_ERROR &&
                   PQresultStatus(c->result) != PGRES_BAD_RESPONSE) {
            PQclear(c->result);
            c->result = r;
        } else {
            PQclear(r);
        }
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    pg_conn_t *c = handle->data;
    char line[512];

    if (status < 0 && c->state == CONN_CONNECTING) {
        /*
         * libuv reports POLLERR as UV_EBADF and stops the handle. While
         * connecting that is a refused or failed connect: PQconnectPoll reads
         * SO_ERROR and moves on to the next address or host, or fails. The
         * next step watches a fresh handle.
         */
        c->poll_events = 0;
        conn_connect_step(c, PQconnectPoll(c->pg));
        return;
    }
    if (status < 0) {
        /* POLLERR on an open connection: libpq's read error names the real cause. */
        if (c->pg && (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD))
            pg_one_line(PQerrorMessage(c->pg), line, sizeof(line));
        else
            snprintf(line, sizeof(line), "socket error: %s", uv_strerror(status));
        conn_lost(c, line);
        return;
    }
    if (c->state == CONN_CONNECTING) {
        conn_connect_step(c, PQconnectPoll(c->pg));
        return;
    }
    if (c->state == CONN_READY || c->state == CONN_BUSY)
        conn_io(c, events);
}

/* ---- public ---- */

/*
 * The host the pool must resolve itself: the conninfo's host when it is one
 * name (not an IP, not a unix socket directory) and no hostaddr is given.
 * *out is a malloc'd copy, or NULL when there is nothing to resolve.
 * -1 for a list of hosts holding a name (libpq would resolve it, blocking).
 */
static int conninfo_host(const PQconninfoOption *opts, char **out)
{
    const char *host = NULL, *hostaddr = NULL;

    *out = NULL;
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0 && o->val && *o->val)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0 && o->val && *o->val)
            hostaddr = o->val;
    }
    if (!host || hostaddr || host[0] == '/' || host[0] == '@' || resolve_is_literal(host))
        return 0;
    if (strchr(host, ',')) {
        char *copy = strdup(host), *save = NULL;
        int names = 0;
        for (char *h = copy ? strtok_r(copy, ",", &save) : NULL; h; h = strtok_r(NULL, ",", &save))
            names += h[0] != '/' && !resolve_is_literal(h);
        free(copy);
        return copy && names == 0 ? 0 : -1;
    }
    *out = strdup(host);
    return *out ? 0 : -1;
}

pg_pool_t *pg_pool_new(uv_loop_t *loop, const pg_pool_config_t *cfg)
{
    pg_pool_t *pool = NULL;
    PQconninfoOption *opts = NULL;
    const char *user_options = NULL;
    char *errmsg = NULL;
    int statement_timeout_ms;
    size_t len;

    if (!loop || !cfg || !cfg->conninfo || cfg->size < 0 || cfg->size > MAX_SIZE ||
        cfg->connect_timeout_ms < 0 || cfg->statement_timeout_ms < 0 || cfg->max_queued < 0)
        return NULL;

    /* Parse once here: a bad conninfo is a configuration error, not an outage. */
    opts = PQconninfoParse(cfg->conninfo, &errmsg);
    if (!opts) {
        char line[256];
        pool_log(cfg->log, cfg->log_arg, PG_LOG_WARN, "pg_pool: bad conninfo: %s",
                 errmsg ? pg_one_line(errmsg, line, sizeof(line)) : "out of memory");
        PQfreemem(errmsg);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
            user_options = o->val;

    pool = calloc(1, sizeof(*pool));
    if (!pool)
        goto fail;
    pool->loop = loop;
    pool->size = cfg->size ? cfg->size : DEFAULT_SIZE;
    pool->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    statement_timeout_ms =
        cfg->statement_timeout_ms ? cfg->statement_timeout_ms : DEFAULT_STATEMENT_TIMEOUT_MS;
    pool->max_queued = cfg->max_queued ? cfg->max_queued : DEFAULT_MAX_QUEUED;
    pool->prepared = cfg->prepared != 0;
    pool->observe = cfg->observe;
    pool->observe_arg = cfg->observe_arg;
    pool->log = cfg->log;
    pool->log_arg = cfg->log_arg;
    pool->on_up = cfg->on_up;
    pool->on_up_arg = cfg->on_up_arg;
    pool->on_notify = cfg->on_notify;
    pool->on_notify_arg = cfg->on_notify_arg;

    if (conninfo_host(opts, &pool->resolve_host) != 0) {
        pool_log(cfg->log, cfg->log_arg, PG_LOG_WARN,
                 "pg_pool: give one host name, or IP addresses, in the database URL");
        goto fail;
    }
    pool->conninfo = strdup(cfg->conninfo);
    len = (user_options ? strlen(user_options) + 1 : 0) + 64;
    pool->options = malloc(len);
    pool->conns = calloc((size_t)pool->size, sizeof(*pool->conns));
    if (!pool->conninfo || !pool->options || !pool->conns)
        goto fail;
    /* Ours come last so they win over the same setting in conninfo's options. */
    snprintf(pool->options, len, "%s%s-c statement_timeout=%d", user_options ? user_options : "",
             user_options ? " " : "", statement_timeout_ms);
    PQconninfoFree(opts);
    opts = NULL;

    /* dbname first, expanded (expand_dbname=1); later keywords override it. */
    pool->keywords[0] = "dbname";
    pool->values[0] = pool->conninfo;
    pool->keywords[1] = "options";
    pool->values[1] = pool->options;
    pool->keywords[2] = "fallback_application_name";
    pool->values[2] = "retronova-hub";
    pool->keywords[3] = NULL;
    pool->values[3] = NULL;

    /* From here nothing fails: handle inits on a valid loop return 0. */
    uv_idle_init(loop, &pool->kick);
    pool->kick.data = pool;
    pool->open_handles++;
    for (int i = 0; i < pool->size; i++) {
        pg_conn_t *c = &pool->conns[i];

        c->pool = pool;
        c->index = i;
        c->state = CONN_DOWN;
        c->backoff_ms = BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        pool->open_handles++;
    }
    /* Connect now; failures only schedule a retry, no callback can run yet. */
    for (int i = 0; i < pool->size; i++)
        conn_connect(&pool->conns[i]);
    return pool;

fail:
    PQconninfoFree(opts);
    if (pool) {
        free(pool->resolve_host);
        free(pool->conninfo);
        free(pool->options);
        free(pool->conns);
        free(pool);
    }
    return NULL;
}

int pg_pool_query(pg_pool_t *pool, const char *sql, int nparams, const char *const *params,
                  pg_query_cb cb, void *arg)
{
    pg_query_t *q;

    if (!pool)
        return PG_EUNAVAILABLE; /* not created yet (the hub waits for its migrations) */
    if (!sql || !cb || nparams < 0 || nparams > MAX_PARAMS || (nparams > 0 && !params))
        return PG_EQUERY;
    if (pool->closing || pool->nup == 0 || pool->nqueued >= pool->max_queued)
        return PG_EUNAVAILABLE;
    q = query_new(sql, nparams, params, cb, arg);
    if (!q)
        return PG_EUNAVAILABLE;
    q->resets = sql_resets_session(q->sql);
    q->stmt = pool->prepared && !q->resets ? stmt_number(pool, q->sql) : -1;
    if (pool->tail)
        pool->tail->next = q;
    else
        pool->head = q;
    pool->tail = q;
    pool->nqueued++;
    uv_idle_start(&pool->kick, on_kick);
    return 0;
}

int pg_pool_connected(const pg_pool_t *pool)
{
    return pool ? pool->nup : 0;
}

unsigned long pg_pool_prepares(const pg_pool_t *pool)
{
    return pool ? pool->prepares : 0;
}

void pg_pool_close(pg_pool_t *pool)
{
    pg_query_t *failed = NULL, **tail = &failed;

    if (!pool || pool->closing)
        return;
    pool->closing = 1;

    /* In-flight first (they were sent first), then the queue, in order. */
    for (int i = 0; i < pool->size; i++) {
        pg_conn_t *c = &pool->conns[i];

        if (c->inflight) {
            *tail = c->inflight;
            tail = &c->inflight->next;
            c->inflight = NULL;
        }
        conn_drop(c);
        c->state = CONN_CLOSED;
        c->timer.data = pool;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    }
    *tail = queue_detach(pool);
    pool->nup = 0;
    uv_close((uv_handle_t *)&pool->kick, on_handle_closed);

    query_fail_list(pool, failed, "the PostgreSQL pool is closing");
}
