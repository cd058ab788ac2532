/*
 * api_catalogue: the operators' edits of the catalogue and the audit log
 * (ROUTE_ADMIN: 401 without a token, 403 without the admin claim).
 *
 * PATCH takes partial JSON (only the fields given change), DELETE retires
 * (soft: nothing a purchase, a reservation or a score points to is removed).
 * Each route is one SQL function of storage/sql/05_admin.sql, called with the
 * acting admin's uid for the audit log (06_audit.sql); what it changed is
 * published by db_call: the arcades' snapshots for the phones, cabinet_config
 * events for the cabinets, the audit entries for the admin stream.
 */
#include <stdio.h>
#include <string.h>

#include "cabinet.h"
#include "db_call.h"
#include "http.h"
#include "router.h"

#define SLOT_MAX 64          /* as rn_admin_arcade_add_game */
#define AUDIT_FILTER_MAX 160 /* the audit_log columns' own bound */

/* Runs "fn(actor, id, body)" with path parameter 0 as the id; 404 not_found_code otherwise. */
static void patch_by_id(http_req_t *req, const char *sql, const char *not_found_code)
{
    long long id = http_req_param_id(req, 0);
    size_t len;
    if (id < 0) {
        http_respond_error(req, 404, not_found_code, "no such id");
        return;
    }
    if (!http_req_json(req))
        return;
    char idt[HTTP_NUM_TEXT];
    snprintf(idt, sizeof idt, "%lld", id);
    const char *params[] = {db_caller_uid(req), idt, http_req_body(req, &len)};
    db_call(req, sql, 3, params, NULL, NULL);
}

/* Runs "fn(actor, id)" with path parameter 0 as the id. */
static void delete_by_id(http_req_t *req, const char *sql, const char *not_found_code,
                         db_result_cb cb)
{
    long long id = http_req_param_id(req, 0);
    if (id < 0) {
        http_respond_error(req, 404, not_found_code, "no such id");
        return;
    }
    char idt[HTTP_NUM_TEXT];
    snprintf(idt, sizeof idt, "%lld", id);
    const char *params[] = {db_caller_uid(req), idt};
    db_call(req, sql, 2, params, cb, NULL);
}

/* ---- arcades ------------------------------------------------------------- */

/* PATCH /api/v1/admin/arcades/{id} {name?, location?} */
static void patch_arcade(http_req_t *req)
{
    patch_by_id(req, "SELECT rn_admin_arcade_update($1, $2::bigint, $3::jsonb)",
                "arcade_not_found");
}

/* db_result_cb: a retired arcade's cabinet sockets close everywhere (its key is refused). */
static void on_arcade_retired(http_req_t *req, json_t *result, void *arg)
{
    (void)arg;
    if (json_integer_value(json_object_get(result, "status")) == 200)
        cabinet_revoke(http_req_hub(req), (long)http_req_param_id(req, 0));
    db_respond(req, result);
}

/* DELETE /api/v1/admin/arcades/{id}: retired; 409 while its queue is not empty. */
static void delete_arcade(http_req_t *req)
{
    delete_by_id(req, "SELECT rn_admin_arcade_retire($1, $2::bigint)", "arcade_not_found",
                 on_arcade_retired);
}

/* ---- games and slots ----------------------------------------------------- */

/* PATCH /api/v1/admin/games/{id} {name?, description?, ticket_cost?, min_players?, ...} */
static void patch_game(http_req_t *req)
{
    patch_by_id(req, "SELECT rn_admin_game_update($1, $2::bigint, $3::jsonb)", "game_not_found");
}

/* DELETE /api/v1/admin/games/{id}: active = false. */
static void delete_game(http_req_t *req)
{
    delete_by_id(req, "SELECT rn_admin_game_retire($1, $2::bigint)", "game_not_found", NULL);
}

/* The arcade and slot of /admin/arcades/{id}/games/{slot}, or -1 after answering 404. */
static int slot_params(http_req_t *req, char arcade[HTTP_NUM_TEXT], char slot[HTTP_NUM_TEXT])
{
    long long a = http_req_param_id(req, 0), s = http_req_param_id(req, 1);
    if (a < 0) {
        http_respond_error(req, 404, "arcade_not_found", "no such arcade");
        return -1;
    }
    if (s < 1 || s > SLOT_MAX) {
        http_respond_error(req, 404, "slot_not_found", "slots are 1 to %d", SLOT_MAX);
        return -1;
    }
    snprintf(arcade, HTTP_NUM_TEXT, "%lld", a);
    snprintf(slot, HTTP_NUM_TEXT, "%lld", s);
    return 0;
}

static const char slot_sql[] =
    "SELECT rn_admin_slot_set($1, $2::bigint, $3::integer, $4::bigint, $5::boolean)";

/* PATCH /api/v1/admin/arcades/{id}/games/{slot} {game_id}: another game in the slot. */
static void patch_slot(http_req_t *req)
{
    char a[HTTP_NUM_TEXT], s[HTTP_NUM_TEXT], g[HTTP_NUM_TEXT];
    if (slot_params(req, a, s) != 0)
        return;
    json_t *body = http_req_json(req);
    if (!body)
        return;
    json_t *game = json_object_get(body, "game_id");
    if (json_object_size(body) != 1 || !json_is_integer(game) || json_integer_value(game) < 1) {
        http_respond_error(req, 400, "bad_request", "expected {\"game_id\": id}");
        return;
    }
    snprintf(g, sizeof g, "%" JSON_INTEGER_FORMAT, json_integer_value(game));
    const char *params[] = {db_caller_uid(req), a, s, g, "false"};
    db_call(req, slot_sql, 5, params, NULL, NULL);
}

