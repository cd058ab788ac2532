/*
 * api_cabinet_config: GET /api/v1/arcades/{id}/config, the configuration a
 * cabinet runs with (rn_cabinet_config, storage/sql/05_admin.sql), for the
 * cabinet itself: authenticated with its API key in an X-Api-Key header (the
 * Authorization header is for user tokens). The same object reaches the
 * cabinet's socket as `cabinet_config` when it connects and on every
 * catalogue change.
 *
 * As on the socket (session.c), each attempt first takes a token from the
 * client IP's budget of failed cabinet keys (LIMIT_CABINET_KEY), and a right
 * key gives it back: past the limit the answer is 429 before any query.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "guard.h"
#include "http.h"
#include "log.h"
#include "ratelimit.h"

#define API_KEY_HEADER "x-api-key:"

/* One request: its key lives here and is wiped when the request is answered. */
typedef struct config_call {
    http_req_t *req;
    long arcade_id;
    char key[APIKEY_MAX];
} config_call_t;

static void config_call_free(config_call_t *cc)
{
    OPENSSL_cleanse(cc->key, sizeof cc->key);
    free(cc);
}

static void refund(http_req_t *req)
{
    ratelimit_refund(hub_ratelimit(http_req_hub(req)), LIMIT_CABINET_KEY, http_req_client_ip(req));
}

/* The arcade's row: hash, retired, config. The key is compared in constant time. */
static void on_config_row(void *arg, int status, PGresult *res, const char *errmsg)
{
    config_call_t *cc = arg;
    http_req_t *req = cc->req;
    if (status != PG_OK) {
        refund(req); /* not the client's failure */
        if (status != PG_EUNAVAILABLE)
            log_error("cabinet config query failed",
                      json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
    } else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
               !apikey_matches(cc->key, PQgetvalue(res, 0, 0))) {
        http_respond_error(req, 401, "invalid_api_key", "unknown or revoked API key");
    } else if (!strcmp(PQgetvalue(res, 0, 1), "t")) {
        refund(req);
        http_respond_error(req, 410, "arcade_retired", "this arcade was retired");
    } else {
        refund(req);
        json_t *config = json_loadb(PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2), 0, NULL);
        if (config)
            http_respond_json(req, 200, json_pack("{s:o}", "config", config));
        else
            http_respond_error(req, 500, "internal", "malformed database answer");
    }
    config_call_free(cc);
}

/* ratelimit_cb: the client IP's budget of failed keys had a token (the attempt takes it). */
static void on_admitted(void *arg, int allowed, unsigned retry_after_ms)
{
    config_call_t *cc = arg;
    http_req_t *req = cc->req;
    long key_arcade;
    if (!allowed) {
        guard_respond_limited(req, retry_after_ms);
        config_call_free(cc);
        return;
    }
    if (apikey_arcade_id(cc->key, &key_arcade) != 0 || key_arcade != cc->arcade_id) {
        http_respond_error(req, 401, "invalid_api_key", "not an API key of this arcade");
        config_call_free(cc);
        return;
    }
    char idt[HTTP_NUM_TEXT];
    snprintf(idt, sizeof idt, "%ld", cc->arcade_id);
    const char *params[] = {idt};
    if (pg_pool_query(hub_pool(http_req_hub(req)),
                      "SELECT api_key_hash, deleted_at IS NOT NULL, rn_cabinet_config(id)::text"
                      " FROM arcades WHERE id = $1::bigint",
                      1, params, on_config_row, cc) != 0) {
        refund(req);
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
        config_call_free(cc);
    }
}

/* GET /api/v1/arcades/{id}/config with X-Api-Key: <the arcade's key>. */
static void get_config(http_req_t *req)
{
    long long id = http_req_param_id(req, 0);
    if (id < 0) {
        http_respond_error(req, 404, "arcade_not_found", "no such arcade");
        return;
    }
    config_call_t *cc = calloc(1, sizeof *cc);
    if (!cc) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    cc->req = req;
    cc->arcade_id = (long)id;
    if (http_req_header(req, API_KEY_HEADER, cc->key, sizeof cc->key) <= 0) {
        http_respond_error(req, 401, "missing_api_key",
                           "expected the arcade's API key in an X-Api-Key header");
        config_call_free(cc);
        return;
    }
    rl_key_t k = {LIMIT_CABINET_KEY, http_req_client_ip(req)};
    ratelimit_take(hub_ratelimit(http_req_hub(req)), &k, 1, on_admitted, cc);
}

static const route_t routes[] = {
    {HTTP_GET, "/api/v1/arcades/{id}/config", ROUTE_PUBLIC, get_config},
};

const route_table_t api_cabinet_config_routes = {routes, sizeof routes / sizeof routes[0]};
