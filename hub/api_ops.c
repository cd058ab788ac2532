/*
 * api_ops: the operations routes: liveness, readiness, metrics, the REST
 * description (/openapi.json), and the debug routes the tests use (only with
 * --debug-routes).
 */
#include <stdio.h>
#include <stdlib.h>

#include "http.h"
#include "metrics.h"

static void get_healthz(http_req_t *req)
{
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* 200 only while both PostgreSQL and Redis are reachable and we are not draining. */
static void get_readyz(http_req_t *req)
{
    hub_t *hub = http_req_hub(req);
    bool pg = pg_pool_connected(hub_pool(hub)) > 0, redis = bus_is_up(hub_bus(hub));
    bool ready = pg && redis && !hub_draining(hub);
    json_t *body = json_pack("{s:s, s:s, s:s}", "status",
                             ready               ? "ready"
                             : hub_draining(hub) ? "draining"
                                                 : "unavailable",
                             "postgres", pg ? "up" : "down", "redis", redis ? "up" : "down");
    if (!hub_pool(hub)) /* start-up: waiting for PostgreSQL to apply the migrations */
        json_object_set_new(body, "migrations", json_string("pending"));
    http_respond_json(req, ready ? 200 : 503, body);
}

static void get_metrics(http_req_t *req)
{
    hub_t *hub = http_req_hub(req);
    metrics_gauges_t g;
    hub_gauges(hub, &g);
    size_t len;
    char *text = metrics_render(&g, &len);
    if (!text) {
        http_respond_error(req, 500, "internal", "cannot render metrics");
        return;
    }
    http_respond_text(req, 200, "text/plain; version=0.0.4", text, len);
}

#define OPENAPI_MAX (1024 * 1024)

/*
 * GET /openapi.json: protocol/openapi.json, the sibling of the web root in
 * the source tree. Read on each request: a small local file, and an edit
 * shows without a restart.
 */
static void get_openapi(http_req_t *req)
{
    char file[4096];
    snprintf(file, sizeof file, "%s/../protocol/openapi.json",
             hub_config(http_req_hub(req))->web_root);
    FILE *f = fopen(file, "rb");
    if (!f) {
        http_respond_error(req, 404, "not_found", "openapi.json is not installed");
        return;
    }
    char *text = malloc(OPENAPI_MAX);
    size_t len = text ? fread(text, 1, OPENAPI_MAX, f) : 0;
    bool whole = text && !ferror(f) && feof(f);
    fclose(f);
    if (!whole) {
        free(text);
        http_respond_error(req, 500, "internal", "cannot read openapi.json");
        return;
    }
    http_respond_text(req, 200, "application/json", text, len);
}

typedef struct sleep_call {
    http_req_t *req;
    long ms;
} sleep_call_t;

static void on_slept(void *arg, int status, PGresult *res, const char *errmsg)
{
    (void)res;
    sleep_call_t *call = arg;
    if (status == PG_OK)
        http_respond_json(call->req, 200, json_pack("{s:i}", "slept_ms", (int)call->ms));
    else if (status == PG_EUNAVAILABLE)
        http_respond_error(call->req, 503, "db_unavailable", "database unavailable: %s", errmsg);
    else
        http_respond_error(call->req, 500, "db_error", "%s", errmsg);
    free(call);
}

/* GET /api/v1/debug/sleep?ms=N: SELECT pg_sleep through the pool (tests only). */
static void get_debug_sleep(http_req_t *req)
{
    hub_t *hub = http_req_hub(req);
    char ms_text[16];
    if (!hub_config(hub)->debug_routes) {
        http_respond_error(req, 404, "not_found", "debug routes are off");
        return;
    }
    long ms = http_req_query(req, "ms", ms_text, sizeof ms_text) > 0 ? atol(ms_text) : 0;
    if (ms < 0 || ms > 60000) {
        http_respond_error(req, 400, "bad_request", "ms must be 0..60000");
        return;
    }
    sleep_call_t *call = malloc(sizeof *call);
    if (!call) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    call->req = req;
    call->ms = ms;
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%.3f", (double)ms / 1000.0);
    const char *params[] = {seconds};
    if (pg_pool_query(hub_pool(hub), "SELECT pg_sleep($1::float8)", 1, params, on_slept, call) != 0) {
        free(call);
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
    }
}

static const route_t routes[] = {
    {HTTP_GET, "/healthz", ROUTE_PUBLIC, get_healthz},
    {HTTP_GET, "/readyz", ROUTE_PUBLIC, get_readyz},
    {HTTP_GET, "/metrics", ROUTE_PUBLIC, get_metrics},
    {HTTP_GET, "/openapi.json", ROUTE_PUBLIC, get_openapi},
    {HTTP_GET, "/api/v1/debug/sleep", ROUTE_PUBLIC, get_debug_sleep},
};

const route_table_t api_ops_routes = {routes, sizeof routes / sizeof routes[0]};
