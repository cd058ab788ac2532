/*
 * api_admin: the admin routes (ROUTE_ADMIN: 401 without a token, 403 without
 * the admin claim): promo codes, ticket adjustments, games, arcades and their
 * cabinet API keys, arcade slots. SQL in storage/sql/05_admin.sql.
 *
 * Cabinet API keys are made here (apikey_generate) and shown once, in the
 * answer that created or rotated them; only their SHA-256 reaches the
 * database. A new arcade takes its id from the arcades sequence first, so the
 * row is born with its key's hash: there is never an arcade without a key,
 * nor a key sent to PostgreSQL.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "apikey.h"
#include "cabinet.h"
#include "db_call.h"
#include "events.h"
#include "http.h"
#include "log.h"

/* Runs fn(actor text, body jsonb) with the admin's uid and the request's raw body. */
static void call_with_body(http_req_t *req, const char *sql)
{
    size_t len;
    if (!http_req_json(req))
        return;
    const char *params[] = {db_caller_uid(req), http_req_body(req, &len)};
    db_call(req, sql, 2, params, NULL, NULL);
}

/* ---- promo codes ------------------------------------------------------- */

/* POST /api/v1/admin/promo-codes {code, tickets, max_uses?, valid_from?, valid_until?, active?} */
static void post_promo_code(http_req_t *req)
{
    call_with_body(req, "SELECT rn_admin_promo_create($1, $2::jsonb)");
}

/* GET /api/v1/admin/promo-codes?limit&cursor: with their use counts. */
static void get_promo_codes(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {limit, cursor};
    db_call(req, "SELECT rn_admin_promo_list($1::integer, $2::bigint)", 2, params, NULL, NULL);
}

/* ---- ticket adjustments ------------------------------------------------- */

/*
 * PUT /api/v1/admin/users/{uid}/tickets {delta, reason}: one 'adjustment'
 * ledger row; below zero is 409. Idempotency-Key optional (scoped to the
 * admin's own profile).
 */
static void put_user_tickets(http_req_t *req)
{
    json_t *body = http_req_json(req);
    if (!body)
        return;
    json_t *delta = json_object_get(body, "delta");
    const char *reason = json_string_value(json_object_get(body, "reason"));
    if (!json_is_integer(delta) || json_integer_value(delta) < -2000000000 ||
        json_integer_value(delta) > 2000000000 || !reason) {
        http_respond_error(req, 400, "bad_request",
                           "expected {\"delta\": integer, \"reason\": string}");
        return;
    }
    char hash[65], delta_text[HTTP_NUM_TEXT];
    http_req_hash(req, hash);
    snprintf(delta_text, sizeof delta_text, "%" JSON_INTEGER_FORMAT, json_integer_value(delta));
    const char *params[] = {db_caller_uid(req),
                            http_req_idempotency_key(req),
                            hash,
                            http_req_param(req, 0),
                            delta_text,
                            reason};
    db_call(req, "SELECT rn_admin_adjust_tickets($1, $2, $3, $4, $5::integer, $6)", 6, params, NULL,
            NULL);
}

/* ---- catalogue ---------------------------------------------------------- */

/* POST /api/v1/admin/games {name, ticket_cost, description?, min_players?, max_players?} */
static void post_game(http_req_t *req)
{
    call_with_body(req, "SELECT rn_admin_game_create($1, $2::jsonb)");
}

/* POST /api/v1/admin/arcades/{id}/games {game_id, slot} */
static void post_arcade_game(http_req_t *req)
{
    long long arcade = http_req_param_id(req, 0);
    json_t *body = http_req_json(req);
    if (!body)
        return;
    json_t *game = json_object_get(body, "game_id"), *slot = json_object_get(body, "slot");
    if (arcade < 0) {
        http_respond_error(req, 404, "arcade_not_found", "no such arcade");
        return;
    }
    if (!json_is_integer(game) || json_integer_value(game) < 1 || !json_is_integer(slot) ||
        json_integer_value(slot) < 1 || json_integer_value(slot) > 1000) {
        http_respond_error(req, 400, "bad_request", "expected {\"game_id\": id, \"slot\": 1..}");
        return;
    }
    char a[HTTP_NUM_TEXT], g[HTTP_NUM_TEXT], s[HTTP_NUM_TEXT];
    snprintf(a, sizeof a, "%lld", arcade);
    snprintf(g, sizeof g, "%" JSON_INTEGER_FORMAT, json_integer_value(game));
    snprintf(s, sizeof s, "%" JSON_INTEGER_FORMAT, json_integer_value(slot));
    const char *params[] = {db_caller_uid(req), a, g, s};
    db_call(req, "SELECT rn_admin_arcade_add_game($1, $2::bigint, $3::bigint, $4::integer)", 4,
            params, NULL, NULL);
}

/* ---- arcades and their keys ---------------------------------------------- */

/* One key-making request: the key lives here, and is wiped when it is answered. */
typedef struct key_call {
    http_req_t *req;
    long revoke_arcade; /* a rotation: the cabinets still on the old key go */
    char key[APIKEY_MAX];
    char hash[APIKEY_HASH_HEX];
} key_call_t;

