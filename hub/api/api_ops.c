/*
 * api_ops: the operations routes: liveness, readiness, metrics, the REST
 * description (/openapi.json). The debug routes of the tests are in
 * debug_routes.c, built into test builds only.
 */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "firebase_keys.h"
#include "http.h"
#include "metrics.h"

static void get_healthz(http_req_t *req)
{
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/*
 * 200 while PostgreSQL is reachable and the bus has a path, and we are not
 * draining. The bus's path is Redis or, while Redis is away, PostgreSQL
 * (pg_bus.h): a hub without Redis still serves and pushes through it, so it
 * stays ready. Were it not, a load balancer checking /readyz would take every
 * hub out at once when the shared Redis restarts, and cut every socket.
 */
static void get_readyz(http_req_t *req)
{
    hub_t *hub = http_req_hub(req);
    bool pg = pg_pool_connected(hub_pool(hub)) > 0, redis = bus_is_up(hub_bus(hub));
    bool fallback = !redis && hub_bus_fallback_listening(hub);
    /* Live Firebase keys: not ready before the first key document is loaded. */
    firebase_keys_t *fk = hub_firebase_keys(hub);
    bool keys = !fk || firebase_keys_ready(fk);
    bool ready = pg && (redis || fallback) && keys && !hub_draining(hub);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "status",
                             ready               ? "ready"
                             : hub_draining(hub) ? "draining"
                                                 : "unavailable",
                             "postgres", pg ? "up" : "down", "redis", redis ? "up" : "down", "bus",
                             redis      ? "redis"
                             : fallback ? "postgres"
                                        : "down");
    if (fk)
        json_object_set_new(body, "firebase_keys", json_string(keys ? "loaded" : "none"));
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

static const route_t routes[] = {
    {HTTP_GET, "/healthz", ROUTE_PUBLIC, get_healthz},
    {HTTP_GET, "/readyz", ROUTE_PUBLIC, get_readyz},
    {HTTP_GET, "/metrics", ROUTE_PUBLIC, get_metrics},
    {HTTP_GET, "/openapi.json", ROUTE_PUBLIC, get_openapi},
};

const route_table_t api_ops_routes = {routes, sizeof routes / sizeof routes[0]};
