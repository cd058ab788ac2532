/* cabinet_lease: renew ours, sweep the expired (see cabinet_lease.h). */
#include "cabinet_lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cabinet.h"
#include "db_call.h"
#include "log.h"

#define IDS_TEXT_MAX 8192

struct cabinet_lease {
    hub_t *hub;
    uv_timer_t timer;
};

typedef struct ids_text {
    char buf[IDS_TEXT_MAX];
    size_t len;
} ids_text_t;

/* Appends an id to a PostgreSQL array literal being built: "{1,2,3". */
static void add_id(long arcade_id, void *arg)
{
    ids_text_t *t = arg;
    int n = snprintf(t->buf + t->len, sizeof t->buf - t->len, "%s%ld", t->len > 1 ? "," : "",
                     arcade_id);
    if (n > 0 && (size_t)n < sizeof t->buf - t->len - 1)
        t->len += (size_t)n;
}

static void on_renewed(void *arg, int status, PGresult *res, const char *errmsg)
{
    (void)arg;
    (void)res;
    if (status != PG_OK)
        log_warn("cabinet lease renewal failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
}

/* The sweep's answers: every arcade it showed offline, to publish. */
static void on_swept(void *arg, int status, PGresult *res, const char *errmsg)
{
    hub_t *hub = arg;
    if (status != PG_OK) {
        if (status == PG_EQUERY)
            log_warn("cabinet sweep failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        return;
    }
    json_t *answers = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    size_t i;
    json_t *answer;
    json_array_foreach (answers, i, answer) {
        db_publish(hub, answer);
        log_info("cabinet lease expired: shown offline",
                 json_pack("{s:O?}", "arcade_id",
                           json_object_get(json_object_get(answer, "arcade"), "arcade_id")));
    }
    json_decref(answers);
}

/* Renews the leases of the cabinets held here. */
static void renew(hub_t *hub)
{
    ids_text_t ids = {.buf = "{", .len = 1};
    cabinets_each_held(hub_cabinets(hub), add_id, &ids);
    if (ids.len > 1) {
        ids.buf[ids.len++] = '}';
        ids.buf[ids.len] = '\0';
        const char *params[] = {ids.buf};
        pg_pool_query(hub_pool(hub), "SELECT rn_cabinet_heartbeat($1::bigint[])", 1, params,
                      on_renewed, hub);
    }
}

void cabinet_lease_renew(cabinet_lease_t *l)
{
    if (l)
        renew(l->hub);
}

static void on_tick(uv_timer_t *t)
{
    cabinet_lease_t *l = t->data;
    hub_t *hub = l->hub;
    renew(hub);
    char stale[24];
    snprintf(stale, sizeof stale, "%d", hub_config(hub)->cabinet_lease_ms);
    const char *params[] = {stale};
    /* answers come back as text: ours to publish (the hub outlives the pool) */
    pg_pool_query(hub_pool(hub), "SELECT rn_cabinet_sweep($1::integer)::text", 1, params, on_swept,
                  hub);
}

cabinet_lease_t *cabinet_lease_new(hub_t *hub)
{
    cabinet_lease_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->hub = hub;
    uv_timer_init(hub_loop(hub), &l->timer);
    l->timer.data = l;
    uint64_t period = (uint64_t)hub_config(hub)->cabinet_lease_ms / 3;
    uv_timer_start(&l->timer, on_tick, period, period);
    return l;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cabinet_lease_close(cabinet_lease_t *l)
{
    if (l)
        uv_close((uv_handle_t *)&l->timer, on_closed);
}