static void key_call_free(key_call_t *kc)
{
    OPENSSL_cleanse(kc->key, sizeof kc->key);
    free(kc);
}

/* Answers a key-making SQL function's result, adding the key to a 2xx body. */
static void on_key_answer(void *arg, int status, PGresult *res, const char *errmsg)
{
    key_call_t *kc = arg;
    http_req_t *req = kc->req;
    json_t *result = NULL;
    if (status == PG_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        result = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL);
    json_int_t code = json_integer_value(json_object_get(result, "status"));
    json_t *body = json_object_get(result, "body");
    if (status == PG_EUNAVAILABLE) {
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
    } else if (!json_is_object(body) || code < 200 || code > 599) {
        log_error("arcade key call failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        http_respond_error(req, 500, "internal", "the request could not be completed");
    } else {
        if (code < 300)
            json_object_set_new(body, "api_key", json_string(kc->key));
        db_publish(http_req_hub(req), result);
        if (code < 300 && kc->revoke_arcade)
            cabinet_revoke(http_req_hub(req), kc->revoke_arcade);
        db_respond(req, result);
    }
    json_decref(result);
    key_call_free(kc);
}

static void key_query(key_call_t *kc, const char *sql, int n, const char *const *params)
{
    if (pg_pool_query(hub_pool(http_req_hub(kc->req)), sql, n, params, on_key_answer, kc) != 0) {
        http_respond_error(kc->req, 503, "db_unavailable", "database unavailable");
        key_call_free(kc);
    }
}

/* The arcade id is taken: make its key, then create the row with the key's hash. */
static void on_arcade_id(void *arg, int status, PGresult *res, const char *errmsg)
{
    key_call_t *kc = arg;
    (void)errmsg;
    long id = status == PG_OK && PQntuples(res) == 1 ? atol(PQgetvalue(res, 0, 0)) : 0;
    if (id <= 0 || apikey_generate(id, kc->key, sizeof kc->key) != 0) {
        http_respond_error(kc->req, status == PG_EUNAVAILABLE ? 503 : 500,
                           status == PG_EUNAVAILABLE ? "db_unavailable" : "internal",
                           "cannot create the arcade now");
        key_call_free(kc);
        return;
    }
    apikey_hash_hex(kc->key, kc->hash);
    char idtext[HTTP_NUM_TEXT];
    size_t len;
    snprintf(idtext, sizeof idtext, "%ld", id);
    const char *params[] = {db_caller_uid(kc->req), idtext, kc->hash, http_req_body(kc->req, &len)};
    key_query(kc, "SELECT rn_admin_arcade_create($1, $2::bigint, $3, $4::jsonb)::text", 4, params);
}

/* POST /api/v1/admin/arcades {name, location?}: 201 with "api_key", shown this once. */
static void post_arcade(http_req_t *req)
{
    if (!http_req_json(req))
        return;
    key_call_t *kc = calloc(1, sizeof *kc);
    if (!kc) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    kc->req = req;
    if (pg_pool_query(hub_pool(http_req_hub(req)),
                      "SELECT nextval(pg_get_serial_sequence('arcades', 'id'))", 0, NULL,
                      on_arcade_id, kc) != 0) {
        http_respond_error(req, 503, "db_unavailable", "database unavailable");
        key_call_free(kc);
    }
}

/* POST /api/v1/admin/arcades/{id}/rotate-key: a new key; the old one stops working. */
static void post_rotate_key(http_req_t *req)
{
    long long id = http_req_param_id(req, 0);
    if (id < 0) {
        http_respond_error(req, 404, "arcade_not_found", "no such arcade");
        return;
    }
    key_call_t *kc = calloc(1, sizeof *kc);
    if (!kc || apikey_generate((long)id, kc->key, sizeof kc->key) != 0) {
        http_respond_error(req, 500, "internal", "cannot make a key");
        free(kc);
        return;
    }
    kc->req = req;
    kc->revoke_arcade = (long)id;
    apikey_hash_hex(kc->key, kc->hash);
    char idtext[HTTP_NUM_TEXT];
    snprintf(idtext, sizeof idtext, "%lld", id);
    const char *params[] = {db_caller_uid(req), idtext, kc->hash};
    key_query(kc, "SELECT rn_admin_arcade_rotate_key($1, $2::bigint, $3)::text", 3, params);
}

static const route_t routes[] = {
    {HTTP_POST, "/api/v1/admin/promo-codes", ROUTE_ADMIN, post_promo_code},
    {HTTP_GET, "/api/v1/admin/promo-codes", ROUTE_ADMIN, get_promo_codes},
    {HTTP_PUT, "/api/v1/admin/users/{id}/tickets", ROUTE_ADMIN, put_user_tickets},
    {HTTP_POST, "/api/v1/admin/games", ROUTE_ADMIN, post_game},
    {HTTP_POST, "/api/v1/admin/arcades", ROUTE_ADMIN, post_arcade},
    {HTTP_POST, "/api/v1/admin/arcades/{id}/games", ROUTE_ADMIN, post_arcade_game},
    {HTTP_POST, "/api/v1/admin/arcades/{id}/rotate-key", ROUTE_ADMIN, post_rotate_key},
};

const route_table_t api_admin_routes = {routes, sizeof routes / sizeof routes[0]};
