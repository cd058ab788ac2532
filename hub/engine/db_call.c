/* db_call: one SQL function per request, its jsonb answer, its events (see db_call.h). */
#include "db_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "queue.h"

typedef struct db_call_ctx {
    http_req_t *req;
    db_result_cb cb;
    void *arg;
} db_call_ctx_t;

void db_publish(hub_t *hub, const json_t *result)
{
    events_publish(hub, json_object_get(result, "events"));
    json_t *snapshot = json_object_get(result, "arcade");
    if (json_is_object(snapshot))
        queue_publish(hub, snapshot);
    json_t *admin = json_object_get(result, "admin_event");
    if (json_is_object(admin))
        events_publish_admin(hub, admin);
    size_t i;
    json_t *item;
    json_array_foreach (json_object_get(result, "arcades"), i, item) {
        if (json_is_object(item))
            queue_publish(hub, item);
    }
    json_array_foreach (json_object_get(result, "audit"), i, item) {
        json_t *event = json_pack("{s:s, s:O}", "kind", "audit", "entry", item);
        if (event)
            events_publish_admin(hub, event);
        json_decref(event);
    }
}

void db_respond(http_req_t *req, const json_t *result)
{
    json_t *body = json_object_get(result, "body");
    http_respond_json(req, (int)json_integer_value(json_object_get(result, "status")),
                      body ? json_incref(body) : json_object());
}

void db_call_uid_id(http_req_t *req, const char *sql, const char *not_found_code,
                    const char *not_found_message)
{
    long long id = http_req_param_id(req, 0);
    if (id < 0) {
        http_respond_error(req, 404, not_found_code, "%s", not_found_message);
        return;
    }
    char idt[HTTP_NUM_TEXT];
    snprintf(idt, sizeof idt, "%lld", id);
    const char *params[] = {db_caller_uid(req), idt};
    db_call(req, sql, 2, params, NULL, NULL);
}

const char *db_caller_uid(const http_req_t *req)
{
    const auth_identity_t *who = http_req_identity(req);
    return who ? who->uid : NULL;
}

static void on_result(void *arg, int status, PGresult *res, const char *errmsg)
{
    db_call_ctx_t *ctx = arg;
    http_req_t *req = ctx->req;
    json_t *result = NULL;
    if (status == PG_EUNAVAILABLE) {
        http_respond_error(req, 503, "db_unavailable", "database unavailable: %s", errmsg);
        goto done;
    }
    if (status != PG_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        log_error("sql function failed", json_pack("{s:s, s:s}", "sqlstate", state ? state : "",
                                                   "error", errmsg ? errmsg : ""));
        /* serialization failures and deadlocks are worth a retry by the client */
        if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")))
            http_respond_error(req, 503, "retry", "conflict with a concurrent request; retry");
        else
            http_respond_error(req, 500, "internal", "the request could not be completed");
        goto done;
    }
    json_error_t jerr;
    if (PQntuples(res) == 1 && PQnfields(res) == 1 && !PQgetisnull(res, 0, 0))
        result = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, &jerr);
    json_int_t code = json_integer_value(json_object_get(result, "status"));
    if (!json_is_object(result) || code < 200 || code > 599) {
        log_error("sql function returned no status", NULL);
        http_respond_error(req, 500, "internal", "malformed database answer");
        goto done;
    }
    db_publish(http_req_hub(req), result);
    if (ctx->cb)
        ctx->cb(req, result, ctx->arg);
    else
        db_respond(req, result);
done:
    json_decref(result);
    free(ctx);
}

void db_call(http_req_t *req, const char *sql, int nparams, const char *const *params,
             db_result_cb cb, void *arg)
{
    db_call_ctx_t *ctx = malloc(sizeof *ctx);
    if (!ctx) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    *ctx = (db_call_ctx_t){req, cb, arg};
    if (pg_pool_query(hub_pool(http_req_hub(req)), sql, nparams, params, on_result, ctx) != 0) {
        free(ctx);
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
    }
}
