/*
 * api_player: the player API's gaps of issue 10 item 8, beside api_social.c
 * and api_tickets.c: a public profile, the caller's ledger, deleting one's own
 * account and exporting one's data. One SQL function each
 * (storage/sql/04_social.sql, 02_tickets.sql).
 *
 * A self delete is the admin's soft delete seen from the user: its waiting
 * reservations are cancelled (refunded by rn_reservation_refund), every hub
 * then refuses its token and closes its sockets with 4003 (userstate.h).
 */
#include <string.h>

#include "db_call.h"
#include "http.h"
#include "queue.h"
#include "userstate.h"

#define PROFILE_KEY_MAX 128 /* a uid (users.firebase_uid) or a pseudo */

/* GET /api/v1/users/{id}: {id} is a pseudo, or the uid of oneself or a friend. */
static void get_user(http_req_t *req)
{
    const char *key = http_req_param(req, 0);
    if (!key || !*key || strlen(key) > PROFILE_KEY_MAX) {
        http_respond_error(req, 404, "user_not_found", "no such player");
        return;
    }
    const char *params[] = {db_caller_uid(req), key};
    db_call(req, "SELECT rn_public_profile($1, $2)", 2, params, NULL, NULL);
}

/*
 * db_result_cb: the caller deleted itself: every hub closes its sockets and
 * refuses its token; the arcades whose queues lost its reservations publish
 * their new snapshots.
 */
static void on_self_deleted(http_req_t *req, json_t *result, void *arg)
{
    size_t i;
    json_t *snapshot;
    (void)arg;
    json_int_t status = json_integer_value(json_object_get(result, "status"));
    if (status >= 200 && status < 300) {
        json_array_foreach (json_object_get(result, "arcades"), i, snapshot) {
            if (json_is_object(snapshot))
                queue_publish(http_req_hub(req), snapshot);
        }
        userstate_announce(hub_userstate(http_req_hub(req)), db_caller_uid(req), true);
    }
    db_respond(req, result);
}

/* DELETE /api/v1/users/profile: soft delete of one's own account. */
static void delete_profile(http_req_t *req)
{
    const char *params[] = {db_caller_uid(req)};
    db_call(req, "SELECT rn_user_self_delete($1)", 1, params, on_self_deleted, NULL);
}

/* GET /api/v1/users/profile/export: everything held about the caller. */
static void get_export(http_req_t *req)
{
    const char *params[] = {db_caller_uid(req)};
    db_call(req, "SELECT rn_user_export($1)", 1, params, NULL, NULL);
}

/* GET /api/v1/tickets/ledger?limit&cursor: the caller's ledger, newest first. */
static void get_ledger(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {db_caller_uid(req), limit, cursor};
    db_call(req, "SELECT rn_ledger_list($1, $2::integer, $3::bigint)", 3, params, NULL, NULL);
}

/* After api_social's: its fixed /users/... paths match before {id}. */
static const route_t routes[] = {
    {HTTP_DELETE, "/api/v1/users/profile", ROUTE_USER, delete_profile},
    {HTTP_GET, "/api/v1/users/profile/export", ROUTE_USER, get_export},
    {HTTP_GET, "/api/v1/users/{id}", ROUTE_USER, get_user},
    {HTTP_GET, "/api/v1/tickets/ledger", ROUTE_USER, get_ledger},
};

const route_table_t api_player_routes = {routes, sizeof routes / sizeof routes[0]};
