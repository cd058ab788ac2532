/*
 * http: gathers REST requests from lws, routes them, and writes the answers
 * (see http.h). Responses are written in two WRITEABLE turns, headers then
 * body, keeping to one lws_write per callback.
 */
#include "http.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "envelope.h"
#include "hex.h"
#include "log.h"
#include "metrics.h"

/* Every API module's routes, matched in order. */
static const route_table_t *const route_tables[] = {
    &api_ops_routes, &api_queue_routes, &api_tickets_routes, &api_admin_routes, &api_social_routes};
#define N_TABLES (sizeof route_tables / sizeof route_tables[0])

#define PATH_MAX_LEN 512
#define QUERY_MAX_LEN 1024
#define TOKEN_MAX_LEN 8192
#define IDEM_KEY_MAX 256 /* the schema's limit is 255 */

typedef enum resp_state { RESP_NONE = 0, RESP_HEADERS, RESP_BODY } resp_state_t;

struct http_req {
    struct lws *wsi; /* NULL once the connection is gone (detached) */
    hub_t *hub;
    http_method_t method;
    route_match_t match;
    char path[PATH_MAX_LEN];
    char query[QUERY_MAX_LEN]; /* decoded "name=value" fragments, NUL-separated */
    size_t query_len;
    char idem_key[IDEM_KEY_MAX];
    bool has_idem_key, has_identity, dispatched;
    auth_identity_t identity;
    char params[ROUTE_MAX_PARAMS][64];
    char *body; /* NUL-terminated, body_len bytes */
    size_t body_len, body_expected;
    json_t *json;
    /* The answer. */
    resp_state_t state;
    int status;
    const char *content_type;
    char *resp; /* LWS_PRE + resp_len bytes */
    size_t resp_len;
};

/* lws's per-connection memory for this protocol: just the live request. */
typedef struct http_conn {
    http_req_t *req;
} http_conn_t;

size_t http_pss_size(void)
{
    return sizeof(http_conn_t);
}

static void req_free(http_req_t *req)
{
    if (!req)
        return;
    free(req->body);
    free(req->resp);
    json_decref(req->json);
    free(req);
}

hub_t *http_req_hub(http_req_t *req)
{
    return req->hub;
}

http_method_t http_req_method(const http_req_t *req)
{
    return req->method;
}

const char *http_req_param(const http_req_t *req, int i)
{
    return i >= 0 && i < req->match.nparams ? req->params[i] : NULL;
}

long long http_req_param_id(const http_req_t *req, int i)
{
    const char *p = http_req_param(req, i);
    return p ? router_parse_id(p, strlen(p)) : -1;
}

int http_req_query(const http_req_t *req, const char *name, char *out, size_t outlen)
{
    return router_query_param(req->query, req->query_len, name, out, outlen);
}

int http_req_limit(http_req_t *req, long max, char out[HTTP_NUM_TEXT])
{
    char value[HTTP_NUM_TEXT], *end;
    long limit = HTTP_PAGE_DEFAULT < max ? HTTP_PAGE_DEFAULT : max;
    if (http_req_query(req, "limit", value, sizeof value) >= 0) {
        limit = strtol(value, &end, 10);
        if (!*value || *end || limit < 1 || limit > max) {
            http_respond_error(req, 400, "bad_request", "limit must be 1..%ld", max);
            return -1;
        }
    }
    snprintf(out, HTTP_NUM_TEXT, "%ld", limit);
    return 0;
}

int http_req_query_id(http_req_t *req, const char *name, char text[HTTP_NUM_TEXT], const char **out)
{
    char value[QUERY_MAX_LEN]; /* as large as the whole query: -1 means absent */
    int n = http_req_query(req, name, value, sizeof value);
    *out = NULL;
    if (n <= 0)
        return 0; /* absent, or "?cursor=" on a first page */
    long long id = router_parse_id(value, (size_t)n);
    if (id < 0) {
        http_respond_error(req, 400, "bad_request", "%s must be a positive integer id", name);
        return -1;
    }
    snprintf(text, HTTP_NUM_TEXT, "%lld", id);
    *out = text;
    return 0;
}

int http_req_page(http_req_t *req, char limit[HTTP_NUM_TEXT], char cursor_text[HTTP_NUM_TEXT],
                  const char **cursor)
{
    return http_req_limit(req, HTTP_PAGE_MAX, limit) ||
                   http_req_query_id(req, "cursor", cursor_text, cursor)
               ? -1
               : 0;
}

