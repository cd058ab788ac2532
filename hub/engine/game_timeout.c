/* game_timeout: the periodic sweep of games past their maximum (game_timeout.h). */
#include "game_timeout.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "db_call.h"
#include "log.h"
#include "metrics.h"

struct game_timeout {
    hub_t *hub;
    uv_timer_t timer;
};

/* One rn_game_timeout answer: publish what it changed. */
static void on_timed_out(void *arg, int status, PGresult *res, const char *errmsg)
{
    hub_t *hub = arg;
    if (status != PG_OK) {
        if (status == PG_EQUERY)
            log_warn("game timeout failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        return;
    }
    json_t *answer = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    json_t *body = json_object_get(answer, "body");
    if (json_is_true(json_object_get(body, "changed"))) {
        db_publish(hub, answer);
        metrics_cabinet(CAB_EV_TIMED_OUT);
        log_info("game timed out", json_pack("{s:O?, s:O?}", "reservation_id",
                                             json_object_get(body, "reservation_id"), "refunded",
                                             json_object_get(body, "refunded")));
    }
    json_decref(answer);
}

/* Ends one due game in its own transaction. */
static void time_out(hub_t *hub, json_int_t arcade_id, json_int_t reservation_id)
{
    const hub_config_t *cfg = hub_config(hub);
    char arcade[24], rid[24], max_s[24], grace_s[24], secs[24];
    snprintf(arcade, sizeof arcade, "%" JSON_INTEGER_FORMAT, arcade_id);
    snprintf(rid, sizeof rid, "%" JSON_INTEGER_FORMAT, reservation_id);
    snprintf(max_s, sizeof max_s, "%d", cfg->game_max_s);
    snprintf(grace_s, sizeof grace_s, "%d", cfg->game_grace_s);
    snprintf(secs, sizeof secs, "%d", cfg->call_deadline_s);
    const char *params[] = {arcade, rid, max_s, grace_s, cfg->refund_timed_out ? "true" : "false",
                            secs};
    pg_pool_query(hub_pool(hub),
                  "SELECT rn_game_timeout($1::bigint, $2::bigint, $3::int, $4::int, $5::boolean, "
                  "$6::int)::text",
                  6, params, on_timed_out, hub);
}

/* The due games: [[arcade_id, reservation_id], ...]. */
static void on_due(void *arg, int status, PGresult *res, const char *errmsg)
{
    hub_t *hub = arg;
    if (status != PG_OK) {
        if (status == PG_EQUERY)
            log_warn("game timeout sweep failed",
                     json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        return;
    }
    json_t *due = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    size_t i;
    json_t *pair;
    json_array_foreach (due, i, pair) {
        time_out(hub, json_integer_value(json_array_get(pair, 0)),
                 json_integer_value(json_array_get(pair, 1)));
    }
    json_decref(due);
}

/* One rn_arcade_close answer: publish what it changed. */
static void on_closed_arcade(void *arg, int status, PGresult *res, const char *errmsg)
{
    hub_t *hub = arg;
    if (status != PG_OK) {
        if (status == PG_EQUERY)
            log_warn("arcade close failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        return;
    }
    json_t *answer = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    json_t *body = json_object_get(answer, "body");
    if (json_is_true(json_object_get(body, "changed"))) {
        db_publish(hub, answer);
        log_info(
            "arcade closed: waiting reservations refunded",
            json_pack("{s:O?}", "reservations", json_object_get(body, "refunded_reservations")));
    }
    json_decref(answer);
}

/* The arcades past closing time with reservations waiting: [id, ...]. */
static void on_closing_due(void *arg, int status, PGresult *res, const char *errmsg)
{
    hub_t *hub = arg;
    if (status != PG_OK) {
        if (status == PG_EQUERY)
            log_warn("closing sweep failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        return;
    }
    json_t *due = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    char secs[24];
    snprintf(secs, sizeof secs, "%d", hub_config(hub)->call_deadline_s);
    size_t i;
    json_t *id;
    json_array_foreach (due, i, id) {
        char arcade[24];
        snprintf(arcade, sizeof arcade, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
        const char *params[] = {arcade, secs};
        pg_pool_query(hub_pool(hub), "SELECT rn_arcade_close($1::bigint, $2::int)::text", 2, params,
                      on_closed_arcade, hub);
    }
    json_decref(due);
}

static void on_tick(uv_timer_t *t)
{
    game_timeout_t *gt = t->data;
    const hub_config_t *cfg = hub_config(gt->hub);
    char max_s[24], grace_s[24];
    snprintf(max_s, sizeof max_s, "%d", cfg->game_max_s);
    snprintf(grace_s, sizeof grace_s, "%d", cfg->game_grace_s);
    const char *params[] = {max_s, grace_s};
    /* callbacks hold the hub, not gt: the hub outlives the pool */
    pg_pool_query(hub_pool(gt->hub), "SELECT rn_game_timeouts_due($1::int, $2::int)::text", 2,
                  params, on_due, gt->hub);
    pg_pool_query(hub_pool(gt->hub), "SELECT rn_arcades_closing_due()::text", 0, NULL,
                  on_closing_due, gt->hub);
}

game_timeout_t *game_timeout_new(hub_t *hub)
{
    game_timeout_t *gt = calloc(1, sizeof *gt);
    if (!gt)
        return NULL;
    gt->hub = hub;
    uv_timer_init(hub_loop(hub), &gt->timer);
    gt->timer.data = gt;
    uint64_t period = (uint64_t)hub_config(hub)->game_timeout_sweep_ms;
    uv_timer_start(&gt->timer, on_tick, period, period);
    return gt;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void game_timeout_close(game_timeout_t *gt)
{
    if (gt)
        uv_close((uv_handle_t *)&gt->timer, on_closed);
}