/* DELETE /api/v1/admin/arcades/{id}/games/{slot}: the slot emptied. */
static void delete_slot(http_req_t *req)
{
    char a[HTTP_NUM_TEXT], s[HTTP_NUM_TEXT];
    if (slot_params(req, a, s) != 0)
        return;
    const char *params[] = {db_caller_uid(req), a, s, NULL, "true"};
    db_call(req, slot_sql, 5, params, NULL, NULL);
}

/* ---- ticket offers -------------------------------------------------------- */

/* GET /api/v1/admin/offers?limit&cursor: every offer, active or not. */
static void get_offers(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {limit, cursor};
    db_call(req, "SELECT rn_admin_offer_list($1::integer, $2::bigint)", 2, params, NULL, NULL);
}

/* POST /api/v1/admin/offers {name, tickets, price_cents, currency?, active?} */
static void post_offer(http_req_t *req)
{
    size_t len;
    if (!http_req_json(req))
        return;
    const char *params[] = {db_caller_uid(req), NULL, http_req_body(req, &len)};
    db_call(req, "SELECT rn_admin_offer_save($1, $2::bigint, $3::jsonb)", 3, params, NULL, NULL);
}

/* PATCH /api/v1/admin/offers/{id}: any of the fields of POST. */
static void patch_offer(http_req_t *req)
{
    patch_by_id(req, "SELECT rn_admin_offer_save($1, $2::bigint, $3::jsonb)", "offer_not_found");
}

/* DELETE /api/v1/admin/offers/{id}: deactivated (PATCH {"active": true} brings it back). */
static void delete_offer(http_req_t *req)
{
    delete_by_id(req, "SELECT rn_admin_offer_save($1, $2::bigint, '{\"active\": false}')",
                 "offer_not_found", NULL);
}

/* ---- promo codes ----------------------------------------------------------- */

/* PATCH /api/v1/admin/promo-codes/{id} {tickets?, max_uses?, valid_from?, valid_until?, active?} */
static void patch_promo(http_req_t *req)
{
    patch_by_id(req, "SELECT rn_admin_promo_update($1, $2::bigint, $3::jsonb)",
                "promo_code_not_found");
}

/* DELETE /api/v1/admin/promo-codes/{id}: deactivated; its uses stay. */
static void delete_promo(http_req_t *req)
{
    delete_by_id(req, "SELECT rn_admin_promo_update($1, $2::bigint, '{\"active\": false}')",
                 "promo_code_not_found", NULL);
}

/* ---- audit log ------------------------------------------------------------- */

/*
 * Reads an optional text filter of at most AUDIT_FILTER_MAX bytes into out
 * (NULL *value when absent or empty). -1 after answering 400.
 */
static int audit_filter(http_req_t *req, const char *name, char *out, size_t outlen,
                        const char **value)
{
    int n = http_req_query(req, name, out, outlen);
    *value = n > 0 ? out : NULL;
    if (n > AUDIT_FILTER_MAX || (n > 0 && !router_utf8_valid(out, (size_t)n))) {
        http_respond_error(req, 400, "bad_request", "%s: at most %d bytes of UTF-8", name,
                           AUDIT_FILTER_MAX);
        return -1;
    }
    return 0;
}

/* GET /api/v1/admin/audit?actor&action&target_type&target_id&from&to&limit&cursor */
static void get_audit(http_req_t *req)
{
    static const char *const names[] = {"actor",     "action", "target_type",
                                        "target_id", "from",   "to"};
    enum { NFILTERS = sizeof names / sizeof names[0] };
    char buf[NFILTERS][1024], limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *params[NFILTERS + 2], *cursor;
    for (int i = 0; i < NFILTERS; i++) {
        if (audit_filter(req, names[i], buf[i], sizeof buf[i], &params[i]) != 0)
            return;
    }
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    params[NFILTERS] = limit;
    params[NFILTERS + 1] = cursor;
    db_call(req, "SELECT rn_admin_audit_list($1, $2, $3, $4, $5, $6, $7::integer, $8::bigint)",
            NFILTERS + 2, params, NULL, NULL);
}

static const route_t routes[] = {
    {HTTP_PATCH, "/api/v1/admin/arcades/{id}", ROUTE_ADMIN, patch_arcade},
    {HTTP_DELETE, "/api/v1/admin/arcades/{id}", ROUTE_ADMIN, delete_arcade},
    {HTTP_PATCH, "/api/v1/admin/games/{id}", ROUTE_ADMIN, patch_game},
    {HTTP_DELETE, "/api/v1/admin/games/{id}", ROUTE_ADMIN, delete_game},
    {HTTP_PATCH, "/api/v1/admin/arcades/{id}/games/{slot}", ROUTE_ADMIN, patch_slot},
    {HTTP_DELETE, "/api/v1/admin/arcades/{id}/games/{slot}", ROUTE_ADMIN, delete_slot},
    {HTTP_GET, "/api/v1/admin/offers", ROUTE_ADMIN, get_offers},
    {HTTP_POST, "/api/v1/admin/offers", ROUTE_ADMIN, post_offer},
    {HTTP_PATCH, "/api/v1/admin/offers/{id}", ROUTE_ADMIN, patch_offer},
    {HTTP_DELETE, "/api/v1/admin/offers/{id}", ROUTE_ADMIN, delete_offer},
    {HTTP_PATCH, "/api/v1/admin/promo-codes/{id}", ROUTE_ADMIN, patch_promo},
    {HTTP_DELETE, "/api/v1/admin/promo-codes/{id}", ROUTE_ADMIN, delete_promo},
    {HTTP_GET, "/api/v1/admin/audit", ROUTE_ADMIN, get_audit},
};

const route_table_t api_catalogue_routes = {routes, sizeof routes / sizeof routes[0]};
