/*
 * test_bus: the Redis bus over the wire, against a real redis-server that the
 * test starts on a free loopback redis_port (and a unix socket), kills with SIGKILL,
 * freezes with SIGSTOP and restarts. Everything runs on one uv loop: a 10 ms
 * tick drives a list of steps, each with its own deadline, so a step that
 * never completes fails instead of hanging. The test ends by closing every
 * bus and asserting uv_loop_close() == 0.
 */
#include "bus.h"
#include "check.h"
#include "redis_link.h"
#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { TICK_MS = 10, PING_MS = 200, MAX_MSGS = 64, BULK = 5000 };

/* ---- a bus under test and what it saw ---- */

typedef struct msg {
    char chan[64];
    char payload[64];
    size_t len;
} msg_t;

typedef struct peer {
    const char *name;
    bus_t *bus;
    int ups, downs, last, dup_events;
    int isup_at_down, publish_at_down;
    int close_on_up, close_on_message;
    msg_t msgs[MAX_MSGS];
    int nmsgs;
} peer_t;

static uv_loop_t *loop;
static peer_t A = {.name = "A"}, D = {.name = "D"}, E = {.name = "E"}, F = {.name = "F"};

static void on_link(void *arg, int up)
{
    peer_t *p = arg;

    if (up == p->last)
        p->dup_events++;
    p->last = up;
    if (up) {
        p->ups++;
        if (p->close_on_up) {
            bus_close(p->bus); /* from inside a hiredis reply callback */
            p->bus = NULL;
        }
        return;
    }
    p->downs++;
    p->isup_at_down = bus_is_up(p->bus);
    p->publish_at_down = bus_publish(p->bus, "rn:arcade:1", "x", 1);
}

static void on_message(void *arg, const char *channel, const char *payload, size_t len)
{
    peer_t *p = arg;
    msg_t *m;

    if (p->nmsgs == MAX_MSGS)
        return;
    /* channel and payload are borrowed: copy them. */
    m = &p->msgs[p->nmsgs++];
    snprintf(m->chan, sizeof(m->chan), "%s", channel);
    m->len = len;
    memcpy(m->payload, payload, len < sizeof(m->payload) ? len : sizeof(m->payload));
    if (p->close_on_message) {
        bus_close(p->bus);
        p->bus = NULL;
    }
}

static int got(const peer_t *p, const char *chan, const char *payload, size_t len)
{
    for (int i = 0; i < p->nmsgs; i++)
        if (strcmp(p->msgs[i].chan, chan) == 0 && p->msgs[i].len == len &&
            memcmp(p->msgs[i].payload, payload, len) == 0)
            return 1;
    return 0;
}

static int got_str(const peer_t *p, const char *chan, const char *payload)
{
    return got(p, chan, payload, strlen(payload));
}

static bus_t *peer_open(peer_t *p, const char *url)
{
    bus_config_t cfg = {.url = url,
                        .connect_timeout_ms = 1000,
                        .backoff_min_ms = 50,
                        .backoff_max_ms = 400,
                        .ping_interval_ms = PING_MS};
    char err[256] = "";

    p->bus = bus_new(loop, &cfg, on_message, on_link, p, err, sizeof err);
    if (p->bus == NULL)
        fprintf(stderr, "bus_new(%s): %s\n", url, *err ? err : "?");
    return p->bus;
}

static int publish_str(peer_t *p, const char *chan, const char *payload)
{
    return bus_publish(p->bus, chan, payload, strlen(payload));
}

/* ---- PUBSUB NUMSUB through a link of the test's own (also exercises redis_link) ---- */

static struct {
    int state; /* 0 idle, 1 waiting, 2 answered, -1 failed */
    long long arcade1, user7;
    redis_link_t *link;
} numsub;

static void on_numsub(void *arg, redisReply *reply)
{
    (void)arg;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 4 &&
        reply->element[1]->type == REDIS_REPLY_INTEGER &&
        reply->element[3]->type == REDIS_REPLY_INTEGER) {
        numsub.arcade1 = reply->element[1]->integer;
        numsub.user7 = reply->element[3]->integer;
        numsub.state = 2;
    } else {
        numsub.state = -1;
    }
    redis_link_free(numsub.link); /* from inside its own reply callback */
    numsub.link = NULL;
}

static void on_numsub_state(void *arg, redis_link_t *link, int up)
{
    (void)arg, (void)link;
    if (!up) /* lost before the answer: on_numsub got NULL already */
        numsub.state = -1;
}

