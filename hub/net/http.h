/*
 * http: the REST side of the one port. The lws "http" protocol callback
 * gathers a request (method, path, query, headers it needs, a capped body),
 * checks the route's access rule, and calls the route's handler with an
 * http_req_t. A handler answers at once or later (from a query callback):
 * exactly one http_respond_*() per request.
 *
 * A request outlives its connection when the client goes away while a query
 * runs: the request is then detached, and the late respond just frees it
 * (it is reference-counted: see http.c). Paths outside the API are served
 * from the web root, through the same answer path (HEAD included).
 *
 * An answer is one write (status line, headers, body), made as soon as it
 * is given unless lws is inside a callback of that connection (http.c). A
 * keep-alive connection verifies a bearer token once: the same bytes on a
 * later request get the same identity until the token expires or the keys
 * change (auth_still_valid).
 *
 * Before any route runs, the edge checks: target size (414), header size
 * (431), UTF-8 of the path, query and used headers (400), framing
 * (Content-Length digits only, or chunked on POST/PUT/PATCH up to
 * --max-body; 400 / 413 and the connection closed otherwise). Every answer
 * carries nosniff and Referrer-Policy, static files a CSP; OPTIONS answers
 * 204 with Allow, and CORS headers go to the origins of --cors-origins on
 * /api/v1/ only.
 */
#ifndef RN_HTTP_H
#define RN_HTTP_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>

#include "auth.h"
#include "hub.h"
#include "router.h"

typedef struct http_req http_req_t;

/*
 * Request size limits at the edge. lws stores each known header (and the
 * request target) up to its token limit (http_token_limits) in a header
 * buffer of HTTP_AH_SIZE bytes per connection; a longer target is answered
 * 414, more than HTTP_HEADERS_MAX bytes of headers 431. A request that
 * overflows the whole buffer (e.g. with unknown headers) is closed by lws
 * 4.1 without a status: it has no hook to answer there.
 */
#define HTTP_URI_MAX 4096
#define HTTP_HEADERS_MAX 8192
#define HTTP_AH_SIZE 32768

/* Fills the per-header limits lws applies (lws_context_creation_info.token_limits). */
void http_token_limits(struct lws_token_limits *out);

/*
 * Logs one request refused at the edge at info level, rate-limited (one line
 * per 10 s with the count of the others): anyone can send bad requests.
 */
void http_log_refused(const char *what, const char *detail);

/* The lws protocol callback and its per-connection size. */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);
size_t http_pss_size(void);

hub_t *http_req_hub(http_req_t *req);
/* Path parameter i of the matched route, NUL-terminated, or NULL. */
const char *http_req_param(const http_req_t *req, int i);
/* Path parameter i as an id (router_parse_id), or -1. */
long long http_req_param_id(const http_req_t *req, int i);
/* URL-decoded query parameter into out; its length or -1 (see router_query_param). */
int http_req_query(const http_req_t *req, const char *name, char *out, size_t outlen);
/* An id or a small number as text (NUL included), for SQL parameters. */
#define HTTP_NUM_TEXT 24
#define HTTP_PAGE_DEFAULT 20
#define HTTP_PAGE_MAX 100

/*
 * The query parameters every list shares. Each returns 0, or -1 after
 * answering 400 itself (the handler just returns).
 *
 * http_req_limit: ?limit=1..max (default min(HTTP_PAGE_DEFAULT, max)) as text.
 * http_req_query_id: an optional id-valued parameter; *out is its text, or
 *   NULL when absent or empty.
 * http_req_page: ?limit (1..HTTP_PAGE_MAX) and ?cursor (a next_cursor id).
 */
int http_req_limit(http_req_t *req, long max, char out[HTTP_NUM_TEXT]);
int http_req_query_id(http_req_t *req, const char *name, char text[HTTP_NUM_TEXT],
                      const char **out);
int http_req_page(http_req_t *req, char limit[HTTP_NUM_TEXT], char cursor_text[HTTP_NUM_TEXT],
                  const char **cursor);

/* The verified caller, or NULL on a public route without a token. */
const auth_identity_t *http_req_identity(const http_req_t *req);
/* The request's path (without the query). */
const char *http_req_path(const http_req_t *req);
/* The client's address (hub_client_ip: X-Forwarded-For only from a trusted proxy). */
const char *http_req_client_ip(const http_req_t *req);
/* Adds Retry-After: seconds to the answer (set it before http_respond_*). */
void http_req_set_retry_after(http_req_t *req, unsigned seconds);
/* The Idempotency-Key header, or NULL. */
const char *http_req_idempotency_key(const http_req_t *req);
/* The raw body (may be empty, never NULL) and its length. */
const char *http_req_body(const http_req_t *req, size_t *len);
/*
 * Copies the value of request header name (lower case, with its colon, e.g.
 * "retronova-signature:") into out. Its length, or -1 when absent, longer
 * than outlen-1, or the connection is gone.
 */
int http_req_header(const http_req_t *req, const char *name, char *out, size_t outlen);
/* 1 when the Accept header names type (e.g. "text/csv"); 0 when absent or longer. */
#define HTTP_ACCEPT_MAX 512
int http_req_accepts(const http_req_t *req, const char *type);
/*
 * The request's fingerprint for Idempotency-Key replays: lower-case hex
 * SHA-256 of method, path and raw body (a key reused for another request of
 * the same user is refused).
 */
void http_req_hash(const http_req_t *req, char out[65]);
/*
 * The body parsed as a JSON object (borrowed, owned by req), or NULL after
 * answering 400 itself: the handler just returns.
 */
json_t *http_req_json(http_req_t *req);

/* Answers with a JSON body (reference stolen). */
void http_respond_json(http_req_t *req, int status, json_t *body);
/* Answers {"error":{"code":code,"message":...}}. */
void http_respond_error(http_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Answers with text of a content type; takes ownership of the malloc'd text. */
void http_respond_text(http_req_t *req, int status, const char *content_type, char *text,
                       size_t len);

/*
 * The route tables, matched in order (router.h), installed once by the
 * composition root (hub.c) before the server listens: net never names the
 * API modules. The array and the tables are borrowed for good (static data).
 */
void http_set_routes(const route_table_t *const *tables, size_t n);

#endif
