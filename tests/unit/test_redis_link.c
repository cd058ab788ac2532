/*
 * test_redis_link: storage/redis_link.c against a real redis-server (a
 * private one, tests/unit/redis_server.h). The .c is included so that the
 * test can count what it asks of the kernel: every uv_poll_start() (in libuv
 * an EPOLL_CTL_DEL + ADD) and every redisBufferWrite() (one write(2)).
 *
 * What it holds the link to: the commands of one loop turn leave in one
 * write and the poll mask does not move for them; a command bigger than the
 * socket takes is finished through WRITABLE and the mask goes back to
 * READABLE; replies come in order; a push link does plain SUBSCRIBE over a
 * unix socket and its health check survives subscribed mode; a link freed
 * from inside its own reply callback answers the rest with NULL and calls
 * nothing more. Ends with uv_loop_close() == 0.
 */
#include <hiredis/hiredis.h>
#include <uv.h>

static unsigned long poll_starts, buffer_writes;

#define uv_poll_start(h, ev, cb) (poll_starts++, uv_poll_start(h, ev, cb))
#define redisBufferWrite(c, done) (buffer_writes++, redisBufferWrite(c, done))
#include "redis_link.c"
#undef uv_poll_start
#undef redisBufferWrite

#include "check.h"
#include "redis_server.h"

enum { TICK_MS = 5, BATCH = 200, BIG = 16 << 20, QUIET_PING_MS = 60000 };

static uv_loop_t *loop;
static uv_timer_t tick;

static void on_tick(uv_timer_t *t)
{
    (void)t; /* only wakes the loop up, so that run_until() sees the time pass */
}

/* Runs the loop until *n >= want or ms have passed. */
static void run_until(const int *n, int want, uint64_t ms)
{
    uint64_t t0 = uv_now(loop);

    while (*n < want && uv_now(loop) - t0 < ms)
        uv_run(loop, UV_RUN_ONCE);
}

/* Runs the loop for ms. */
static void run_for(uint64_t ms)
{
    static const int never = 0;

    run_until(&never, 1, ms);
}

/* ---- a link and what it reported ---- */

typedef struct watch {
    int ups, downs;
    int pushes, subscribed, messages, pongs;
    char last_message[64];
} watch_t;

static void on_state(void *arg, redis_link_t *link, int up)
{
    watch_t *w = arg;

    (void)link;
    if (up)
        w->ups++;
    else
        w->downs++;
}

static void on_push(void *arg, redisReply *r)
{
    watch_t *w = arg;

    w->pushes++;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(r->element[0]->str, "subscribe") == 0)
        w->subscribed++;
    else if (strcmp(r->element[0]->str, "pong") == 0)
        w->pongs++;
    else if (strcmp(r->element[0]->str, "message") == 0 && r->elements == 3) {
        w->messages++;
        snprintf(w->last_message, sizeof(w->last_message), "%s", r->element[2]->str);
    }
}

/* A ready link to the test server, retried while it starts listening; NULL after 5 s. */
static redis_link_t *link_open(watch_t *w, int unix_socket, int push, int ping_ms)
{
    redis_link_config_t lc = {.host = "127.0.0.1",
                              .port = redis_port,
                              .path = unix_socket ? redis_sock : NULL,
                              .timeout_ms = 1000,
                              .ping_ms = ping_ms,
                              .on_state = on_state,
                              .on_push = push ? on_push : NULL,
                              .arg = w};
    uint64_t t0 = uv_now(loop);

    while (uv_now(loop) - t0 < 5000) {
        redis_link_t *link = redis_link_new(loop, &lc);
        int settled = 0;
        if (link != NULL) {
            while (!settled && uv_now(loop) - t0 < 5000) {
                uv_run(loop, UV_RUN_ONCE);
                settled = w->ups > 0 || w->downs > 0;
            }
            if (w->ups > 0)
                return link;
            redis_link_free(link);
        }
        memset(w, 0, sizeof(*w));
        uv_run(loop, UV_RUN_ONCE); /* a tick: the server may not listen yet */
    }
    return NULL;
}

/* ---- replies to commands ---- */

