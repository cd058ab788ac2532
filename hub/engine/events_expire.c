/* events_expire: the periodic, batched retention of acked private events (events_expire.h). */
#include "events_expire.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"

/* Rows per call: 8-13 ms a batch on 3 million rows (README "Configuration"). */
#define EXPIRE_BATCH 10000
/* Every this many sweeps one starts from the oldest row again (events acked late). */
#define EXPIRE_RESTART_SWEEPS 60

struct events_expire {
    hub_t *hub;
    uv_timer_t timer;
    bool in_flight;    /* a batch is running */
    bool closing;      /* closed: no batch follows the one in flight */
    bool timer_closed; /* the timer's close callback ran: freed once nothing is in flight */
    char after[64];    /* created_at of the newest row deleted so far ("": from the oldest) */
    unsigned sweeps;   /* sweeps started, for EXPIRE_RESTART_SWEEPS */
    unsigned long deleted, batches; /* by the sweep running */
    uint64_t started_ms;            /* loop time the sweep running started */
};

static const char EXPIRE_SQL[] = "SELECT deleted, upto FROM rn_events_expire("
                                 "make_interval(hours => $1::int), $2::int, $3::timestamptz)";

static void on_batch(void *arg, int status, PGresult *res, const char *errmsg);

/* Queues the next batch; false when it could not be queued (no connection: the next tick). */
static bool run_batch(events_expire_t *ex)
{
    char hours[24], limit[24];
    snprintf(hours, sizeof hours, "%d", hub_config(ex->hub)->events_keep_hours);
    snprintf(limit, sizeof limit, "%d", EXPIRE_BATCH);
    const char *params[] = {hours, limit, ex->after[0] ? ex->after : NULL};
    ex->in_flight = pg_pool_query(hub_pool(ex->hub), EXPIRE_SQL, 3, params, on_batch, ex) == 0;
    return ex->in_flight;
}

static void sweep_done(events_expire_t *ex)
{
    if (ex->deleted)
        log_info("events expired",
                 json_pack("{s:I, s:I, s:I, s:i}", "events", (json_int_t)ex->deleted, "batches",
                           (json_int_t)ex->batches, "ms",
                           (json_int_t)(uv_now(hub_loop(ex->hub)) - ex->started_ms), "keep_hours",
                           hub_config(ex->hub)->events_keep_hours));
}

static void on_batch(void *arg, int status, PGresult *res, const char *errmsg)
{
    events_expire_t *ex = arg;
    ex->in_flight = false;
    if (ex->closing) {
        if (ex->timer_closed)
            free(ex);
        return;
    }
    if (status != PG_OK || PQntuples(res) != 1) {
        if (status != PG_EUNAVAILABLE)
            log_warn("events expiry failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        sweep_done(ex);
        return;
    }
    long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    ex->batches++;
    if (n > 0) {
        ex->deleted += (unsigned long)n;
        metrics_events_expired((unsigned long)n);
        snprintf(ex->after, sizeof ex->after, "%s", PQgetvalue(res, 0, 1));
    }
    /* a full batch: more may be waiting behind it (the next one from where it stopped) */
    if (n < EXPIRE_BATCH || !run_batch(ex))
        sweep_done(ex);
}

static void on_tick(uv_timer_t *t)
{
    events_expire_t *ex = t->data;
    if (ex->in_flight)
        return;
    if (ex->sweeps++ % EXPIRE_RESTART_SWEEPS == 0)
        ex->after[0] = '\0';
    ex->deleted = ex->batches = 0;
    ex->started_ms = uv_now(hub_loop(ex->hub));
    run_batch(ex);
}

events_expire_t *events_expire_new(hub_t *hub)
{
    const hub_config_t *cfg = hub_config(hub);
    events_expire_t *ex = cfg->events_keep_hours > 0 ? calloc(1, sizeof *ex) : NULL;
    if (!ex)
        return NULL;
    ex->hub = hub;
    uv_timer_init(hub_loop(hub), &ex->timer);
    ex->timer.data = ex;
    uint64_t every = (uint64_t)cfg->events_expire_sweep_ms;
    uv_timer_start(&ex->timer, on_tick, every, every);
    return ex;
}

static void on_timer_closed(uv_handle_t *h)
{
    events_expire_t *ex = h->data;
    ex->timer_closed = true;
    if (!ex->in_flight)
        free(ex);
}

void events_expire_close(events_expire_t *ex)
{
    if (!ex)
        return;
    ex->closing = true;
    uv_close((uv_handle_t *)&ex->timer, on_timer_closed);
}