const auth_identity_t *http_req_identity(const http_req_t *req)
{
    return req->has_identity ? &req->identity : NULL;
}

const char *http_req_idempotency_key(const http_req_t *req)
{
    return req->has_idem_key ? req->idem_key : NULL;
}

const char *http_req_body(const http_req_t *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

int http_req_header(const http_req_t *req, const char *name, char *out, size_t outlen)
{
    int namelen = (int)strlen(name);
    if (!req->wsi || outlen == 0)
        return -1;
    int n = lws_hdr_custom_length(req->wsi, name, namelen);
    if (n < 0 || (size_t)n >= outlen ||
        lws_hdr_custom_copy(req->wsi, out, (int)outlen, name, namelen) < 0)
        return -1;
    out[n] = '\0';
    return n;
}

void http_req_hash(const http_req_t *req, char out[65])
{
    static const char *const names[] = {"GET",    "POST",    "PUT",  "PATCH",
                                        "DELETE", "OPTIONS", "HEAD", "OTHER"};
    unsigned char md[32];
    unsigned int mdlen = 0;
    const char *method = names[req->method];
    /* NUL-separated, so that no two (method, path, body) give the same bytes */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, method, strlen(method) + 1) != 1 ||
        EVP_DigestUpdate(ctx, req->path, strlen(req->path) + 1) != 1 ||
        EVP_DigestUpdate(ctx, req->body ? req->body : "", req->body_len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != sizeof md)
        memset(md, 0, sizeof md);
    EVP_MD_CTX_free(ctx);
    hex_encode(md, sizeof md, out);
}

json_t *http_req_json(http_req_t *req)
{
    if (req->json)
        return req->json;
    json_error_t jerr;
    if (!req->body_len) {
        http_respond_error(req, 400, "bad_request", "a JSON object body is required");
        return NULL;
    }
    req->json = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req->json || !json_is_object(req->json)) {
        http_respond_error(req, 400, "bad_json", "body is not a JSON object: %s",
                           req->json ? "wrong type" : jerr.text);
        json_decref(req->json);
        req->json = NULL;
        return NULL;
    }
    return req->json;
}

/* Stores the answer and asks lws for a WRITEABLE turn; a detached request is freed. */
static void respond_bytes(http_req_t *req, int status, const char *content_type, char *resp,
                          size_t len)
{
    if (req->state != RESP_NONE) {
        log_error("http double response", json_pack("{s:s}", "path", req->path));
        free(resp);
        return;
    }
    metrics_http_response(status);
    if (!req->wsi) {
        free(resp);
        req_free(req);
        return;
    }
    req->status = status;
    req->content_type = content_type;
    req->resp = resp;
    req->resp_len = len;
    req->state = RESP_HEADERS;
    lws_callback_on_writable(req->wsi);
}

void http_respond_json(http_req_t *req, int status, json_t *body)
{
    char *buf = NULL;
    size_t len = 0;
    if (!body || envelope_encode(body, LWS_PRE, &buf, &len) != 0) {
        static const char fail[] = "{\"error\":{\"code\":\"internal\",\"message\":\"encoding\"}}";
        buf = malloc(LWS_PRE + sizeof fail);
        len = buf ? sizeof fail - 1 : 0;
        if (buf)
            memcpy(buf + LWS_PRE, fail, sizeof fail);
        status = 500;
    }
    json_decref(body);
    respond_bytes(req, status, "application/json", buf, len);
}

void http_respond_error(http_req_t *req, int status, const char *code, const char *fmt, ...)
{
    char message[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    http_respond_json(req, status,
                      json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message));
}

void http_respond_text(http_req_t *req, int status, const char *content_type, char *text,
                       size_t len)
{
    char *buf = malloc(LWS_PRE + len + 1);
    if (buf)
        memcpy(buf + LWS_PRE, text, len);
    free(text);
    if (!buf) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    respond_bytes(req, status, content_type, buf, len);
}

static http_method_t method_of(int lws_method)
{
    switch (lws_method) {
    case LWSHUMETH_GET:
        return HTTP_GET;
    case LWSHUMETH_POST:
        return HTTP_POST;
    case LWSHUMETH_PUT:
        return HTTP_PUT;
    case LWSHUMETH_PATCH:
        return HTTP_PATCH;
    case LWSHUMETH_DELETE:
        return HTTP_DELETE;
    case LWSHUMETH_OPTIONS:
        return HTTP_OPTIONS;
    case LWSHUMETH_HEAD:
        return HTTP_HEAD;
    default:
        return HTTP_OTHER;
    }
}