typedef struct answers {
    int n, nulls, in_order;
    long long last;
    char str[64];
    redis_link_t *free_on_first; /* freed from inside the first reply callback */
} answers_t;

static void on_reply(void *arg, redisReply *r)
{
    answers_t *a = arg;

    if (r == NULL) {
        a->nulls++;
        return;
    }
    a->n++;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer != a->last + 1)
            a->in_order = 0;
        a->last = r->integer;
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        snprintf(a->str, sizeof(a->str), "%s", r->str);
    }
    if (a->free_on_first != NULL) {
        redis_link_free(a->free_on_first);
        a->free_on_first = NULL;
    }
}

static int command(redis_link_t *link, const char *a0, const char *a1, answers_t *a)
{
    const char *argv[] = {a0, a1};

    return redis_link_command(link, a1 != NULL ? 2 : 1, argv, NULL, on_reply, a);
}

/* BATCH INCRs queued from one timer callback: one loop turn. */
static redis_link_t *batch_link;
static answers_t batch = {.in_order = 1};

static void on_batch(uv_timer_t *t)
{
    int ok = 1;

    for (int i = 0; i < BATCH; i++)
        ok &= command(batch_link, "INCR", "rn:test:n", &batch) == 0;
    CHECK(ok, "every INCR queued");
    uv_close((uv_handle_t *)t, NULL);
}

static void test_one_turn_one_write(redis_link_t *link)
{
    answers_t del = {0};
    uv_timer_t t;
    unsigned long starts0, writes0;

    CHECK(command(link, "DEL", "rn:test:n", &del) == 0, "DEL queued");
    run_until(&del.n, 1, 2000);
    CHECK(del.n == 1, "DEL answered");

    batch_link = link;
    starts0 = poll_starts;
    writes0 = buffer_writes;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_batch, 1, 0);
    run_until(&batch.n, BATCH, 3000);
    run_for(50); /* nothing more may come */
    CHECK(batch.n == BATCH, "every INCR answered");
    CHECK(batch.in_order && batch.last == BATCH, "the replies in the order of the commands");
    CHECK(buffer_writes - writes0 == 1, "the commands of one loop turn left in one write");
    CHECK(poll_starts == starts0, "the poll mask did not move for them");
    CHECK(link->events == UV_READABLE, "the link watches READABLE only");
}

/*
 * A SET bigger than the socket takes at once: the rest goes out on
 * WRITABLE. Redis is stopped meanwhile, so that the socket fills for sure
 * (a Redis reading as fast as we write would take it all at once).
 */
static void test_big_command(redis_link_t *link)
{
    char *value = malloc(BIG + 1);
    const char *argv[] = {"SET", "rn:test:big", value};
    size_t lens[] = {3, 11, BIG};
    answers_t set = {0}, len = {.in_order = 1};
    unsigned long starts0 = poll_starts, writes0 = buffer_writes;

    CHECK(value != NULL, "malloc");
    if (value == NULL)
        return;
    memset(value, 'x', BIG);
    CHECK(redis_link_command(link, 3, argv, lens, on_reply, &set) == 0, "big SET queued");
    free(value); /* argv is copied */
    CHECK(command(link, "STRLEN", "rn:test:big", &len) == 0, "STRLEN queued behind it");
    kill(redis_pid, SIGSTOP);
    run_for(100);
    CHECK(link->events == (UV_READABLE | UV_WRITABLE), "WRITABLE watched while the socket is full");
    kill(redis_pid, SIGCONT);
    run_until(&len.n, 1, 10000);
    CHECK(set.n == 1 && strcmp(set.str, "OK") == 0, "big SET answered OK");
    CHECK(len.n == 1 && len.last == BIG, "Redis holds every byte of it");
    CHECK(buffer_writes - writes0 > 1, "the socket took it in several writes");
    CHECK(poll_starts - starts0 >= 2, "WRITABLE was watched while bytes waited");
    CHECK(link->events == UV_READABLE, "and READABLE alone once they were gone");
    CHECK(redis_link_ready(link), "still ready");
}

