/* duty: work remembered until it succeeded (see duty.h). */
#include "duty.h"

#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "log.h"
#include "metrics.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000 /* bounded staleness: a retry at least once a second */

struct duty {
    duties_t *ds;
    char *key;
    duty_run_cb run;
    void *arg;
    void (*free_arg)(void *);
    bool running;        /* an attempt is in flight */
    bool again;          /* wanted again while running: one more attempt */
    bool waiting;        /* an attempt failed: on the waiting list */
    uint64_t since_ms;   /* first failure */
    unsigned attempts;   /* failed ones */
    duty_t *next, *prev; /* waiting list */
};

struct duties {
    hub_t *hub; /* passed to the run callbacks */
    uv_loop_t *loop;
    dict_t *all; /* key -> duty_t */
    duty_t *head, *tail;
    uv_timer_t timer;
    int backoff_ms;
    unsigned running;
    bool closing, timer_closed;
    /* One log line when duties start waiting, one when the last is done: not one per duty. */
    unsigned nwaiting;         /* duties that failed and have not succeeded since */
    unsigned long waited_done; /* of those, done since the wait began */
    unsigned long retries;
    uint64_t wait_started_ms;
};

static void duties_maybe_free(duties_t *ds)
{
    if (ds->closing && ds->timer_closed && ds->running == 0) {
        dict_free(ds->all);
        free(ds);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    duties_t *ds = h->data;
    ds->timer_closed = true;
    duties_maybe_free(ds);
}

duties_t *duties_new(uv_loop_t *loop, hub_t *hub)
{
    duties_t *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->all = dict_new())) {
        free(ds);
        return NULL;
    }
    ds->hub = hub;
    ds->loop = loop;
    ds->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &ds->timer);
    ds->timer.data = ds;
    return ds;
}

static void list_remove(duties_t *ds, duty_t *d)
{
    if (!d->waiting)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        ds->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        ds->tail = d->prev;
    d->next = d->prev = NULL;
    d->waiting = false;
}

static void list_append(duties_t *ds, duty_t *d)
{
    d->waiting = true;
    d->next = NULL;
    d->prev = ds->tail;
    if (ds->tail)
        ds->tail->next = d;
    else
        ds->head = d;
    ds->tail = d;
}

static void duty_free(duty_t *d)
{
    if (d->since_ms)
        d->ds->nwaiting--;
    dict_delete(d->ds->all, d->key);
    if (d->free_arg)
        d->free_arg(d->arg);
    free(d->key);
    free(d);
}

static void on_timer(uv_timer_t *t);

/* Jittered so that hubs recovering together do not retry in step. */
static void schedule(duties_t *ds)
{
    if (ds->closing || !ds->head || uv_is_active((uv_handle_t *)&ds->timer))
        return;
    uint64_t delay = (uint64_t)(ds->backoff_ms / 2 + rand() % (ds->backoff_ms / 2 + 1));
    uv_timer_start(&ds->timer, on_timer, delay, 0);
    ds->backoff_ms = ds->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ds->backoff_ms * 2;
}

/* A failed attempt (or one that could not start): wait for the next retry. */
static void wait_again(duty_t *d, const char *why)
{
    duties_t *ds = d->ds;
    d->attempts++;
    ds->retries++;
    metrics_catchup(CATCHUP_RETRIED);
    if (!d->since_ms) {
        d->since_ms = uv_now(ds->loop) + 1; /* never 0 */
        metrics_catchup(CATCHUP_WAITED);
        if (ds->nwaiting++ == 0) {
            ds->wait_started_ms = d->since_ms;
            log_warn("catch-up waiting",
                     json_pack("{s:s, s:s, s:i}", "first", d->key, "why", why ? why : "unavailable",
                               "pending", (int)dict_size(ds->all)));
        }
    }
    d->again = false; /* the retry reads everything anyway */
    list_append(ds, d);
    schedule(ds);
}

static void attempt(duty_t *d)
{
    duties_t *ds = d->ds;
    d->running = true;
    ds->running++;
    if (d->run(ds->hub, d, d->arg) != 0) {
        d->running = false;
        ds->running--;
        wait_again(d, "cannot start");
    }
}

void duty_done(duty_t *d, bool ok, const char *why)
{
    duties_t *ds = d->ds;
    d->running = false;
    ds->running--;
    if (ds->closing) {
        duty_free(d);
        duties_maybe_free(ds);
        return;
    }
    if (!ok) {
        wait_again(d, why);
        return;
    }
    if (d->since_ms) {
        d->since_ms = 0;
        d->attempts = 0;
        ds->waited_done++;
        if (--ds->nwaiting == 0) {
            log_info("catch-up done",
                     json_pack("{s:I, s:I, s:I}", "duties", (json_int_t)ds->waited_done,
                               "waited_ms",
                               (json_int_t)(uv_now(ds->loop) + 1 - ds->wait_started_ms), "retries",
                               (json_int_t)ds->retries));
            ds->waited_done = ds->retries = 0;
        }
    }
    metrics_catchup(CATCHUP_DONE);
    ds->backoff_ms = BACKOFF_MIN_MS; /* something works again */
    if (d->again) {
        d->again = false;
        attempt(d);
        return;
    }
    duty_free(d);
}

int duty_want(duties_t *ds, const char *key, duty_run_cb run, void *arg, void (*free_arg)(void *))
{
    if (!ds || ds->closing) { /* the hub is stopping */
        if (free_arg)
            free_arg(arg);
        return -1;
    }
    duty_t *d = dict_get(ds->all, key);
    if (d) {
        if (free_arg)
            free_arg(arg);
        metrics_catchup(CATCHUP_COALESCED);
        if (d->running)
            d->again = true;
        return 1;
    }
    if (!(d = calloc(1, sizeof *d)) || !(d->key = strdup(key)) || dict_set(ds->all, key, d) != 0) {
        if (d)
            free(d->key);
        free(d);
        if (free_arg)
            free_arg(arg);
        return -1;
    }
    d->ds = ds;
    d->run = run;
    d->arg = arg;
    d->free_arg = free_arg;
    metrics_catchup(CATCHUP_WANTED);
    attempt(d);
    return 0;
}

const char *duty_key(const duty_t *d)
{
    return d->key;
}

/* Attempts every duty waiting now; those that fail again go to a new list. */
static void run_waiting(duties_t *ds)
{
    duty_t *list = ds->head;
    ds->head = ds->tail = NULL;
    while (list) {
        duty_t *d = list;
        list = d->next;
        if (list)
            list->prev = NULL;
        d->next = d->prev = NULL;
        d->waiting = false;
        attempt(d);
    }
}

static void on_timer(uv_timer_t *t)
{
    duties_t *ds = t->data;
    run_waiting(ds);
    schedule(ds);
}

void duties_kick(duties_t *ds)
{
    if (!ds || ds->closing)
        return;
    uv_timer_stop(&ds->timer);
    ds->backoff_ms = BACKOFF_MIN_MS;
    run_waiting(ds);
    schedule(ds);
}

size_t duties_pending(const duties_t *ds)
{
    return ds ? dict_size(ds->all) : 0;
}

void duties_close(duties_t *ds)
{
    if (!ds)
        return;
    ds->closing = true;
    uv_timer_stop(&ds->timer);
    while (ds->head) {
        duty_t *d = ds->head;
        list_remove(ds, d);
        duty_free(d);
    }
    uv_close((uv_handle_t *)&ds->timer, on_timer_closed);
}
