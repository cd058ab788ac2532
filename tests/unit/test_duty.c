/*
 * test_duty: the retry-until-done rule of hub/duty.c on a real libuv loop.
 * A duty whose attempts fail is retried from the backoff timer and at once
 * on duties_kick(); wants of a pending key coalesce (one attempt in flight,
 * one more after it when wanted meanwhile); args are released exactly once;
 * closing drops what waits and the loop closes clean.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "duty.h"

static int failures;
#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, what);                                  \
        } else {                                                                                   \
            printf("ok   %s\n", what);                                                             \
        }                                                                                          \
    } while (0)

/* The "dependency": attempts fail while it is down. */
static int db_up;
static int runs, freed;
static duty_t *inflight; /* an attempt left open, finished by the test */

static void count_free(void *arg)
{
    (void)arg;
    freed++;
}

/* Succeeds or fails at once, as a query refused by a pool with no connection. */
static int run_now(hub_t *hub, duty_t *d, void *arg)
{
    (void)hub;
    (void)arg;
    runs++;
    if (!db_up)
        return -1; /* cannot start */
    duty_done(d, true, NULL);
    return 0;
}

/* Starts and stays in flight until the test ends it. */
static int run_open(hub_t *hub, duty_t *d, void *arg)
{
    (void)hub;
    (void)arg;
    runs++;
    inflight = d;
    return 0;
}

static uv_loop_t loop;
static uv_timer_t stop_timer;

static void on_stop(uv_timer_t *t)
{
    (void)t;
    uv_stop(&loop);
}

/* Runs the loop for ms milliseconds of its clock. */
static void run_for(uint64_t ms)
{
    uv_timer_start(&stop_timer, on_stop, ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
}

int main(void)
{
    uv_loop_init(&loop);
    uv_timer_init(&loop, &stop_timer);
    duties_t *ds = duties_new(&loop, NULL);
    CHECK(ds != NULL, "duties_new");

    /* while the dependency is down: retried from the timer, never dropped */
    db_up = 0;
    CHECK(duty_want(ds, "events:rn:user:a", run_now, NULL, count_free) == 0, "a new duty");
    CHECK(runs == 1 && duties_pending(ds) == 1, "first attempt at once; still pending");
    CHECK(duty_want(ds, "events:rn:user:a", run_now, NULL, count_free) == 1, "coalesced");
    CHECK(freed == 1, "a coalesced want's arg is released at once");
    run_for(1500);
    CHECK(runs >= 3 && duties_pending(ds) == 1, "retried with backoff while down");
    int before = runs;
    run_for(1100);
    CHECK(runs - before >= 1 && runs - before <= 3, "backoff capped near 1 s: retried, no storm");

    /* the dependency comes back: a kick runs it now */
    db_up = 1;
    before = runs;
    duties_kick(ds);
    CHECK(runs == before + 1 && duties_pending(ds) == 0, "kick: done at once");
    CHECK(freed == 2, "its arg released once done");

    /* wanted again while in flight: one more attempt after it, not two */
    runs = 0;
    CHECK(duty_want(ds, "queue:rn:arcade:1", run_open, NULL, count_free) == 0, "in flight");
    CHECK(duty_want(ds, "queue:rn:arcade:1", run_open, NULL, count_free) == 1, "wanted again");
    CHECK(duty_want(ds, "queue:rn:arcade:1", run_open, NULL, count_free) == 1, "and again");
    duty_t *first = inflight;
    duty_done(first, true, NULL);
    CHECK(runs == 2 && inflight != NULL, "exactly one more attempt after the first");
    duty_done(inflight, true, NULL);
    CHECK(runs == 2 && duties_pending(ds) == 0, "then done");

    /* a failed attempt in flight waits for the timer */
    runs = 0;
    duty_want(ds, "replay:1", run_open, NULL, count_free);
    duty_done(inflight, false, "connection lost");
    CHECK(duties_pending(ds) == 1, "failed: still pending");
    run_for(300);
    CHECK(runs == 2, "retried from the timer");

    /* closing: what waits is dropped, what is in flight at its end */
    db_up = 0;
    duty_want(ds, "events:rn:user:b", run_now, NULL, count_free);
    int freed_before = freed;
    duties_close(ds);
    CHECK(freed == freed_before + 1, "closing drops a waiting duty");
    duty_done(inflight, true, NULL);
    CHECK(freed == freed_before + 2, "and one in flight at its end");
    CHECK(duty_want(ds, "x", run_now, NULL, count_free) == -1 && freed == freed_before + 3,
          "no new duty while closing; arg released");
    CHECK(duty_want(NULL, "x", run_now, NULL, count_free) == -1, "no duty without a set");

    uv_close((uv_handle_t *)&stop_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "uv_loop_close() == 0");
    printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
