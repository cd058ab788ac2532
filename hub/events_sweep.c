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
    bool closed; /* closed while a query was in flight: its answer frees us */
};

/*
 * The local channels ($1 user uids, $2 cabinet arcade ids, both JSON arrays)
 * whose events have been unacked for longer than $3 milliseconds.
 */
static const char *const SWEEP_SQL =
    "SELECT 'rn:user:' || u.firebase_uid FROM users u"
    " WHERE u.firebase_uid IN (SELECT jsonb_array_elements_text($1::jsonb))"
    "   AND EXISTS (SELECT 1 FROM user_events e WHERE e.user_id = u.id AND e.acked_at IS NULL"
    "               AND e.created_at < now() - make_interval(secs => $3::float8 / 1000))"
    " UNION ALL "
    "SELECT 'rn:cabinet:' || a.id FROM arcades a"
    " WHERE a.id IN (SELECT jsonb_array_elements_text($2::jsonb)::bigint)"
    "   AND EXISTS (SELECT 1 FROM user_events e WHERE e.arcade_id = a.id AND e.acked_at IS NULL"
    "               AND e.created_at < now() - make_interval(secs => $3::float8 / 1000))";

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
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        events_resync_channel(sw->hub, PQgetvalue(res, i, 0));
    metrics_unacked_sweep((unsigned long)n);
}

static void on_tick(uv_timer_t *t)
{
    events_sweep_t *sw = t->data;
    if (sw->in_flight)
        return;
    channels_t c = {json_array(), json_array()};
    fanout_each_channel(hub_fanout(sw->hub), collect, &c);
    char *users = NULL, *cabinets = NULL, age[24];
    if (json_array_size(c.users) + json_array_size(c.cabinets) > 0) {
        users = json_dumps(c.users, JSON_COMPACT);
        cabinets = json_dumps(c.cabinets, JSON_COMPACT);
    }
    snprintf(age, sizeof age, "%d", hub_config(sw->hub)->unacked_sweep_ms);
    const char *params[] = {users, cabinets, age};
    if (users && cabinets &&
        pg_pool_query(hub_pool(sw->hub), SWEEP_SQL, 3, params, on_swept, sw) == 0)
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
