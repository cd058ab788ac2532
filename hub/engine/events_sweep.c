/* events_sweep: replay unacked events nobody published (see events_sweep.h). */
#include "events_sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "fanout.h"
#include "log.h"
#include "metrics.h"

struct events_sweep {
    hub_t *hub;
    uv_timer_t timer;
    bool in_flight;
    bool closed;   /* closed while a query was in flight: its answer frees us */
    char upto[64]; /* the database time the last sweep covered up to ("": none yet) */
};

/* The window and its rows: see rn_events_sweep in storage/sql/01_common.sql. */
static const char SWEEP_SQL[] =
    "SELECT * FROM rn_events_sweep($1::jsonb, $2::jsonb, $3::bigint, $4::timestamptz)";

typedef struct channels {
    json_t *users, *cabinets;
} channels_t;

static void collect(const char *channel, void *arg)
{
    channels_t *c = arg;
    if (!strncmp(channel, "rn:user:", 8))
        json_array_append_new(c->users, json_string(channel + 8));
    else if (!strncmp(channel, "rn:cabinet:", 11))
        json_array_append_new(c->cabinets, json_string(channel + 11));
}

/* Each row is delivered as if it had just come from the bus (sockets drop ids they have). */
static void on_swept(void *arg, int status, PGresult *res, const char *errmsg)
{
    events_sweep_t *sw = arg;
    sw->in_flight = false;
    if (sw->closed) {
        free(sw);
        return;
    }
    if (status != PG_OK) {
        log_warn("unacked sweep failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        return;
    }
    int n = PQntuples(res), pushed = 0;
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(res, i, 0)) {
            snprintf(sw->upto, sizeof sw->upto, "%s", PQgetvalue(res, i, 2));
            continue;
        }
        events_on_bus_message(sw->hub, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                              (size_t)PQgetlength(res, i, 1));
        pushed++;
    }
    if (pushed)
        log_info("unacked sweep re-pushed events", json_pack("{s:i}", "events", pushed));
    metrics_unacked_sweep((unsigned long)pushed);
}

static void on_tick(uv_timer_t *t)
{
    events_sweep_t *sw = t->data;
    if (sw->in_flight)
        return;
    channels_t c = {json_array(), json_array()};
    fanout_each_channel(hub_fanout(sw->hub), collect, &c);
    char *users = json_dumps(c.users, JSON_COMPACT),
         *cabinets = json_dumps(c.cabinets, JSON_COMPACT);
    char age[24];
    snprintf(age, sizeof age, "%d", hub_config(sw->hub)->unacked_sweep_ms);
    /* with no local channel the window still moves on: nothing in it concerns us */
    const char *params[] = {users, cabinets, age, sw->upto[0] ? sw->upto : NULL};
    if (users && cabinets &&
        pg_pool_query(hub_pool(sw->hub), SWEEP_SQL, 4, params, on_swept, sw) == 0)
        sw->in_flight = true;
    free(users);
    free(cabinets);
    json_decref(c.users);
    json_decref(c.cabinets);
}

events_sweep_t *events_sweep_new(hub_t *hub)
{
    int every = hub_config(hub)->unacked_sweep_ms;
    events_sweep_t *sw = every > 0 ? calloc(1, sizeof *sw) : NULL;
    if (!sw)
        return NULL;
    sw->hub = hub;
    uv_timer_init(hub_loop(hub), &sw->timer);
    sw->timer.data = sw;
    uv_timer_start(&sw->timer, on_tick, (uint64_t)every, (uint64_t)every);
    return sw;
}

static void on_timer_closed(uv_handle_t *h)
{
    events_sweep_t *sw = h->data;
    if (!sw->in_flight)
        free(sw);
    else
        sw->closed = true;
}

void events_sweep_close(events_sweep_t *sw)
{
    if (sw)
        uv_close((uv_handle_t *)&sw->timer, on_timer_closed);
}