static void numsub_query(void)
{
    static const char *argv[] = {"PUBSUB", "NUMSUB", "rn:arcade:1", "rn:user:7"};
    redis_link_config_t lc = {.host = "127.0.0.1", .port = redis_port, .on_state = on_numsub_state};

    numsub.state = -1;
    if ((numsub.link = redis_link_new(loop, &lc)) == NULL)
        return;
    numsub.state = 1;
    /* Queued while connecting: it goes out behind the link's first PING. */
    if (redis_link_command(numsub.link, 4, argv, NULL, on_numsub, NULL) != 0)
        numsub.state = -1;
}

/* 1 once Redis reports these counts, re-asking until then; -1 if asking fails. */
static int numsub_expect(int first, long long arcade1, long long user7)
{
    if (first || numsub.state == 2) {
        if (!first && numsub.arcade1 == arcade1 && numsub.user7 == user7)
            return 1;
        numsub_query();
    }
    return numsub.state == -1 ? -1 : 0;
}

/* ---- a refused connect through redis_link alone ---- */

static struct {
    int state; /* 0 waiting, 1 on_state(0) came, -1 anything else */
    redis_link_t *link;
} probe;

static void on_probe_state(void *arg, redis_link_t *link, int up)
{
    (void)arg;
    probe.state = !up && link == probe.link ? 1 : -1;
    redis_link_free(link); /* from inside its own state callback */
    probe.link = NULL;
}

/*
 * Loopback connect(2) to a closed redis_port ends in POLLERR, which libuv
 * reports as an error status with the handle stopped: it must still reach
 * on_state(0) (hiredis's own libuv adapter dropped it).
 */
static int step_refused_connect_reported(int first)
{
    if (first) {
        redis_link_config_t lc = {
            .host = "127.0.0.1", .port = redis_port, .on_state = on_probe_state};
        if ((probe.link = redis_link_new(loop, &lc)) == NULL)
            return 1; /* refused synchronously: reported too */
        return 0;
    }
    return probe.state;
}

/* ---- steps ---- */

/* Called every tick while current: 0 = not yet, 1 = passed, -1 = failed. */
typedef int (*step_fn)(int first);

static uint64_t step_started;

static uint64_t elapsed(void)
{
    return uv_now(loop) - step_started;
}

static int step_down_while_nothing_listens(int first)
{
    if (first) {
        /* Interest registered before any link: the first SUBSCRIBE carries it. */
        char url[200];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis_port);
        if (peer_open(&A, url) == NULL ||
            peer_open(&D, strcat(strcpy(url, "unix:"), redis_sock)) == NULL)
            return -1;
        snprintf(url, sizeof(url), "redis://localhost:%d/0", redis_port);
        if (peer_open(&E, url) == NULL || peer_open(&F, url) == NULL)
            return -1;
        E.close_on_up = 1;
        F.close_on_message = 1;
        CHECK(bus_subscribe(A.bus, "rn:arcade:1") == 0, "subscribe");
        CHECK(bus_subscribe(A.bus, "rn:arcade:1") == 0, "subscribe again");
        CHECK(bus_subscribe(A.bus, "rn:user:7") == 0, "subscribe user channel");
        CHECK(bus_subscribe(D.bus, "rn:user:9") == 0, "subscribe on the unix socket bus");
        CHECK(bus_subscribe(E.bus, "rn:user:7") == 0, "subscribe on E");
        CHECK(bus_subscribe(F.bus, "rn:arcade:1") == 0, "subscribe on F");
        return 0;
    }
    if (A.ups > 0 || D.ups > 0)
        return -1;
    if (elapsed() < 800)
        return 0;
    CHECK(!bus_is_up(A.bus), "bus_is_up() == 0 with nothing listening");
    CHECK(publish_str(&A, "rn:arcade:1", "lost") == -1, "bus_publish() fails with no link");
    return 1;
}

static int step_start_redis(int first)
{
    (void)first;
    return redis_server_start() == 0 ? 1 : -1;
}

static int step_initial_up(int first)
{
    (void)first;
    if (A.ups < 1 || D.ups < 1 || E.ups < 1 || F.ups < 1) /* reconnects are jittered */
        return 0;
    CHECK(bus_is_up(A.bus) && bus_is_up(D.bus), "bus_is_up() after on_link(1)");
    CHECK(bus_reconnects(A.bus) == 0, "the first connect is not a reconnect");
    CHECK(E.bus == NULL && E.ups == 1, "bus_close() from inside on_link(1)");
    return 1;
}

