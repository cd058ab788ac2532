/*
 * api_queue: the REST routes of the queues and the catalogue: reservations
 * (reserve, cancel, mine, one), arcades (list, one, public queue) and games.
 *
 * Each handler checks what it was given (400 for a malformed body or query,
 * 404 for a path id that is not one) and runs one SQL function of
 * storage/sql/03_queue.sql through db_call(), which answers and
 * publishes what the transaction committed (db_call.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "db_call.h"
#include "http.h"

static void id_text(long long id, char out[HTTP_NUM_TEXT])
{
    snprintf(out, HTTP_NUM_TEXT, "%lld", id);
}

/* An id field of a JSON object: a positive integer up to 2^53, or -1. */
static long long json_id(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return -1;
    json_int_t id = json_integer_value(v);
    return id >= 1 && id <= (1LL << 53) ? (long long)id : -1;
}

/*
 * POST /api/v1/reservations {arcade_id, game_id, player2_id?}: player2_id is
 * the friend's uid. Idempotency-Key optional; with http_req_hash (SHA-256 of
 * method, path and body bytes) the same key with another body is refused (422).
 */
static void post_reservation(http_req_t *req)
{
    json_t *body = http_req_json(req);
    if (!body)
        return;
    long long arcade_id = json_id(body, "arcade_id"), game_id = json_id(body, "game_id");
    if (arcade_id < 0 || game_id < 0) {
        http_respond_error(req, 400, "bad_request",
                           "arcade_id and game_id must be positive integers");
        return;
    }
    const json_t *p2 = json_object_get(body, "player2_id");
    const char *player2 = NULL;
    if (p2 && !json_is_null(p2)) {
        player2 = json_string_value(p2);
        if (!player2 || !*player2 || strlen(player2) > AUTH_UID_MAX) {
            http_respond_error(req, 400, "bad_request",
                               "player2_id must be a user id (a string of 1 to %d bytes)",
                               AUTH_UID_MAX);
            return;
        }
    }
    char hash[65];
    http_req_hash(req, hash);
    char arcade[HTTP_NUM_TEXT], game[HTTP_NUM_TEXT], deadline[16];
    id_text(arcade_id, arcade);
    id_text(game_id, game);
    snprintf(deadline, sizeof deadline, "%d", hub_config(http_req_hub(req))->call_deadline_s);
    const char *params[] = {
        db_caller_uid(req), arcade, game, player2, http_req_idempotency_key(req), hash, deadline};
    db_call(req, "SELECT rn_reserve($1, $2::bigint, $3::bigint, $4, $5, $6, $7::integer)", 7,
            params, NULL, NULL);
}

/*
 * GET /api/v1/reservations/my?limit=1..100&cursor=<id>: newest first. The
 * buffers hold any query value, so -1 from http_req_query means absent (or a
 * bad %-escape).
 */
static void get_my_reservations(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {db_caller_uid(req), limit, cursor};
    db_call(req, "SELECT rn_reservations_my($1, $2::integer, $3::bigint)", 3, params, NULL, NULL);
}

/* Runs "SELECT fn($1::bigint)" with path id 0 (404 when not an id). */
static void call_with_id(http_req_t *req, const char *sql)
{
    long long id = http_req_param_id(req, 0);
    if (id < 0) {
        http_respond_error(req, 404, "not_found", "no such resource");
        return;
    }
    char idt[HTTP_NUM_TEXT];
    id_text(id, idt);
    const char *params[] = {idt};
    db_call(req, sql, 1, params, NULL, NULL);
}

/* GET /api/v1/reservations/{id}: its players only. */
static void get_reservation(http_req_t *req)
{
    db_call_uid_id(req, "SELECT rn_reservation_get($1, $2::bigint)", "not_found",
                   "no such resource");
}

/* DELETE /api/v1/reservations/{id}: the booker cancels while waiting (refund). */
static void delete_reservation(http_req_t *req)
{
    db_call_uid_id(req, "SELECT rn_cancel($1, $2::bigint)", "not_found", "no such resource");
}

static void get_arcades(http_req_t *req)
{
    db_call(req, "SELECT rn_arcades_list()", 0, NULL, NULL, NULL);
}

static void get_arcade(http_req_t *req)
{
    call_with_id(req, "SELECT rn_arcade_get($1::bigint)");
}

/*
 * GET /api/v1/arcades/{id}/queue: the public snapshot, read from PostgreSQL
 * (the view held in memory is current only while someone here subscribes).
 */
static void get_arcade_queue(http_req_t *req)
{
    call_with_id(req, "SELECT rn_arcade_queue($1::bigint)");
}

static void get_games(http_req_t *req)
{
    db_call(req, "SELECT rn_games_list()", 0, NULL, NULL, NULL);
}

static void get_game(http_req_t *req)
{
    call_with_id(req, "SELECT rn_game_get($1::bigint)");
}

/* Matched in order: /reservations/my before /reservations/{id}. */
static const route_t routes[] = {
    {HTTP_POST, "/api/v1/reservations", ROUTE_USER, post_reservation},
    {HTTP_GET, "/api/v1/reservations/my", ROUTE_USER, get_my_reservations},
    {HTTP_GET, "/api/v1/reservations/{id}", ROUTE_USER, get_reservation},
    {HTTP_DELETE, "/api/v1/reservations/{id}", ROUTE_USER, delete_reservation},
    {HTTP_GET, "/api/v1/arcades", ROUTE_PUBLIC, get_arcades},
    {HTTP_GET, "/api/v1/arcades/{id}", ROUTE_PUBLIC, get_arcade},
    {HTTP_GET, "/api/v1/arcades/{id}/queue", ROUTE_PUBLIC, get_arcade_queue},
    {HTTP_GET, "/api/v1/games", ROUTE_PUBLIC, get_games},
    {HTTP_GET, "/api/v1/games/{id}", ROUTE_PUBLIC, get_game},
};

const route_table_t api_queue_routes = {routes, sizeof routes / sizeof routes[0]};