/*
 * Keeps lws's URI argument fragments ("a=1", "b=x&y" once decoded) as they
 * are, NUL-separated: joined with '&' again they could not be told apart.
 */
static size_t read_query(struct lws *wsi, char *out, size_t outlen)
{
    size_t used = 0;
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, out + used, (int)(outlen - used),
                                      WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        used += (size_t)n + 1; /* keep its NUL as the separator */
        if (used >= outlen)
            break;
    }
    return used < outlen ? used : outlen;
}

/* Verifies "Authorization: Bearer <token>" if present. -1 when present but invalid. */
static int read_identity(http_req_t *req, const char **why)
{
    int n = lws_hdr_total_length(req->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0)
        return 0;
    if (n > TOKEN_MAX_LEN) {
        *why = "token too long";
        return -1;
    }
    char *hdr = malloc((size_t)n + 1);
    if (!hdr || lws_hdr_copy(req->wsi, hdr, n + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0) {
        free(hdr);
        *why = "unreadable authorization header";
        return -1;
    }
    int rc = -1;
    if (strncasecmp(hdr, "Bearer ", 7) != 0) {
        *why = "expected: Authorization: Bearer <token>";
    } else if (auth_verify(hub_auth(req->hub), hdr + 7, time(NULL), &req->identity, why) == 0) {
        req->has_identity = true;
        rc = 0;
    }
    free(hdr);
    return rc;
}

/* Reads the Idempotency-Key header: 0 (absent or read), -1 when too long. */
static int read_idempotency_key(http_req_t *req)
{
    static const char name[] = "idempotency-key:";
    int n = lws_hdr_custom_length(req->wsi, name, sizeof name - 1);
    if (n <= 0)
        return 0;
    if (n >= IDEM_KEY_MAX ||
        lws_hdr_custom_copy(req->wsi, req->idem_key, IDEM_KEY_MAX, name, sizeof name - 1) <= 0)
        return -1;
    req->has_idem_key = true;
    return 0;
}

/* Runs the matched route's handler once the request (and its body) is complete. */
static void dispatch(http_req_t *req)
{
    req->dispatched = true;
    req->match.route->handler(req);
}

static const char *mime_of(const char *path)
{
    static const struct {
        const char *ext, *mime;
    } types[] = {{".html", "text/html; charset=utf-8"},
                 {".js", "text/javascript; charset=utf-8"},
                 {".css", "text/css; charset=utf-8"},
                 {".json", "application/json"},
                 {".svg", "image/svg+xml"},
                 {".png", "image/png"},
                 {".ico", "image/x-icon"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].mime;
    return "application/octet-stream";
}

/* Serves a file of the web root, or of protocol/ for the JS client. <0: close. */
static int serve_static(http_req_t *req)
{
    const char *path = req->path;
    if (strstr(path, "..") || strchr(path, '\\')) {
        http_respond_error(req, 404, "not_found", "no such page");
        return 0;
    }
    char file[PATH_MAX_LEN + 256];
    const char *root = hub_config(req->hub)->web_root;
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    else if (strcmp(path, "/docs") == 0 || strcmp(path, "/docs/") == 0)
        path = "/docs.html"; /* the API reference, rendering /openapi.json */
    if (strcmp(path, "/retronova.js") == 0)
        snprintf(file, sizeof file, "%s/../protocol/retronova.js", root);
    else
        snprintf(file, sizeof file, "%s%s", root, path);
    int rc = lws_serve_http_file(req->wsi, file, mime_of(file), NULL, 0);
    return rc < 0 ? -1 : rc;
}

/* LWS_CALLBACK_HTTP: a request's headers are in. Returns what the callback returns. */
static int on_request(struct lws *wsi, http_conn_t *conn)
{
    req_free(conn->req);
    http_req_t *req = conn->req = calloc(1, sizeof *req);
    if (!req)
        return -1;
    req->wsi = wsi;
    req->hub = lws_context_user(lws_get_context(wsi));

    char *uri;
    int urilen;
    req->method = method_of(lws_http_get_uri_and_method(wsi, &uri, &urilen));
    if (urilen <= 0 || urilen >= PATH_MAX_LEN) {
        http_respond_error(req, 414, "bad_request", "path too long");
        return 0;
    }
    memcpy(req->path, uri, (size_t)urilen);
    req->query_len = read_query(wsi, req->query, sizeof req->query);

    int found =
        router_match(route_tables, N_TABLES, req->method, req->path, (size_t)urilen, &req->match);
    if (found == ROUTE_NOT_FOUND && strncmp(req->path, "/api/", 5) != 0 &&
        (req->method == HTTP_GET || req->method == HTTP_HEAD)) {
        int rc = serve_static(req);
        if (req->state == RESP_NONE) { /* lws owns the transaction now */
            req_free(req);
            conn->req = NULL;
        }
        return rc;
    }
    if (found == ROUTE_NOT_FOUND) {
        http_respond_error(req, 404, "not_found", "no route for %s", req->path);
        return 0;
    }
    if (found == ROUTE_BAD_METHOD) {
        http_respond_error(req, 405, "method_not_allowed", "method not allowed on %s", req->path);
        return 0;
    }
    for (int i = 0; i < req->match.nparams; i++) {
        const route_param_t *p = &req->match.params[i];
        if (p->len >= sizeof req->params[i]) {
            http_respond_error(req, 404, "not_found", "no such resource");
            return 0;
        }
        memcpy(req->params[i], p->value, p->len);
        req->params[i][p->len] = '\0';
    }

    const char *why = NULL;
    route_access_t access = req->match.route->access;
    if (read_identity(req, &why) != 0 || (access != ROUTE_PUBLIC && !req->has_identity)) {
        http_respond_error(req, 401, "unauthenticated", "%s",
                           why ? why : "a bearer token is required");
        return 0;
    }
    if (access == ROUTE_ADMIN && !req->identity.admin) {
        http_respond_error(req, 403, "forbidden", "admin only");
        return 0;
    }
    if (read_idempotency_key(req) != 0) {
        http_respond_error(req, 400, "bad_request", "Idempotency-Key is limited to 255 bytes");
        return 0;
    }

    char cl[24];
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (*end || n > (unsigned long long)hub_config(req->hub)->max_body) {
            http_respond_error(req, 413, "too_big", "request body over %d bytes",
                               hub_config(req->hub)->max_body);
            return 0;
        }
        req->body_expected = (size_t)n;
    }
    if (req->body_expected == 0) {
        dispatch(req);
        return 0;
    }
    req->body = malloc(req->body_expected + 1);
    return req->body ? 0 : -1;
}

static int on_body(http_req_t *req, const char *in, size_t len)
{
    if (!req || !req->body || req->state != RESP_NONE)
        return 0;
    if (req->body_len + len > req->body_expected)
        return -1; /* more than Content-Length said: drop the connection */
    memcpy(req->body + req->body_len, in, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return 0;
}

static int on_writeable(struct lws *wsi, http_conn_t *conn)
{
    http_req_t *req = conn->req;
    if (!req || req->state == RESP_NONE)
        return 0;
    if (req->state == RESP_HEADERS) {
        unsigned char hdrs[LWS_PRE + 1024];
        unsigned char *start = hdrs + LWS_PRE, *p = start, *end = hdrs + sizeof hdrs - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)req->status, req->content_type,
                                        req->resp_len, &p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        req->state = RESP_BODY;
        lws_callback_on_writable(wsi);
        return 0;
    }
    int n = req->method == HTTP_HEAD ? 0
                                     : lws_write(wsi, (unsigned char *)req->resp + LWS_PRE,
                                                 req->resp_len, LWS_WRITE_HTTP_FINAL);
    req_free(req);
    conn->req = NULL;
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The connection is going away: free the request, or detach it if a handler still owns it. */
static void on_closed(http_conn_t *conn)
{
    http_req_t *req = conn->req;
    conn->req = NULL;
    if (!req)
        return;
    if (req->dispatched && req->state == RESP_NONE)
        req->wsi = NULL;
    else
        req_free(req);
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    http_conn_t *conn = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_request(wsi, conn);
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(conn->req, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (conn->req && conn->req->state == RESP_NONE && !conn->req->dispatched)
            dispatch(conn->req);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return on_writeable(wsi, conn);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return 1; /* an upgrade without our subprotocol lands here: refuse it */
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (conn)
            on_closed(conn);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