/* Plain SUBSCRIBE on a push link over the unix socket; PINGs go on in subscribed mode. */
static void test_push_link(redis_link_t *cmd)
{
    watch_t w = {0};
    redis_link_t *sub = link_open(&w, 1, 1, 50);
    const char *sargv[] = {"SUBSCRIBE", "rn:test:chan"};
    const char *pargv[] = {"PUBLISH", "rn:test:chan", "hello"};
    answers_t pub = {.in_order = 1};

    CHECK(sub != NULL, "push link over the unix socket is ready");
    if (sub == NULL)
        return;
    CHECK(redis_link_command(sub, 2, sargv, NULL, NULL, NULL) == 0, "SUBSCRIBE queued");
    run_until(&w.subscribed, 1, 2000);
    CHECK(w.subscribed == 1, "the subscription confirmed through on_push");
    CHECK(redis_link_command(cmd, 3, pargv, NULL, on_reply, &pub) == 0, "PUBLISH queued");
    run_until(&w.messages, 1, 2000);
    CHECK(w.messages == 1 && strcmp(w.last_message, "hello") == 0, "the message came");
    CHECK(pub.n == 1 && pub.last == 1, "PUBLISH reached one subscriber");
    run_for(300); /* six ping intervals, in subscribed mode */
    CHECK(redis_link_ready(sub) && w.downs == 0, "PINGs answered in subscribed mode");
    CHECK(w.pongs == 0, "its PONGs are the link's own, not pushes");
    redis_link_free(sub);
}

/* Freed from inside its first reply: the others get NULL, and nothing more comes. */
static void test_free_inside_reply(void)
{
    watch_t w = {0};
    redis_link_t *link = link_open(&w, 0, 0, QUIET_PING_MS);
    answers_t a = {.in_order = 1};
    int ok = 1;

    CHECK(link != NULL, "a second command link");
    if (link == NULL)
        return;
    a.free_on_first = link;
    for (int i = 0; i < 3; i++)
        ok &= command(link, "PING", NULL, &a) == 0;
    CHECK(ok, "three PINGs queued");
    run_until(&a.n, 1, 2000);
    run_for(100);
    CHECK(a.n == 1 && a.nulls == 2, "one reply, then NULL for the two still waiting");
    CHECK(w.downs == 0, "no state callback after redis_link_free()");
}

/* A refused connect reaches on_state(0) (or redis_link_new() says so at once). */
static void test_refused(void)
{
    watch_t w = {0};
    redis_link_config_t lc = {
        .host = "127.0.0.1", .port = redis_port, .on_state = on_state, .arg = &w};
    redis_link_t *link = redis_link_new(loop, &lc);

    if (link == NULL) {
        CHECK(1, "refused at once");
        return;
    }
    run_until(&w.downs, 1, 2000);
    CHECK(w.downs == 1 && w.ups == 0, "a refused connect is a loss");
    CHECK(redis_link_command(link, 1, (const char *[]){"PING"}, NULL, NULL, NULL) == -1,
          "a lost link takes no command");
    redis_link_free(link);
}

int main(void)
{
    uv_loop_t l;
    watch_t w = {0};
    redis_link_t *link;

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (redis_server_init("test-redis-link") != 0) {
        perror("test_redis_link: setup");
        return 1;
    }
    uv_loop_init(&l);
    loop = &l;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, TICK_MS, TICK_MS);

    test_refused();
    CHECK(redis_server_start() == 0, "redis-server started");
    link = link_open(&w, 0, 0, QUIET_PING_MS);
    CHECK(link != NULL, "command link ready");
    if (link != NULL) {
        test_one_turn_one_write(link);
        test_big_command(link);
        test_push_link(link);
        test_free_inside_reply();
        redis_link_free(link);
    }

    uv_close((uv_handle_t *)&tick, NULL);
    CHECK(uv_run(loop, UV_RUN_DEFAULT) == 0, "every handle closed");
    CHECK(uv_loop_close(loop) == 0, "uv_loop_close() == 0");
    if (check_failed && access(redis_log, R_OK) == 0)
        fprintf(stderr, "redis log: %s (removed at exit)\n", redis_log);
    return check_report();
}