static int step_round_trip(int first)
{
    static const char payload[] = "hello\0one"; /* binary-safe: 9 bytes */

    if (first) {
        CHECK(bus_publish(D.bus, "rn:arcade:1", payload, sizeof(payload) - 1) == 0,
              "publish over the unix socket");
        CHECK(publish_str(&A, "rn:user:9", "to-D") == 0, "publish over TCP");
        return 0;
    }
    if (!got(&A, "rn:arcade:1", payload, sizeof(payload) - 1) || !got_str(&D, "rn:user:9", "to-D"))
        return 0;
    CHECK(!got(&A, "rn:user:7", payload, sizeof(payload) - 1), "delivered on its channel only");
    CHECK(F.bus == NULL && F.nmsgs == 1, "bus_close() from inside on_message");
    return 1;
}

static int step_one_of_two_unsubscribed(int first)
{
    if (first) {
        CHECK(bus_unsubscribe(A.bus, "rn:arcade:1") == 0, "unsubscribe once");
        CHECK(publish_str(&D, "rn:arcade:1", "two") == 0, "publish");
    }
    return got_str(&A, "rn:arcade:1", "two");
}

static int step_last_unsubscribed(int first)
{
    if (first) {
        CHECK(bus_unsubscribe(A.bus, "rn:arcade:1") == 0, "last unsubscribe");
        /* Neither may reach Redis as an UNSUBSCRIBE (hiredis 0.14 could assert). */
        CHECK(bus_unsubscribe(A.bus, "rn:arcade:1") == 0, "unsubscribe past zero is ignored");
        CHECK(bus_unsubscribe(A.bus, "rn:never") == 0, "unsubscribe unknown is ignored");
        CHECK(publish_str(&D, "rn:arcade:1", "three") == 0, "publish");
        /* Same publisher, same subscriber connection: the marker arrives after "three". */
        CHECK(publish_str(&D, "rn:user:7", "marker") == 0, "publish marker");
        return 0;
    }
    if (!got_str(&A, "rn:user:7", "marker"))
        return 0;
    CHECK(!got_str(&A, "rn:arcade:1", "three"), "no delivery after the last unsubscribe");
    return 1;
}

static int step_redis_dropped_channel(int first)
{
    return numsub_expect(first, 0, 1);
}

static int step_subscribe_churn(int first)
{
    if (first) {
        /* Pipelined SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of one channel. */
        CHECK(bus_subscribe(A.bus, "rn:arcade:2") == 0 &&
                  bus_unsubscribe(A.bus, "rn:arcade:2") == 0 &&
                  bus_subscribe(A.bus, "rn:arcade:2") == 0,
              "subscribe churn");
        /* Enough channels to grow the table and make the resubscribe one big command. */
        int ok = 1;
        for (int i = 0; i < BULK; i++) {
            char ch[32];
            snprintf(ch, sizeof(ch), "rn:bulk:%d", i);
            ok &= bus_subscribe(A.bus, ch) == 0;
        }
        CHECK(ok, "subscribe to many channels");
    }
    if (got_str(&A, "rn:arcade:2", "churn"))
        return 1;
    /* Different connections: keep publishing until Redis has the subscription. */
    publish_str(&D, "rn:arcade:2", "churn");
    return 0;
}

static int step_kill(int first)
{
    if (first) {
        redis_server_kill();
        return 0;
    }
    if (A.downs < 1 || D.downs < 1)
        return 0;
    CHECK(A.isup_at_down == 0, "bus_is_up() == 0 inside on_link(0)");
    CHECK(A.publish_at_down == -1, "bus_publish() == -1 inside on_link(0)");
    CHECK(!bus_is_up(A.bus), "bus_is_up() == 0 after kill -9");
    CHECK(publish_str(&A, "rn:arcade:2", "lost") == -1, "bus_publish() == -1 after kill -9");
    return 1;
}

static int step_stay_down(int first)
{
    (void)first;
    if (A.ups != 1 || A.downs != 1)
        return -1;
    return elapsed() >= 600;
}

static int step_back_up(int first)
{
    (void)first;
    if (A.ups < 2 || D.ups < 2)
        return 0;
    CHECK(bus_is_up(A.bus), "bus_is_up() after restart");
    CHECK(bus_reconnects(A.bus) >= 1, "bus_reconnects() counts the reconnect");
    return 1;
}

