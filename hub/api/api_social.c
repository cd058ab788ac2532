/*
 * api_social: the REST routes between players: friends and friend requests,
 * player search, one's own profile, scores (leaderboards, one's stats), and
 * the admin's soft delete and restore of users.
 *
 * Each handler checks the shape of what it was given (400; 404 for a path
 * id that is not one) and runs one SQL function of
 * storage/sql/04_social.sql through db_call(), which answers and
 * publishes the committed events (friend_request, friend_accepted,
 * friend_removed; for a deleted user's cancelled reservations the queue's
 * own). The friendship rules are written down at the top of 04_social.sql.
 *
 * The caller is the token's uid; only the admin routes name another user,
 * by uid in the path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "datearg.h"
#include "db_call.h"
#include "http.h"
#include "queue.h"
#include "userstate.h"

#define PSEUDO_MAX 64 /* users.pseudo */
#define QUERY_TEXT 72 /* a query value: a pseudo (prefix) or a period */
#define SEARCH_MIN 2
#define SEARCH_MAX 32
#define SEARCH_LIMIT_MAX 20

/* ---- shared helpers ------------------------------------------------------ */

/* Runs "SELECT fn($1, $2::bigint)" with the caller's uid and the friendship id of the path. */
static void call_with_uid_and_id(http_req_t *req, const char *sql)
{
    db_call_uid_id(req, sql, "friendship_not_found", "no such friend or request");
}

/* Runs "SELECT fn($1, $2)" with the admin's uid and the uid of the path; cb as db_call's. */
static void call_with_admin_and_uid(http_req_t *req, const char *sql, db_result_cb cb)
{
    const char *uid = http_req_param(req, 0);
    if (!uid || strlen(uid) > AUTH_UID_MAX) {
        http_respond_error(req, 404, "user_not_found", "no such user");
        return;
    }
    const char *params[] = {db_caller_uid(req), uid};
    db_call(req, sql, 2, params, cb, NULL);
}

/* ---- friends --------------------------------------------------------------- */

/* GET /api/v1/friends?limit&cursor: accepted friends (uid and pseudo), newest first. */
static void get_friends(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {db_caller_uid(req), limit, cursor};
    db_call(req, "SELECT rn_friends_list($1, $2::integer, $3::bigint)", 3, params, NULL, NULL);
}

/* POST /api/v1/friends/request {"pseudo": "..."} or {"uid": "..."} */
static void post_friend_request(http_req_t *req)
{
    json_t *body = http_req_json(req);
    if (!body)
        return;
    const json_t *pseudo = json_object_get(body, "pseudo"), *uid = json_object_get(body, "uid");
    const json_t *given = pseudo ? pseudo : uid;
    size_t max = pseudo ? PSEUDO_MAX : AUTH_UID_MAX;
    if (!pseudo == !uid || !json_is_string(given) || json_string_length(given) == 0 ||
        json_string_length(given) > max) {
        http_respond_error(req, 400, "bad_request",
                           "expected {\"pseudo\": \"...\"} or {\"uid\": \"...\"}");
        return;
    }
    const char *params[] = {db_caller_uid(req), json_string_value(uid), json_string_value(pseudo)};
    db_call(req, "SELECT rn_friend_request($1, $2, $3)", 3, params, NULL, NULL);
}

/* GET /api/v1/friends/requests?direction=incoming|outgoing&limit&cursor: pending ones. */
static void get_friend_requests(http_req_t *req)
{
    char direction[QUERY_TEXT], limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor, *dir = NULL;
    if (http_req_query(req, "direction", direction, sizeof direction) >= 0) {
        if (strcmp(direction, "incoming") != 0 && strcmp(direction, "outgoing") != 0) {
            http_respond_error(req, 400, "bad_request",
                               "direction must be \"incoming\" or \"outgoing\"");
            return;
        }
        dir = direction;
    }
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {db_caller_uid(req), dir, limit, cursor};
    db_call(req, "SELECT rn_friend_requests($1, $2, $3::integer, $4::bigint)", 4, params, NULL,
            NULL);
}

/* POST /api/v1/friends/accept/{id}: {id} is the friendship id; the addressee only. */
static void post_friend_accept(http_req_t *req)
{
    call_with_uid_and_id(req, "SELECT rn_friend_accept($1, $2::bigint)");
}

/* POST /api/v1/friends/reject/{id}: the addressee only. */
static void post_friend_reject(http_req_t *req)
{
    call_with_uid_and_id(req, "SELECT rn_friend_reject($1, $2::bigint)");
}

