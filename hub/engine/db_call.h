/*
 * db_call: how a REST handler runs its one SQL function (one transaction),
 * publishes what it committed, and answers. The prefix stays db_ (db_call,
 * db_publish, ...), the names every route already uses.
 *
 * Every state change is one SQL function (storage/sql) that runs as
 * one transaction and returns one jsonb value:
 *
 *   {"status": 201, "body": {...}, "events": [...]}
 *
 * status/body are the HTTP answer (an error is {"status":409,"body":{"error":
 * {"code":"insufficient_tickets","message":"...", ...}}}, written before any
 * change so nothing is left behind); events are the private events the
 * transaction wrote to user_events, delivered after the commit (events.h).
 * A function that changed an arcade's queue also returns its new snapshot as
 * "arcade", published on the public lane (queue.h); one that admins should
 * see live returns "admin_event" (events_publish_admin). One that changed
 * several arcades returns their snapshots as "arcades" (each published like
 * "arcade"); one that wrote audit rows returns them as "audit" (each sent to
 * the admin stream as {"kind":"audit","entry":{...}}: 06_audit.sql).
 * A function that must undo partial work raises instead; that is a 500.
 */
#ifndef RN_DB_CALL_H
#define RN_DB_CALL_H

#include <jansson.h>

#include "http.h"

/*
 * Called with the decoded result (borrowed) once the transaction committed
 * and its events were handed to events_publish(). The callback answers req.
 */
typedef void (*db_result_cb)(http_req_t *req, json_t *result, void *arg);

/*
 * Runs sql, which must return one row of one jsonb column. With cb NULL the
 * answer is the result's status and body. Database down: 503 db_unavailable;
 * a raised error: 500 (logged); a malformed result: 500.
 */
void db_call(http_req_t *req, const char *sql, int nparams, const char *const *params,
             db_result_cb cb, void *arg);

/* Publishes what a committed result carries: events, arcade snapshot, admin event. */
void db_publish(hub_t *hub, const json_t *result);
/* Answers req with the result's status and body (what db_call does without a callback). */
void db_respond(http_req_t *req, const json_t *result);

/*
 * Runs sql, "SELECT fn($1, $2::bigint)", with the caller's uid and the path's
 * first parameter as an id; a path parameter that is not an id answers 404
 * with not_found_code.
 */
void db_call_uid_id(http_req_t *req, const char *sql, const char *not_found_code,
                    const char *not_found_message);

/* The uid of the caller as a parameter (routes with ROUTE_USER/ROUTE_ADMIN only). */
const char *db_caller_uid(const http_req_t *req);

#endif