static int step_restored(int first)
{
    if (first) {
        /* on_link(1) promises the subscriptions are in place: one publish each. */
        CHECK(publish_str(&D, "rn:user:7", "after") == 0, "publish after restart");
        CHECK(publish_str(&D, "rn:arcade:2", "after2") == 0, "publish after restart");
        CHECK(publish_str(&D, "rn:bulk:4321", "bulk") == 0, "publish after restart");
        return 0;
    }
    return got_str(&A, "rn:user:7", "after") && got_str(&A, "rn:arcade:2", "after2") &&
           got_str(&A, "rn:bulk:4321", "bulk");
}

static int step_freeze(int first)
{
    if (first) {
        kill(redis_pid, SIGSTOP);
        return 0;
    }
    return A.downs >= 2 && D.downs >= 2;
}

static int step_thaw(int first)
{
    if (first) {
        kill(redis_pid, SIGCONT);
        return 0;
    }
    if (A.ups < 3 || D.ups < 3)
        return 0;
    CHECK(bus_reconnects(A.bus) >= 2, "reconnect after a freeze counted");
    return 1;
}

static int step_after_thaw(int first)
{
    if (first)
        CHECK(publish_str(&A, "rn:user:9", "thawed") == 0, "publish after thaw");
    return got_str(&D, "rn:user:9", "thawed");
}

static const struct step {
    const char *what;
    step_fn fn;
    int timeout_ms;
} steps[] = {
    {"redis_link: a refused connect reaches on_state(0)", step_refused_connect_reported, 1000},
    {"nothing listening: link stays down, retries, no hang", step_down_while_nothing_listens, 3000},
    {"start redis-server", step_start_redis, 1000},
    {"on_link(1) once Redis listens", step_initial_up, 5000},
    {"publish -> subscriber round trip", step_round_trip, 3000},
    {"two subscribes + one unsubscribe still deliver", step_one_of_two_unsubscribed, 3000},
    {"second unsubscribe stops delivery", step_last_unsubscribed, 3000},
    {"Redis dropped the unsubscribed channel (PUBSUB NUMSUB)", step_redis_dropped_channel, 3000},
    {"subscribe/unsubscribe/subscribe pipelined delivers", step_subscribe_churn, 3000},
    {"kill -9 -> on_link(0)", step_kill, 3000},
    {"stays down while Redis is gone", step_stay_down, 3000},
    {"restart redis-server on the same redis_port", step_start_redis, 1000},
    {"on_link(1) again after restart", step_back_up, 6000},
    {"subscriptions restored after reconnect", step_restored, 3000},
    {"only channels with interest resubscribed (PUBSUB NUMSUB)", step_redis_dropped_channel, 3000},
    {"frozen Redis (SIGSTOP) -> on_link(0) from the PING check", step_freeze, 4 * PING_MS + 3000},
    {"thawed Redis (SIGCONT) -> on_link(1)", step_thaw, 8000},
    {"publish after thaw", step_after_thaw, 3000},
};

static size_t step_index;
static int step_first = 1;
static uv_timer_t tick, deadline;

static void finish(void)
{
    if (A.bus != NULL)
        bus_close(A.bus);
    if (D.bus != NULL)
        bus_close(D.bus);
    if (E.bus != NULL)
        bus_close(E.bus);
    if (F.bus != NULL)
        bus_close(F.bus);
    A.bus = D.bus = E.bus = F.bus = NULL;
    uv_close((uv_handle_t *)&tick, NULL);
}

static void on_tick(uv_timer_t *t)
{
    const struct step *s = &steps[step_index];
    int rc;

    (void)t;
    if (step_first)
        step_started = uv_now(loop);
    rc = s->fn(step_first);
    step_first = 0;
    if (rc == 0 && elapsed() > (uint64_t)s->timeout_ms)
        rc = -1;
    if (rc == 0)
        return;
    CHECK(rc == 1, s->what);
    printf("%s %s (%llu ms)\n", rc == 1 ? "ok  " : "FAIL", s->what, (unsigned long long)elapsed());
    fflush(stdout);
    step_first = 1;
    if (rc != 1 || ++step_index == sizeof(steps) / sizeof(steps[0]))
        finish();
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    CHECK(0, "the whole test finished within its deadline");
    uv_stop(loop);
}

/* ---- URL handling: no loop needed to reject, a few accepted ones closed at once ---- */