/* DELETE /api/v1/friends/{id}: {id} is the friendship id; either side. */
static void delete_friend(http_req_t *req)
{
    call_with_uid_and_id(req, "SELECT rn_friend_delete($1, $2::bigint)");
}

/* ---- users ------------------------------------------------------------------ */

/*
 * GET /api/v1/users/search?q=<pseudo prefix>&limit=1..20&cursor: live
 * players by pseudo; the cursor is the previous page's next_cursor (a pseudo).
 */
static void get_user_search(http_req_t *req)
{
    char q[QUERY_TEXT], limit[HTTP_NUM_TEXT], cursor[QUERY_TEXT];
    int n = http_req_query(req, "q", q, sizeof q);
    if (n < SEARCH_MIN || n > SEARCH_MAX) {
        http_respond_error(req, 400, "bad_request",
                           "q must be the start of a pseudo, %d to %d characters", SEARCH_MIN,
                           SEARCH_MAX);
        return;
    }
    if (http_req_limit(req, SEARCH_LIMIT_MAX, limit) != 0)
        return;
    n = http_req_query(req, "cursor", cursor, sizeof cursor);
    if (n == 0 || n > PSEUDO_MAX) {
        http_respond_error(req, 400, "bad_request", "cursor must be a next_cursor value");
        return;
    }
    const char *params[] = {db_caller_uid(req), q, limit, n > 0 ? cursor : NULL};
    db_call(req, "SELECT rn_users_search($1, $2, $3::integer, $4)", 4, params, NULL, NULL);
}

static void get_profile(http_req_t *req)
{
    const char *params[] = {db_caller_uid(req)};
    db_call(req, "SELECT rn_profile_get($1)", 1, params, NULL, NULL);
}

/* PUT /api/v1/users/profile {first_name?, last_name?, phone?, pseudo?} */
static void put_profile(http_req_t *req)
{
    size_t len;
    if (!http_req_json(req))
        return;
    const char *params[] = {db_caller_uid(req), http_req_body(req, &len)};
    db_call(req, "SELECT rn_profile_update($1, $2::jsonb)", 2, params, NULL, NULL);
}

/* ---- scores ------------------------------------------------------------------ */

/*
 * GET /api/v1/scores?game_id=&arcade_id=&friends=1&period=day|week|month|all
 * &from=&to=&limit=&cursor=: public; friends=1 needs a token. The cursor is an offset.
 */
static void get_scores(http_req_t *req)
{
    char game_text[HTTP_NUM_TEXT], arcade_text[HTTP_NUM_TEXT], offset_text[HTTP_NUM_TEXT],
        limit[HTTP_NUM_TEXT];
    char friends[QUERY_TEXT], period[QUERY_TEXT];
    const char *game, *arcade, *offset;
    if (http_req_query_id(req, "game_id", game_text, &game) ||
        http_req_query_id(req, "arcade_id", arcade_text, &arcade) ||
        http_req_limit(req, HTTP_PAGE_MAX, limit) ||
        http_req_query_id(req, "cursor", offset_text, &offset))
        return;
    if (!game) {
        http_respond_error(req, 400, "bad_request", "game_id is required");
        return;
    }
    bool only_friends = false;
    if (http_req_query(req, "friends", friends, sizeof friends) >= 0) {
        only_friends = !strcmp(friends, "1") || !strcmp(friends, "true");
        if (!only_friends && strcmp(friends, "0") != 0 && strcmp(friends, "false") != 0) {
            http_respond_error(req, 400, "bad_request", "friends must be 1 or 0");
            return;
        }
    }
    if (only_friends && !http_req_identity(req)) {
        http_respond_error(req, 401, "unauthenticated", "friends=1 needs a bearer token");
        return;
    }
    int n = http_req_query(req, "period", period, sizeof period);
    if (n >= 0 && strcmp(period, "day") != 0 && strcmp(period, "week") != 0 &&
        strcmp(period, "month") != 0 && strcmp(period, "all") != 0) {
        http_respond_error(req, 400, "bad_request", "period must be day, week, month or all");
        return;
    }
    char from_text[DATEARG_TEXT], to_text[DATEARG_TEXT];
    const char *from, *to;
    if (datearg_query(req, "from", from_text, &from) || datearg_query(req, "to", to_text, &to))
        return;
    const char *params[] = {db_caller_uid(req),
                            game,
                            arcade,
                            only_friends ? "true" : "false",
                            n >= 0 ? period : NULL,
                            limit,
                            offset ? offset : "0",
                            from,
                            to};
    /* from and to are days (UTC), both included */
    db_call(req,
            "SELECT rn_leaderboard($1, $2::bigint, $3::bigint, $4::boolean, $5, $6::integer, "
            "$7::bigint, $8::date::timestamp AT TIME ZONE 'UTC', "
            "($9::date + 1)::timestamp AT TIME ZONE 'UTC')",
            9, params, NULL, NULL);
}

