/*
 * api_opsqueue: the operators' queue routes (ROUTE_ADMIN): void a
 * reservation, switch an arcade's (or one slot's) maintenance, set its
 * opening hours. Each
 * is one SQL function of storage/sql/03_queue.sql taking the admin's uid
 * (rn_admin_void, rn_admin_maintenance, rn_admin_arcade_hours) whose answer
 * carries the arcade's snapshot (when the queue changed), the
 * players' events and an admin_event: db_publish pushes them all, to phones
 * and to whichever process holds the cabinet (its timers follow the
 * snapshot), so it works wherever the players and the cabinet are connected.
 * A maintenance switch or new opening hours also change the cabinet's
 * config: a fresh cabinet_config follows (cabinet_config_push).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cabinet_config.h"
#include "db_call.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

#define REASON_MAX 500

/* Counts a change, then answers as db_call would. */
static void on_done(http_req_t *req, json_t *result, void *arg)
{
    json_int_t code = json_integer_value(json_object_get(result, "status"));
    if (code / 100 == 2)
        metrics_cabinet((cabinet_event_t)(intptr_t)arg);
    db_respond(req, result);
}

/*
 * After a change of the arcade's config (path parameter 0): its cabinet gets a
 * fresh cabinet_config, in a query of its own that follows this answer's
 * events. Not sent: logged; the cabinet still reads GET .../config.
 */
static void push_config(http_req_t *req)
{
    long arcade = (long)http_req_param_id(req, 0);
    if (cabinet_config_push(http_req_hub(req), arcade) != 0)
        log_warn("cabinet config not pushed", json_pack("{s:I}", "arcade_id", (json_int_t)arcade));
}

/* Maintenance switched: counted, then the config pushed, then the answer. */
static void on_maintenance_done(http_req_t *req, json_t *result, void *arg)
{
    (void)arg;
    if (json_integer_value(json_object_get(result, "status")) / 100 == 2) {
        metrics_cabinet(CAB_EV_MAINTENANCE);
        push_config(req);
    }
    db_respond(req, result);
}

/* Opening hours set: the config pushed, then the answer. */
static void on_hours_done(http_req_t *req, json_t *result, void *arg)
{
    (void)arg;
    if (json_integer_value(json_object_get(result, "status")) / 100 == 2)
        push_config(req);
    db_respond(req, result);
}

/* An optional boolean field: 0 with *out set, or -1 when present and not a boolean. */
static int opt_bool(const json_t *body, const char *key, bool *out)
{
    const json_t *v = json_object_get(body, key);
    if (!v) {
        *out = false;
        return 0;
    }
    if (!json_is_boolean(v))
        return -1;
    *out = json_is_true(v);
    return 0;
}

/*
 * POST /api/v1/admin/reservations/{id}/void {reason, refund?}: waiting,
 * called or playing -> voided; refunded when refund is true; the next
 * player is called when it held the cabinet.
 */
static void post_void(http_req_t *req)
{
    long long id = http_req_param_id(req, 0);
    json_t *body = http_req_json(req);
    if (!body)
        return;
    if (id < 0) {
        http_respond_error(req, 404, "reservation_not_found", "no such reservation");
        return;
    }
    const char *reason = json_string_value(json_object_get(body, "reason"));
    bool refund;
    if (!reason || opt_bool(body, "refund", &refund) != 0 || strlen(reason) > REASON_MAX * 4) {
        http_respond_error(req, 400, "bad_request",
                           "expected {\"reason\": string, \"refund\": boolean}");
        return;
    }
    char rid[HTTP_NUM_TEXT], secs[HTTP_NUM_TEXT];
    snprintf(rid, sizeof rid, "%lld", id);
    snprintf(secs, sizeof secs, "%d", hub_config(http_req_hub(req))->call_deadline_s);
    const char *params[] = {db_caller_uid(req), rid, reason, refund ? "true" : "false", secs};
    db_call(req, "SELECT rn_admin_void($1, $2::bigint, $3, $4::boolean, $5::int)", 5, params,
            on_done, (void *)(intptr_t)CAB_EV_VOIDED);
}

/*
 * PUT /api/v1/admin/arcades/{id}/maintenance {on, message?, refund_waiting?}:
 * nobody is called and new reservations are refused while on; the waiting
 * keep their place, or are voided and refunded with refund_waiting.
 */
