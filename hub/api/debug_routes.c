/*
 * debug_routes: routes the integration tests need and production must not
 * have. Compiled only with -DRN_DEBUG_ROUTES=ON (make build-test, which ctest
 * uses); they answer only when the hub also runs with --debug-routes, a flag
 * the production build refuses (config_validate). Not in /openapi.json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "http.h"

typedef struct sleep_call {
    http_req_t *req;
    long ms;
    size_t pad;
} sleep_call_t;

#define PAD_MAX (8 * 1024 * 1024)

/* {"slept_ms":ms}, and "pad":"xxx..." of pad bytes when asked (a large answer given from a query).
 */
static json_t *slept(const sleep_call_t *call)
{
    if (!call->pad)
        return json_pack("{s:i}", "slept_ms", (int)call->ms);
    char *pad = malloc(call->pad);
    if (!pad)
        return NULL;
    memset(pad, 'x', call->pad);
    json_t *body = json_pack("{s:i, s:s%}", "slept_ms", (int)call->ms, "pad", pad, call->pad);
    free(pad);
    return body;
}

static void on_slept(void *arg, int status, PGresult *res, const char *errmsg)
{
    (void)res;
    sleep_call_t *call = arg;
    if (status == PG_OK)
        http_respond_json(call->req, 200, slept(call));
    else if (status == PG_EUNAVAILABLE)
        http_respond_error(call->req, 503, "db_unavailable", "database unavailable: %s", errmsg);
    else
        http_respond_error(call->req, 500, "db_error", "%s", errmsg);
    free(call);
}

/*
 * GET /api/v1/debug/sleep?ms=N[&pad=BYTES]: SELECT pg_sleep through the pool,
 * then an answer with BYTES of padding (tests only).
 */
static void get_debug_sleep(http_req_t *req)
{
    hub_t *hub = http_req_hub(req);
    char ms_text[16];
    if (!hub_config(hub)->debug_routes) {
        http_respond_error(req, 404, "not_found", "debug routes are off");
        return;
    }
    long ms = http_req_query(req, "ms", ms_text, sizeof ms_text) > 0 ? atol(ms_text) : 0;
    long pad = http_req_query(req, "pad", ms_text, sizeof ms_text) > 0 ? atol(ms_text) : 0;
    if (ms < 0 || ms > 60000 || pad < 0 || pad > PAD_MAX) {
        http_respond_error(req, 400, "bad_request", "ms must be 0..60000, pad 0..%d", PAD_MAX);
        return;
    }
    sleep_call_t *call = malloc(sizeof *call);
    if (!call) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    call->req = req;
    call->ms = ms;
    call->pad = (size_t)pad;
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%.3f", (double)ms / 1000.0);
    const char *params[] = {seconds};
    if (pg_pool_query(hub_pool(hub), "SELECT pg_sleep($1::float8)", 1, params, on_slept, call) !=
        0) {
        free(call);
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
    }
}

static void on_discarded(void *arg, int status, PGresult *res, const char *errmsg)
{
    (void)res;
    if (status == PG_OK)
        http_respond_json(arg, 200, json_pack("{s:b}", "discarded", 1));
    else
        http_respond_error(arg, status == PG_EUNAVAILABLE ? 503 : 500, "db_error", "%s", errmsg);
}

/*
 * POST /api/v1/debug/discard: DISCARD ALL through the pool (tests only): the
 * connection that runs it loses its prepared statements (pg_prepared.test.js).
 */
static void post_debug_discard(http_req_t *req)
{
    if (!hub_config(http_req_hub(req))->debug_routes) {
        http_respond_error(req, 404, "not_found", "debug routes are off");
        return;
    }
    if (pg_pool_query(hub_pool(http_req_hub(req)), "DISCARD ALL", 0, NULL, on_discarded, req) != 0)
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
}

static const route_t routes[] = {
    {HTTP_GET, "/api/v1/debug/sleep", ROUTE_PUBLIC, get_debug_sleep},
    {HTTP_POST, "/api/v1/debug/discard", ROUTE_PUBLIC, post_debug_discard},
};

const route_table_t api_debug_routes = {routes, sizeof routes / sizeof routes[0]};
