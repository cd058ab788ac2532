/*
 * test_fanout_bus: fan-out against a real bus (storage/bus.c) and a real
 * redis-server that the test starts on a free loopback redis_port (as
 * test_bus.c does). The bus counts units of interest per channel, so the
 * fan-out must subscribe exactly once per channel, on the first local join,
 * and unsubscribe once, on the last leave:
 *   - two sessions join rn:arcade:1, one joins rn:user:7: Redis reports one
 *     subscriber (this process) on each;
 *   - one of the two leaves rn:arcade:1: a message published there still
 *     arrives (the other member keeps the subscription);
 *   - the last member leaves: Redis reports no subscriber on either channel
 *     (a second subscribe from the second join would have kept one).
 * Everything runs on one uv loop, driven by the bus's own callbacks; one
 * deadline fails the test instead of hanging. Ends with uv_loop_close() == 0
 * and every allocation freed (ASan).
 */
#include "bus.h"
#include "check.h"
#include "fanout.h"
#include "redis_server.h"
#include "session_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

enum { DEADLINE_MS = 20000, RETRY_MS = 20 };

/* ---- the story, one stage per bus event ---- */

static uv_loop_t *loop;
static uv_timer_t deadline, retry;
static bus_t *bus;
static fanout_t *fan;
static session_t *a, *b;
static enum { WAIT_UP, WAIT_SUBSCRIBED, WAIT_ONE_EACH, WAIT_MESSAGE, WAIT_NONE, DONE } stage;
static int subscribed_arcade, subscribed_user, message_arrived;

static void finish(void)
{
    stage = DONE;
    fanout_leave_all(fan, a); /* whatever a failure left joined */
    fanout_leave_all(fan, b);
    uv_timer_stop(&deadline);
    uv_timer_stop(&retry);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_close((uv_handle_t *)&retry, NULL);
    bus_close(bus);
}

static void on_numsub(void *arg, redisReply *reply);

/* PUBSUB NUMSUB rn:arcade:1 rn:user:7 on the bus's command link. */
static void ask_numsub(void)
{
    const char *argv[] = {"PUBSUB", "NUMSUB", "rn:arcade:1", "rn:user:7"};
    size_t lens[4];
    for (int i = 0; i < 4; i++)
        lens[i] = strlen(argv[i]);
    if (bus_command(bus, -1, 4, argv, lens, on_numsub, NULL) != 0) {
        CHECK(0, "bus_command PUBSUB NUMSUB");
        finish();
    }
}

static void on_retry(uv_timer_t *t)
{
    (void)t;
    ask_numsub();
}

static void on_numsub(void *arg, redisReply *reply)
{
    (void)arg;
    if (stage == DONE)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
        CHECK(0, "PUBSUB NUMSUB answers [channel, n, channel, n]");
        finish();
        return;
    }
    long long arcade = reply->element[1]->integer, user = reply->element[3]->integer;
    if (stage == WAIT_ONE_EACH) {
        CHECK(arcade == 1 && user == 1, "Redis: one subscriber on each joined channel");
        /* a leaves everything; b keeps rn:arcade:1 */
        fanout_leave_all(fan, a);
        CHECK(fanout_size(fan, "rn:arcade:1") == 1 && fanout_size(fan, "rn:user:7") == 0,
              "after a left: b alone in arcade 1, nobody in user 7");
        stage = WAIT_MESSAGE;
        CHECK(bus_publish(bus, "rn:arcade:1", "still here", 10) == 0, "publish to arcade 1");
    } else if (stage == WAIT_NONE) {
        if (arcade == 0 && user == 0) {
            CHECK(1, "Redis: no subscriber once the last member left each channel");
            finish();
        } else {
            uv_timer_start(&retry, on_retry, RETRY_MS, 0); /* the UNSUBSCRIBE is in flight */
        }
    }
}

static void on_message(void *arg, const char *channel, const char *payload, size_t len)
{
    (void)arg;
    if (stage != WAIT_MESSAGE || strcmp(channel, "rn:arcade:1") != 0)
        return;
    message_arrived = len == 10 && memcmp(payload, "still here", 10) == 0;
    CHECK(message_arrived, "a message for arcade 1 arrives while b is still a member");
    fanout_leave(fan, b, "rn:arcade:1");
    CHECK(fanout_size(fan, "rn:arcade:1") == 0, "b left: arcade 1 is empty");
    stage = WAIT_NONE;
    ask_numsub();
}

static void on_subscribed(void *arg, const char *channel)
{
    (void)arg;
    subscribed_arcade += strcmp(channel, "rn:arcade:1") == 0;
    subscribed_user += strcmp(channel, "rn:user:7") == 0;
    if (stage == WAIT_SUBSCRIBED && subscribed_arcade && subscribed_user) {
        stage = WAIT_ONE_EACH;
        ask_numsub();
    }
}

static void on_link(void *arg, int up)
{
    (void)arg;
    if (!up || stage != WAIT_UP)
        return;
    stage = WAIT_SUBSCRIBED;
    CHECK(fanout_join(fan, a, "rn:arcade:1") == 0, "a joins arcade 1");
    CHECK(fanout_join(fan, b, "rn:arcade:1") == 0, "b joins arcade 1");
    CHECK(fanout_join(fan, a, "rn:user:7") == 0, "a joins user 7");
    CHECK(fanout_size(fan, "rn:arcade:1") == 2, "two members in arcade 1");
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    fprintf(stderr, "FAIL deadline: stuck at stage %d\n", (int)stage);
    check_failed++;
    finish();
}

int main(void)
{
    uv_loop_t l;
    char url[64];
    char err[256] = "";

    signal(SIGPIPE, SIG_IGN);
    if (redis_server_init("test-fanout") != 0) {
        perror("test_fanout_bus: setup");
        return 1;
    }
    if (redis_server_start() != 0) {
        perror("test_fanout_bus: fork");
        return 1;
    }

    uv_loop_init(&l);
    loop = &l;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", redis_port);
    /* the bus retries its connect until redis-server listens: no wait here */
    bus_config_t cfg = {.url = url, .backoff_min_ms = 50, .backoff_max_ms = 200};
    bus = bus_new(loop, &cfg, on_message, on_link, NULL, err, sizeof err);
    CHECK(bus != NULL, "bus_new");
    if (!bus) {
        fprintf(stderr, "bus_new: %s\n", *err ? err : "?");
        return check_report();
    }
    bus_set_subscribed_cb(bus, on_subscribed);
    fan = fanout_new(bus);
    a = calloc(1, sizeof *a);
    b = calloc(1, sizeof *b);
    CHECK(fan && a && b, "fanout_new and two sessions");

    uv_timer_init(loop, &deadline);
    uv_timer_init(loop, &retry);
    uv_timer_start(&deadline, on_deadline, DEADLINE_MS, 0);
    uv_run(loop, UV_RUN_DEFAULT);

    CHECK(stage == DONE && message_arrived, "the story ran to its end");
    CHECK(subscribed_arcade == 1 && subscribed_user == 1, "one SUBSCRIBE confirmed per channel");
    fanout_free(fan);
    free(a);
    free(b);
    CHECK(uv_loop_close(loop) == 0, "uv_loop_close() == 0 after bus_close()");
    return check_report();
}