static void put_maintenance(http_req_t *req)
{
    long long id = http_req_param_id(req, 0);
    json_t *body = http_req_json(req);
    if (!body)
        return;
    if (id < 0) {
        http_respond_error(req, 404, "arcade_not_found", "no such arcade");
        return;
    }
    const json_t *on = json_object_get(body, "on");
    const json_t *message = json_object_get(body, "message");
    bool refund;
    if (!json_is_boolean(on) || (message && !json_is_null(message) && !json_is_string(message)) ||
        opt_bool(body, "refund_waiting", &refund) != 0) {
        http_respond_error(req, 400, "bad_request",
                           "expected {\"on\": boolean, \"message\": string, "
                           "\"refund_waiting\": boolean}");
        return;
    }
    char aid[HTTP_NUM_TEXT], secs[HTTP_NUM_TEXT];
    snprintf(aid, sizeof aid, "%lld", id);
    snprintf(secs, sizeof secs, "%d", hub_config(http_req_hub(req))->call_deadline_s);
    const char *params[] = {db_caller_uid(req),
                            aid,
                            json_is_true(on) ? "true" : "false",
                            json_string_value(message),
                            refund ? "true" : "false",
                            secs};
    db_call(req,
            "SELECT rn_admin_maintenance($1, $2::bigint, $3::boolean, $4, $5::boolean, $6::int)", 6,
            params, on_maintenance_done, NULL);
}

/*
 * PUT /api/v1/admin/arcades/{id}/slots/{slot}/maintenance {on, refund_waiting?}:
 * one slot out of order; its game's waiting reservations are served after it
 * is back (or refunded with refund_waiting), the others go on.
 */
static void put_slot_maintenance(http_req_t *req)
{
    long long id = http_req_param_id(req, 0), slot = http_req_param_id(req, 1);
    json_t *body = http_req_json(req);
    if (!body)
        return;
    if (id < 0 || slot < 1 || slot > 1000) {
        http_respond_error(req, 404, id < 0 ? "arcade_not_found" : "slot_not_found",
                           "no such arcade or slot");
        return;
    }
    const json_t *on = json_object_get(body, "on");
    bool refund;
    if (!json_is_boolean(on) || opt_bool(body, "refund_waiting", &refund) != 0) {
        http_respond_error(req, 400, "bad_request",
                           "expected {\"on\": boolean, \"refund_waiting\": boolean}");
        return;
    }
    char aid[HTTP_NUM_TEXT], sid[HTTP_NUM_TEXT], secs[HTTP_NUM_TEXT];
    snprintf(aid, sizeof aid, "%lld", id);
    snprintf(sid, sizeof sid, "%lld", slot);
    snprintf(secs, sizeof secs, "%d", hub_config(http_req_hub(req))->call_deadline_s);
    const char *params[] = {
        db_caller_uid(req),        aid, sid, json_is_true(on) ? "true" : "false",
        refund ? "true" : "false", secs};
    db_call(req,
            "SELECT rn_admin_slot_maintenance($1, $2::bigint, $3::integer, $4::boolean, "
            "$5::boolean, $6::int)",
            6, params, on_maintenance_done, NULL);
}

/*
 * PUT /api/v1/admin/arcades/{id}/hours {opens_at, closes_at, time_zone?,
 * last_call_min?}: validated by rn_admin_arcade_hours (422 bad_hours).
 */
static void put_hours(http_req_t *req)
{
    long long id = http_req_param_id(req, 0);
    if (!http_req_json(req))
        return;
    if (id < 0) {
        http_respond_error(req, 404, "arcade_not_found", "no such arcade");
        return;
    }
    char aid[HTTP_NUM_TEXT];
    size_t len;
    snprintf(aid, sizeof aid, "%lld", id);
    const char *params[] = {db_caller_uid(req), aid, http_req_body(req, &len)};
    db_call(req, "SELECT rn_admin_arcade_hours($1, $2::bigint, $3::jsonb)", 3, params,
            on_hours_done, NULL);
}

static const route_t routes[] = {
    {HTTP_POST, "/api/v1/admin/reservations/{id}/void", ROUTE_ADMIN, post_void},
    {HTTP_PUT, "/api/v1/admin/arcades/{id}/maintenance", ROUTE_ADMIN, put_maintenance},
    {HTTP_PUT, "/api/v1/admin/arcades/{id}/hours", ROUTE_ADMIN, put_hours},
    {HTTP_PUT, "/api/v1/admin/arcades/{id}/slots/{slot}/maintenance", ROUTE_ADMIN,
     put_slot_maintenance},
};

const route_table_t api_opsqueue_routes = {routes, sizeof routes / sizeof routes[0]};