static void get_my_stats(http_req_t *req)
{
    const char *params[] = {db_caller_uid(req)};
    db_call(req, "SELECT rn_my_stats($1)", 1, params, NULL, NULL);
}

/* ---- admin: users ------------------------------------------------------------- */

/*
 * db_result_cb: a deleted user's waiting reservations were cancelled, perhaps
 * on several arcades: publishes each arcade's new snapshot, then answers.
 */
static void publish_arcades(http_req_t *req, json_t *result, void *arg)
{
    size_t i;
    json_t *snapshot;
    (void)arg;
    json_array_foreach (json_object_get(result, "arcades"), i, snapshot) {
        if (json_is_object(snapshot))
            queue_publish(http_req_hub(req), snapshot);
    }
    db_respond(req, result);
}

/*
 * db_result_cb: the user is deleted: every hub refuses its token and closes
 * its sockets with 4003 from now on (userstate.h); then as publish_arcades.
 */
static void on_user_deleted(http_req_t *req, json_t *result, void *arg)
{
    json_int_t status = json_integer_value(json_object_get(result, "status"));
    if (status >= 200 && status < 300)
        userstate_announce(hub_userstate(http_req_hub(req)), http_req_param(req, 0), true);
    publish_arcades(req, result, arg);
}

/* db_result_cb: the user is back: every hub accepts its token again. */
static void on_user_restored(http_req_t *req, json_t *result, void *arg)
{
    json_int_t status = json_integer_value(json_object_get(result, "status"));
    (void)arg;
    if (status >= 200 && status < 300)
        userstate_announce(hub_userstate(http_req_hub(req)), http_req_param(req, 0), false);
    db_respond(req, result);
}

/* DELETE /api/v1/admin/users/{id} ({id}: the uid): soft delete; refunds waiting reservations. */
static void delete_user(http_req_t *req)
{
    call_with_admin_and_uid(req, "SELECT rn_admin_user_delete($1, $2)", on_user_deleted);
}

/* POST /api/v1/admin/users/{id}/restore ({id}: the uid) */
static void post_user_restore(http_req_t *req)
{
    call_with_admin_and_uid(req, "SELECT rn_admin_user_restore($1, $2)", on_user_restored);
}

/* GET /api/v1/admin/users/deleted?limit&cursor */
static void get_deleted_users(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {limit, cursor};
    db_call(req, "SELECT rn_admin_users_deleted($1::integer, $2::bigint)", 2, params, NULL, NULL);
}

/* Matched in order: the fixed paths before the {id} ones of the same shape. */
static const route_t routes[] = {
    {HTTP_GET, "/api/v1/friends", ROUTE_USER, get_friends},
    {HTTP_POST, "/api/v1/friends/request", ROUTE_USER, post_friend_request},
    {HTTP_GET, "/api/v1/friends/requests", ROUTE_USER, get_friend_requests},
    {HTTP_POST, "/api/v1/friends/accept/{id}", ROUTE_USER, post_friend_accept},
    {HTTP_POST, "/api/v1/friends/reject/{id}", ROUTE_USER, post_friend_reject},
    {HTTP_DELETE, "/api/v1/friends/{id}", ROUTE_USER, delete_friend},
    {HTTP_GET, "/api/v1/users/search", ROUTE_USER, get_user_search},
    {HTTP_GET, "/api/v1/users/profile", ROUTE_USER, get_profile},
    {HTTP_PUT, "/api/v1/users/profile", ROUTE_USER, put_profile},
    {HTTP_GET, "/api/v1/scores", ROUTE_PUBLIC, get_scores},
    {HTTP_GET, "/api/v1/scores/my-stats", ROUTE_USER, get_my_stats},
    {HTTP_GET, "/api/v1/admin/users/deleted", ROUTE_ADMIN, get_deleted_users},
    {HTTP_DELETE, "/api/v1/admin/users/{id}", ROUTE_ADMIN, delete_user},
    {HTTP_POST, "/api/v1/admin/users/{id}/restore", ROUTE_ADMIN, post_user_restore},
};

const route_table_t api_social_routes = {routes, sizeof routes / sizeof routes[0]};