static void test_urls(void)
{
    static const char *bad[] = {
        "http://127.0.0.1:6379",    "redis://bad_name!:6379",
        "redis://127.0.0.1:0",      "redis://127.0.0.1:70000",
        "redis://127.0.0.1:6379/x", "redis://[::1",
        "redis://[nope]:6379",      "redis://user:pw@127.0.0.1:6379",
        "unix:relative.sock",       "redis://",
        "redis://127.0.0.1:",       "",
    };
    static const char *good[] = {
        "redis://127.0.0.1:1",
        "redis://localhost:1",
        "redis://[::1]:1/0",
        "redis://10.0.0.1",
        "unix:/nonexistent/redis.sock",
        "unix:///nonexistent/redis.sock",
        "redis://example.com:6379", /* closed while its name is being resolved */
    };
    bus_config_t cfg = {0};
    char err[256];
    bus_t *bus;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.url = bad[i];
        err[0] = 0;
        bus = bus_new(loop, &cfg, on_message, on_link, NULL, err, sizeof err);
        CHECK(bus == NULL && err[0] != 0, bad[i]);
        if (bus != NULL)
            bus_close(bus);
    }
    cfg.url = "redis://-bad.example:6379";
    err[0] = 0;
    CHECK(bus_new(loop, &cfg, NULL, NULL, NULL, err, sizeof err) == NULL && err[0] != 0 &&
              strstr(err, "host") != NULL,
          "a malformed host name is refused with a reason");
    CHECK(bus_new(loop, &cfg, NULL, NULL, NULL, NULL, 0) == NULL, "err may be NULL");
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cfg.url = good[i];
        bus = bus_new(loop, &cfg, NULL, NULL, NULL, err, sizeof err);
        CHECK(bus != NULL, good[i]);
        /* Closed while connecting: must not call back nor leak. */
        bus_close(bus);
    }
    CHECK(uv_run(loop, UV_RUN_DEFAULT) == 0, "closed buses leave the loop empty");
}

/* ---- a host name that does not resolve: logged, never up, nothing hangs ---- */

static char resolve_log[512];
static int resolve_logs;

static void on_bus_log(void *arg, int warn, const char *msg)
{
    (void)arg;
    if (warn)
        resolve_logs++;
    snprintf(resolve_log, sizeof(resolve_log), "%s", msg);
}

static void count_ups(void *arg, int up)
{
    *(int *)arg += up;
}

static void on_give_up(uv_timer_t *t)
{
    bus_close(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_unresolvable(void)
{
    bus_config_t cfg = {.url = "redis://no-such-host.invalid:6379",
                        .backoff_min_ms = 50,
                        .backoff_max_ms = 100,
                        .log = on_bus_log};
    uv_timer_t give_up;
    int ups = 0;
    bus_t *bus = bus_new(loop, &cfg, NULL, count_ups, &ups, NULL, 0);

    CHECK(bus != NULL, "a host name is accepted");
    if (bus == NULL)
        return;
    /* Several attempts fit in 1.5 s: each resolves again, one warning in all. */
    uv_timer_init(loop, &give_up);
    give_up.data = bus;
    uv_timer_start(&give_up, on_give_up, 1500, 0);
    uint64_t t0 = uv_now(loop);
    CHECK(uv_run(loop, UV_RUN_DEFAULT) == 0, "closing the bus mid-retry leaves the loop empty");
    CHECK(uv_now(loop) - t0 < 10000, "a name that does not resolve never hangs the loop");
    CHECK(resolve_logs == 1, "the failure is logged once, not at every retry");
    CHECK(strstr(resolve_log, "cannot resolve Redis host no-such-host.invalid") != NULL,
          "the log names the host");
    CHECK(ups == 0, "never up");
}

int main(void)
{
    uv_loop_t l;

    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (redis_server_init("test-bus") != 0) {
        perror("test_bus: setup");
        return 1;
    }

    uv_loop_init(&l);
    loop = &l;
    test_urls();
    test_unresolvable();

    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(loop, &deadline);
    uv_timer_start(&deadline, on_deadline, 50000, 0);
    uv_unref((uv_handle_t *)&deadline);
    uv_run(loop, UV_RUN_DEFAULT);

    CHECK(A.dup_events == 0 && D.dup_events == 0, "on_link alternates 1, 0, 1, ...");
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    CHECK(uv_loop_close(loop) == 0, "uv_loop_close() == 0 after bus_close()");

    if (check_failed && access(redis_log, R_OK) == 0)
        fprintf(stderr, "redis log: %s (removed at exit)\n", redis_log);
    return check_report();
}
