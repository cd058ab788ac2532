/*
 * guard: the REST side of the abuse limits and of the identity lifecycle,
 * between a gathered request and its handler (http.c calls it, once per
 * request). A deleted user's token is refused with 403 account_deleted; on
 * /api/ the client IP's and the user's REST budgets (ratelimit.h) are
 * charged, and a request past either gets 429 rate_limited with Retry-After
 * (health checks, /metrics and /openapi.json are not budgeted). A token that
 * does not verify is charged to the client IP's budget of failed tokens:
 * 401, or 429 past it.
 *
 * The answer may come later (Redis): meanwhile the request counts as
 * dispatched, like one whose handler runs a query. Loop thread only.
 */
#ifndef RN_GUARD_H
#define RN_GUARD_H

#include "http.h"

/* Runs the handler of an admitted request. */
typedef void (*guard_run_fn)(http_req_t *req);

/* Admits req (run is called) or answers 403/429 itself. */
void guard_http_request(http_req_t *req, guard_run_fn run);

/* The request's bearer token did not verify (why: static reason): answers 401 or 429. */
void guard_http_bad_token(http_req_t *req, const char *why);

/* Answers 429 rate_limited with Retry-After for retry_after_ms. */
void guard_respond_limited(http_req_t *req, unsigned retry_after_ms);

#endif
