/*
 * http: gathers REST requests from lws, routes them, and writes the answers
 * (see http.h).
 *
 * How an answer is written: status line, headers and body together, one
 * sendmsg() on a plain socket (sendv.h: lws keeps what the kernel does not
 * take), then lws_http_transaction_completed() for the next request of a
 * keep-alive connection. When: at once, when the answer comes from outside
 * lws (a query, the limits' Redis reply, a timer: the hot path), so no
 * WRITEABLE round trip and its poll-mask changes (each an EPOLL_CTL_DEL +
 * ADD through lws's libuv plugin); in a WRITEABLE turn when it is given
 * inside one of lws's callbacks of this connection (completing the
 * transaction there would reset the request lws is still parsing), when the
 * connection is to close after it (only a return from a callback lets lws
 * close after flushing), or while lws holds unsent bytes.
 *
 * Who frees a request: it is reference-counted. The connection holds one
 * reference from LWS_CALLBACK_HTTP until the answer is written or lws drops
 * the protocol (close, HEAD completed inside lws, keep-alive unbind); the
 * handler holds one from dispatch until its http_respond_*(); and any code
 * that calls into lws while holding the request (lws may call back into
 * on_closed from inside) holds one on its stack. The last release frees it.
 * After a call into lws, the per-connection memory may be gone: only
 * req->conn (cleared by on_closed) says whether it is still there.
 */
#include "http.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "chunked.h"
#include "clientip.h"
#include "envelope.h"
#include "firebase_keys.h"
#include "guard.h"
#include "hex.h"
#include "log.h"
#include "metrics.h"
#include "sendv.h"

/*
 * Every API module's routes, matched in order (http_set_routes). Process-wide
 * like the tables themselves: constant once the server listens.
 */
static const route_table_t *const *route_tables;
static size_t n_route_tables;
#define N_TABLES n_route_tables

void http_set_routes(const route_table_t *const *tables, size_t n)
{
    route_tables = tables;
    n_route_tables = n;
}

#define PATH_MAX_LEN 512
#define QUERY_MAX_LEN 1024
#define TOKEN_MAX_LEN 8192
#define IDEM_KEY_MAX 256 /* the schema's limit is 255 */
#define ORIGIN_MAX 256

/* Methods for which lws reads a body even without Content-Length. */
#define BODY_METHOD(m) ((m) == HTTP_POST || (m) == HTTP_PUT || (m) == HTTP_PATCH)

/*
 * The demo pages load their scripts and styles from files (no inline code),
 * talk to this origin only (REST and WebSocket: CSP3 'self' covers ws/wss of
 * the same host), and may not be framed.
 */
#define CSP_VALUE                                                                                  \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

#define CORS_ALLOW_METHODS "GET, POST, PUT, PATCH, DELETE"
#define CORS_ALLOW_HEADERS "Authorization, Content-Type, Idempotency-Key, X-Api-Key"
#define CORS_EXPOSE_HEADERS "Retry-After"
#define CORS_MAX_AGE "600"

/* The answer: none yet, given and waiting for a WRITEABLE turn, written (or no connection). */
typedef enum resp_state { RESP_NONE = 0, RESP_WAITING, RESP_DONE } resp_state_t;

typedef struct http_conn http_conn_t;

struct http_req {
    struct lws *wsi;    /* NULL once the connection is gone (detached) */
    http_conn_t *conn;  /* the connection's memory, NULL once detached */
    int refs;           /* see the top of this file */
    bool handler_owns;  /* the handler's reference is held (dispatched, not answered) */
    bool close_after;   /* close the connection after the answer (framing is unknown) */
    bool chunked;       /* Transfer-Encoding: chunked body */
    bool cors;          /* origin is allowed: answer with Access-Control-Allow-Origin */
    bool vary_origin;   /* CORS is configured on this path: Vary: Origin */
    bool preflight;     /* an OPTIONS answer: Allow (+ the CORS preflight headers) */
    bool static_file;   /* a file of the web root: CSP, revalidated caching */
    bool body_complete; /* lws has delivered the whole body */
    unsigned allow;     /* methods (1 << http_method_t) for Allow on 204 / 405 */
    chunked_t chunk;
    char origin[ORIGIN_MAX];
    hub_t *hub;
    http_method_t method;
    route_match_t match;
    char path[PATH_MAX_LEN];
    char query[QUERY_MAX_LEN]; /* decoded "name=value" fragments, NUL-separated */
    size_t query_len;
    char idem_key[IDEM_KEY_MAX];
    bool has_idem_key, has_identity, dispatched;
    char *kid_token; /* a token whose kid was unknown: verified again at dispatch (firebase_keys) */
    auth_identity_t identity;
    char params[ROUTE_MAX_PARAMS][64];
    char *body; /* NUL-terminated, body_len bytes */
    size_t body_len, body_expected;
    json_t *json;
    char client_ip[CLIENTIP_MAX];
    unsigned retry_after_s; /* 0: no Retry-After header */
    /* The answer. */
    resp_state_t state;
    int status;
    const char *content_type;
    char *resp; /* LWS_PRE + resp_len bytes */
    size_t resp_len;
};

/*
 * lws's per-connection memory for this protocol, freed and made again by lws
 * for every request of a keep-alive connection: the live request, and
 * whether the connection is to close at its next WRITEABLE turn.
 */
struct http_conn {
    http_req_t *req;
    bool close_pending;
};

/*
 * What a TCP connection keeps across its keep-alive requests: made at its
 * first routed request (lws_set_opaque_user_data, which outlives
 * http_conn_t), freed with the connection (LWS_CALLBACK_WSI_DESTROY). A
 * WebSocket never gets one.
 */
typedef struct http_peer {
    char addr[CLIENTIP_MAX]; /* read once, not a getpeername() per request; "" when unknown */
    /*
     * The last bearer token verified on this connection and what it gave: the
     * same bytes again are not verified again while auth_still_valid() (a
     * client sends its token with every request; a proxy's connection may
     * carry several clients, so only identical bytes match).
     */
    char *token;
    size_t token_len;
    auth_identity_t identity;
    auth_validity_t valid;
} http_peer_t;

/*
 * How deep the loop is inside lws's callbacks of this protocol: an answer
 * given there waits for a WRITEABLE turn (see the top).
 */
static int lws_depth;

size_t http_pss_size(void)
{
    return sizeof(http_conn_t);
}

static void req_unref(http_req_t *req)
{
    if (!req || --req->refs > 0)
        return;
    free(req->body);
    free(req->resp);
    json_decref(req->json);
    if (req->kid_token) {
        OPENSSL_cleanse(req->kid_token, strlen(req->kid_token));
        free(req->kid_token);
    }
    free(req);
}

/* The connection lets go of its request (answer written, or the connection gone). */
static void conn_release(http_req_t *req)
{
    if (!req || !req->conn)
        return;
    req->conn->req = NULL;
    req->conn = NULL;
    req->wsi = NULL;
    req_unref(req);
}

hub_t *http_req_hub(http_req_t *req)
{
    return req->hub;
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

const char *http_req_path(const http_req_t *req)
{
    return req->path;
}

const char *http_req_client_ip(const http_req_t *req)
{
    return req->client_ip;
}

void http_req_set_retry_after(http_req_t *req, unsigned seconds)
{
    req->retry_after_s = seconds;
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
    if (!req->conn || outlen == 0)
        return -1;
    int n = lws_hdr_custom_length(req->wsi, name, namelen);
    if (n < 0 || (size_t)n >= outlen ||
        lws_hdr_custom_copy(req->wsi, out, (int)outlen, name, namelen) < 0)
        return -1;
    out[n] = '\0';
    return n;
}

int http_req_accepts(const http_req_t *req, const char *type)
{
    char accept[HTTP_ACCEPT_MAX];
    /* Accept is one of lws's own tokens: the custom-header lookup never sees it */
    if (!req->conn || lws_hdr_total_length(req->wsi, WSI_TOKEN_HTTP_ACCEPT) >= (int)sizeof accept ||
        lws_hdr_copy(req->wsi, accept, sizeof accept, WSI_TOKEN_HTTP_ACCEPT) <= 0)
        return 0;
    return strstr(accept, type) != NULL;
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

static void answer_now(http_req_t *req);

/*
 * Stores the answer and writes it at once or asks lws for a WRITEABLE turn
 * (see the top), then drops the handler's reference: a detached request is
 * freed here.
 */
static void respond_bytes(http_req_t *req, int status, const char *content_type, char *resp,
                          size_t len)
{
    if (req->state != RESP_NONE) {
        log_error("http double response", json_pack("{s:s}", "path", req->path));
        free(resp);
        return;
    }
    metrics_http_response(status);
    /*
     * An answer before lws has read all of a Content-Length body: lws 4.1
     * would then "discard" the rest and, with a request pipelined behind it,
     * spin the loop forever. Close instead of keeping the connection alive.
     */
    if (req->body_expected && !req->body_complete)
        req->close_after = true;
    req->status = status;
    req->content_type = content_type;
    req->resp = resp;
    req->resp_len = len;
    req->state = req->conn ? RESP_WAITING : RESP_DONE;
    req->refs++; /* ours across the calls into lws */
    if (req->conn && !lws_depth && !req->close_after && !lws_partial_buffered(req->wsi))
        answer_now(req);
    else if (req->conn)
        lws_callback_on_writable(req->wsi);
    if (req->handler_owns) {
        req->handler_owns = false;
        req_unref(req);
    }
    req_unref(req);
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

/*
 * Logs a request refused at the edge (414, 431, a connection lws dropped...)
 * at info level, at most once per LOG_EVERY_S with the count in between: a
 * client must not be able to fill the log.
 */
#define LOG_EVERY_S 10

void http_log_refused(const char *what, const char *detail)
{
    static time_t last;
    static unsigned long suppressed;
    time_t now = time(NULL);
    if (last && now - last < LOG_EVERY_S) {
        suppressed++;
        return;
    }
    log_info("http request refused",
             json_pack("{s:s, s:s, s:I}", "why", what, "detail", detail ? detail : "", "suppressed",
                       (json_int_t)suppressed));
    last = now;
    suppressed = 0;
}

void http_token_limits(struct lws_token_limits *out)
{
    for (int i = 0; i < WSI_TOKEN_COUNT; i++)
        out->token_limit[i] = HTTP_HEADERS_MAX;
    /* the request line: lws stops storing at the limit, and we answer 414 */
    static const int uri_tokens[] = {
        WSI_TOKEN_GET_URI,   WSI_TOKEN_POST_URI,   WSI_TOKEN_OPTIONS_URI, WSI_TOKEN_PUT_URI,
        WSI_TOKEN_PATCH_URI, WSI_TOKEN_DELETE_URI, WSI_TOKEN_HEAD_URI,    WSI_TOKEN_HTTP_URI_ARGS};
    for (size_t i = 0; i < sizeof uri_tokens / sizeof uri_tokens[0]; i++)
        out->token_limit[uri_tokens[i]] = HTTP_URI_MAX;
}

/* 431 when the known headers (lws truncates each at its limit) add up to more than allowed. */
static bool headers_too_big(struct lws *wsi)
{
    struct lws_token_limits limits;
    size_t total = 0;
    http_token_limits(&limits);
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        if (limits.token_limit[t] != HTTP_HEADERS_MAX || t == WSI_TOKEN_HTTP)
            continue; /* the request line: see read_target */
        int n = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (n >= HTTP_HEADERS_MAX)
            return true;
        total += n > 0 ? (size_t)n : 0;
    }
    return total > HTTP_HEADERS_MAX;
}

/* The connection's http_peer_t, made at its first use; NULL when out of memory. */
static http_peer_t *peer_of(struct lws *wsi)
{
    http_peer_t *peer = lws_get_opaque_user_data(wsi);
    if (peer || !(peer = calloc(1, sizeof *peer)))
        return peer;
    if (!lws_get_peer_simple(wsi, peer->addr, sizeof peer->addr))
        peer->addr[0] = '\0';
    lws_set_opaque_user_data(wsi, peer);
    return peer;
}

static void peer_forget_token(http_peer_t *peer)
{
    if (peer->token) {
        OPENSSL_cleanse(peer->token, peer->token_len);
        free(peer->token);
    }
    peer->token = NULL;
    peer->token_len = 0;
}

static void peer_free(http_peer_t *peer)
{
    if (!peer)
        return;
    peer_forget_token(peer);
    free(peer);
}

/* The connection's peer address (NULL: read it from the socket). */
static const char *peer_addr(struct lws *wsi)
{
    http_peer_t *peer = peer_of(wsi);
    return peer && *peer->addr ? peer->addr : NULL;
}

/*
 * Verifies a bearer token into req->identity, unless it is the one this
 * connection sent last and that still holds (http_peer_t). 0, or -1 with *why.
 */
static int verify_token(http_req_t *req, const char *token, size_t len, const char **why)
{
    const auth_t *auth = hub_auth(req->hub);
    time_t now = time(NULL);
    http_peer_t *peer = peer_of(req->wsi);
    if (peer && peer->token && peer->token_len == len &&
        CRYPTO_memcmp(peer->token, token, len) == 0 && auth_still_valid(auth, &peer->valid, now)) {
        req->identity = peer->identity;
        return 0;
    }
    auth_validity_t valid;
    if (auth_verify_until(auth, token, now, &req->identity, &valid, why) != 0)
        return -1;
    if (peer) {
        peer_forget_token(peer);
        if ((peer->token = malloc(len)) != NULL) {
            memcpy(peer->token, token, len);
            peer->token_len = len;
            peer->identity = req->identity;
            peer->valid = valid;
        }
    }
    return 0;
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
    } else if (verify_token(req, hdr + 7, strlen(hdr + 7), why) == 0) {
        req->has_identity = true;
        rc = 0;
    } else if (*why && strcmp(*why, "unknown_kid") == 0 && hub_firebase_keys(req->hub) &&
               (req->kid_token = strdup(hdr + 7)) != NULL) {
        rc = 0; /* Google may have just rotated its keys: decided at dispatch (kid_wait) */
    }
    OPENSSL_cleanse(hdr, (size_t)n);
    free(hdr);
    return rc;
}

/* Reads the Idempotency-Key header: 0 (absent or read), -1 when too long or not UTF-8. */
static int read_idempotency_key(http_req_t *req)
{
    static const char name[] = "idempotency-key:";
    int n = lws_hdr_custom_length(req->wsi, name, sizeof name - 1);
    if (n <= 0)
        return 0;
    if (n >= IDEM_KEY_MAX ||
        lws_hdr_custom_copy(req->wsi, req->idem_key, IDEM_KEY_MAX, name, sizeof name - 1) <= 0 ||
        !router_utf8_valid(req->idem_key, strlen(req->idem_key)))
        return -1;
    req->has_idem_key = true;
    return 0;
}

/* true when known header h is present and not UTF-8 (used headers are checked before use). */
static bool header_not_utf8(struct lws *wsi, enum lws_token_indexes h)
{
    char buf[HTTP_HEADERS_MAX + 1];
    int n = lws_hdr_copy(wsi, buf, sizeof buf, h);
    return n > 0 && !router_utf8_valid(buf, (size_t)n);
}

/*
 * From here on the answer is owed by someone else (the abuse limits' guard,
 * then the handler), who holds a reference until they answer.
 */
static void hold_for_answer(http_req_t *req)
{
    req->dispatched = true;
    req->refs++;
    req->handler_owns = true;
}

static void run_handler(http_req_t *req)
{
    req->match.route->handler(req);
}

/* 0 when the route's access rule admits the request's identity, else answered 401/403. */
static int check_route_access(http_req_t *req)
{
    route_access_t access = req->match.route->access;
    if (access != ROUTE_PUBLIC && !req->has_identity) {
        http_respond_error(req, 401, "unauthenticated", "a bearer token is required");
        return -1;
    }
    if (access == ROUTE_ADMIN && !req->identity.admin) {
        http_respond_error(req, 403, "forbidden", "admin only");
        return -1;
    }
    return 0;
}

/*
 * firebase_keys_wait_cb: the refetch an unknown kid started has ended (or
 * had already ended): the token is verified once more, then the request goes
 * on as any other. The handler's reference is held meanwhile.
 */
static void on_kid_keys(void *arg)
{
    http_req_t *req = arg;
    const char *why = "invalid token";
    int ok = auth_verify(hub_auth(req->hub), req->kid_token, time(NULL), &req->identity, &why) == 0;
    OPENSSL_cleanse(req->kid_token, strlen(req->kid_token));
    free(req->kid_token);
    req->kid_token = NULL;
    if (!ok) {
        guard_http_bad_token(req, why);
        return;
    }
    req->has_identity = true;
    if (check_route_access(req) == 0)
        guard_http_request(req, run_handler);
}

/*
 * Runs the matched route's handler once the guard (limits, deleted users)
 * admits it. A token that named an unknown kid first waits for the keys'
 * refetch (at most one per --firebase-refetch-ms), as a WebSocket auth does.
 */
static void dispatch(http_req_t *req)
{
    hold_for_answer(req);
    if (req->kid_token) {
        if (firebase_keys_wait(hub_firebase_keys(req->hub), on_kid_keys, req) != 0)
            on_kid_keys(req); /* no fetch in flight any more: verify against what we have */
        return;
    }
    guard_http_request(req, run_handler);
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

#define STATIC_MAX (4 * 1024 * 1024)

/*
 * Reads a whole static file into a response buffer (LWS_PRE first). NULL when
 * it is not a readable regular file of at most STATIC_MAX bytes. The web root
 * is a few small local files: read here like /openapi.json, not streamed.
 */
static char *read_static(const char *file, size_t *len)
{
    struct stat st;
    FILE *f = fopen(file, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= STATIC_MAX &&
        (buf = malloc(LWS_PRE + (size_t)st.st_size + 1)) != NULL) {
        *len = fread(buf + LWS_PRE, 1, (size_t)st.st_size, f);
        if (*len != (size_t)st.st_size || ferror(f)) {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

/*
 * Serves a file of the web root, or of protocol/ for the JS client, through
 * our own answer path (HEAD, keep-alive and pipelining like every route):
 * lws 4.1's lws_serve_http_file() misparses a request pipelined after it.
 */
static void serve_static(http_req_t *req)
{
    const char *path = req->path;
    if (strstr(path, "..") || strchr(path, '\\')) {
        http_respond_error(req, 404, "not_found", "no such page");
        return;
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
    size_t len = 0;
    char *buf = read_static(file, &len);
    if (!buf) {
        http_respond_error(req, 404, "not_found", "no such page");
        return;
    }
    req->static_file = true;
    respond_bytes(req, 200, mime_of(file), buf, len);
}

/* Methods served on req->path, as an Allow bit set (HEAD with GET). */
static unsigned allowed_methods(http_req_t *req, size_t len)
{
    unsigned allow = 0;
    route_match_t m;
    for (int meth = HTTP_GET; meth <= HTTP_DELETE; meth++)
        if (router_match(route_tables, N_TABLES, (http_method_t)meth, req->path, len, &m) ==
            ROUTE_FOUND)
            allow |= 1u << meth;
    if (allow & (1u << HTTP_GET))
        allow |= 1u << HTTP_HEAD;
    return allow | 1u << HTTP_OPTIONS;
}

/*
 * Reads the Origin of an /api/v1 request: req->cors when it is one of
 * --cors-origins. Other paths get no CORS headers at all.
 */
static void read_origin(http_req_t *req)
{
    const char *list = hub_config(req->hub)->cors_origins;
    if (strncmp(req->path, "/api/v1/", 8) != 0 || !list || !*list)
        return;
    req->vary_origin = true;
    int n = lws_hdr_copy(req->wsi, req->origin, sizeof req->origin, WSI_TOKEN_ORIGIN);
    req->cors = n > 0 && router_origin_allowed(list, req->origin, (size_t)n);
}

/* OPTIONS: 204 with Allow, plus the CORS preflight headers for an allowed origin. */
static void answer_options(http_req_t *req, int found, size_t len)
{
    if (found == ROUTE_NOT_FOUND && strncmp(req->path, "/api/", 5) == 0) {
        http_respond_error(req, 404, "not_found", "no route for %s", req->path);
        return;
    }
    req->preflight = true;
    req->allow = found == ROUTE_NOT_FOUND ? (1u << HTTP_GET | 1u << HTTP_HEAD | 1u << HTTP_OPTIONS)
                                          : allowed_methods(req, len);
    respond_bytes(req, 204, "text/plain", NULL, 0);
}

/*
 * The request's framing: Content-Length (digits only: two different values
 * arrive joined, "5 10", and are refused) or Transfer-Encoding: chunked.
 * 0 to go on; otherwise the answer is given and the connection will close.
 */
static int read_framing(http_req_t *req)
{
    char cl[24], te[64];
    int cln = lws_hdr_total_length(req->wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    int ten = lws_hdr_total_length(req->wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    int max = hub_config(req->hub)->max_body;
    /*
     * lws 4.1 reads a body we cannot hand back to its parser when it is
     * chunked, or on POST/PUT/PATCH without a length (it then expects up to
     * 100 MB): answer, then close rather than guess where the next request is.
     */
    req->close_after = ten > 0 || (cln <= 0 && BODY_METHOD(req->method));
    if (cln > 0 && ten > 0) {
        http_respond_error(req, 400, "bad_request", "both Content-Length and Transfer-Encoding");
        return -1;
    }
    if (ten > 0) {
        if (ten >= (int)sizeof te ||
            lws_hdr_copy(req->wsi, te, sizeof te, WSI_TOKEN_HTTP_TRANSFER_ENCODING) != ten ||
            strcasecmp(te, "chunked") != 0 || !BODY_METHOD(req->method)) {
            http_respond_error(req, 400, "bad_request",
                               "only Transfer-Encoding: chunked, on POST, PUT or PATCH");
            return -1;
        }
        req->chunked = true;
        chunked_init(&req->chunk);
        req->body_expected = (size_t)max;
        return 0;
    }
    if (cln <= 0)
        return 0;
    if (cln >= (int)sizeof cl ||
        lws_hdr_copy(req->wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) != cln ||
        strspn(cl, "0123456789") != (size_t)cln) {
        req->close_after = true;
        http_respond_error(req, 400, "bad_request", "invalid or conflicting Content-Length");
        return -1;
    }
    unsigned long long n = strtoull(cl, NULL, 10);
    if (n > (unsigned long long)max) {
        req->close_after = true; /* rather than read (lws would discard) the body */
        http_respond_error(req, 413, "too_big", "request body over %d bytes", max);
        return -1;
    }
    req->body_expected = (size_t)n;
    return 0;
}

/* Path, query and the request size limits. 0 to go on, -1 after answering. */
static int read_target(http_req_t *req, char *uri, int urilen)
{
    if (urilen <= 0 || urilen >= PATH_MAX_LEN ||
        lws_hdr_total_length(req->wsi, WSI_TOKEN_HTTP_URI_ARGS) >= QUERY_MAX_LEN ||
        urilen >= HTTP_URI_MAX) {
        metrics_http_refused(HTTP_REFUSED_URI);
        http_log_refused("uri too long", NULL);
        http_respond_error(req, 414, "uri_too_long",
                           "the request target is too long (path < %d, query < %d bytes)",
                           PATH_MAX_LEN, QUERY_MAX_LEN);
        return -1;
    }
    if (headers_too_big(req->wsi)) {
        metrics_http_refused(HTTP_REFUSED_HEADERS);
        http_log_refused("headers too large", NULL);
        http_respond_error(req, 431, "headers_too_large", "request headers over %d bytes",
                           HTTP_HEADERS_MAX);
        return -1;
    }
    memcpy(req->path, uri, (size_t)urilen);
    req->query_len = read_query(req->wsi, req->query, sizeof req->query);
    if (!router_utf8_valid(req->path, (size_t)urilen) ||
        !router_utf8_valid(req->query, req->query_len) ||
        header_not_utf8(req->wsi, WSI_TOKEN_HTTP_AUTHORIZATION) ||
        header_not_utf8(req->wsi, WSI_TOKEN_ORIGIN)) {
        http_respond_error(req, 400, "bad_request", "path, query or header is not UTF-8");
        return -1;
    }
    return 0;
}

/* Access rule, identity and Idempotency-Key of a matched route. 0 to go on, -1 after answering. */
static int check_access(http_req_t *req)
{
    for (int i = 0; i < req->match.nparams; i++) {
        const route_param_t *p = &req->match.params[i];
        if (p->len >= sizeof req->params[i]) {
            http_respond_error(req, 404, "not_found", "no such resource");
            return -1;
        }
        memcpy(req->params[i], p->value, p->len);
        req->params[i][p->len] = '\0';
    }
    const char *why = NULL;
    hub_client_ip(req->hub, req->wsi, peer_addr(req->wsi), req->client_ip);
    if (read_identity(req, &why) != 0) {
        hold_for_answer(req); /* a failed token is charged to the client IP (guard.h) */
        guard_http_bad_token(req, why ? why : "invalid token");
        return -1;
    }
    if (!req->kid_token && check_route_access(req) != 0) /* else checked at dispatch */
        return -1;
    if (read_idempotency_key(req) != 0) {
        http_respond_error(req, 400, "bad_request",
                           "Idempotency-Key is limited to 255 bytes of UTF-8");
        return -1;
    }
    return 0;
}

/*
 * Everything of LWS_CALLBACK_HTTP once the request exists: checks, routing,
 * then an answer, a static file, a dispatch, or waiting for the body.
 */
static int handle_request(http_req_t *req)
{
    char *uri;
    int urilen;
    req->method = method_of(lws_http_get_uri_and_method(req->wsi, &uri, &urilen));
    if (read_target(req, uri, urilen) != 0 || read_framing(req) != 0)
        return 0;
    read_origin(req);
    size_t len = (size_t)urilen;
    int found = router_match(route_tables, N_TABLES, req->method, req->path, len, &req->match);
    if (req->method == HTTP_OPTIONS) {
        answer_options(req, found, len);
        return 0;
    }
    if (found == ROUTE_NOT_FOUND && strncmp(req->path, "/api/", 5) != 0 &&
        (req->method == HTTP_GET || req->method == HTTP_HEAD)) {
        serve_static(req);
        return 0;
    }
    if (found == ROUTE_NOT_FOUND) {
        http_respond_error(req, 404, "not_found", "no route for %s", req->path);
        return 0;
    }
    if (found == ROUTE_BAD_METHOD) {
        req->allow = allowed_methods(req, len);
        http_respond_error(req, 405, "method_not_allowed", "method not allowed on %s", req->path);
        return 0;
    }
    if (check_access(req) != 0)
        return 0;
    if (req->body_expected == 0) {
        dispatch(req);
        return 0;
    }
    req->body = malloc(req->body_expected + 1);
    return req->body ? 0 : -1;
}

/* LWS_CALLBACK_HTTP: a request's headers are in. Returns what the callback returns. */
static int on_request(struct lws *wsi, http_conn_t *conn)
{
    conn_release(conn->req); /* a request still answering holds its own reference */
    http_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return -1;
    req->wsi = wsi;
    req->conn = conn;
    req->refs = 2; /* the connection's, and ours across the calls into lws below */
    conn->req = req;
    req->hub = lws_context_user(lws_get_context(wsi));
    int rc = handle_request(req);
    req_unref(req);
    return rc;
}

/* Body bytes: as they are (Content-Length), or through the chunked decoder. */
static int on_body(http_req_t *req, const char *in, size_t len)
{
    if (!req || !req->body || req->state != RESP_NONE || req->dispatched)
        return 0;
    if (!req->chunked) {
        if (req->body_len + len > req->body_expected)
            return -1; /* more than Content-Length said: drop the connection */
        memcpy(req->body + req->body_len, in, len);
        req->body_len += len;
        req->body[req->body_len] = '\0';
        return 0;
    }
    size_t used = 0;
    int rc =
        chunked_feed(&req->chunk, in, len, &used, req->body, req->body_expected, &req->body_len);
    req->body[req->body_len] = '\0';
    if (rc == CHUNKED_MORE)
        return 0;
    if (rc == CHUNKED_DONE) /* the bytes after it are lost to lws: close_after is set */
        dispatch(req);
    else if (rc == CHUNKED_ETOOBIG)
        http_respond_error(req, 413, "too_big", "request body over %d bytes",
                           hub_config(req->hub)->max_body);
    else
        http_respond_error(req, 400, "bad_request", "malformed chunked body");
    return 0;
}

static int add_retry_after(struct lws *wsi, unsigned seconds, unsigned char **p, unsigned char *end)
{
    char v[16];
    int n = snprintf(v, sizeof v, "%u", seconds);
    return lws_add_http_header_by_name(
        wsi, (const unsigned char *)"retry-after:", (const unsigned char *)v, n, p, end);
}

static void on_body_complete(http_req_t *req)
{
    if (req)
        req->body_complete = true;
    if (!req || req->state != RESP_NONE || req->dispatched)
        return;
    if (req->chunked) /* the client ended the body without the last chunk */
        http_respond_error(req, 400, "bad_request", "chunked body ended early");
    else
        dispatch(req);
}

/* Appends the answer's extra headers: security, Allow, CORS, close. Non-zero when out of room. */
static int add_headers(struct lws *wsi, http_req_t *req, unsigned char **p, unsigned char *end)
{
#define ADD(name, value, vlen)                                                                     \
    lws_add_http_header_by_name(wsi, (const unsigned char *)(name),                                \
                                (const unsigned char *)(value), (int)(vlen), p, end)
    static const char *const names[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"};
    char allow[64] = "";
    for (int m = HTTP_GET; m <= HTTP_HEAD; m++)
        if (req->allow & (1u << m))
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                     *allow ? ", " : "", names[m]);
    const char *cache = req->static_file ? "no-cache" : "no-store";
    int rc =
        ADD("cache-control:", cache, strlen(cache)) ||
        ADD("x-content-type-options:", "nosniff", 7) ||
        ADD("referrer-policy:", "no-referrer", 11) ||
        (req->static_file && ADD("content-security-policy:", CSP_VALUE, sizeof CSP_VALUE - 1)) ||
        (*allow && ADD("allow:", allow, strlen(allow))) ||
        (req->vary_origin && ADD("vary:", "Origin", 6)) ||
        (req->close_after && ADD("connection:", "close", 5));
    if (rc || !req->cors)
        return rc;
    rc = ADD("access-control-allow-origin:", req->origin, strlen(req->origin));
    if (req->preflight)
        return rc ||
               ADD("access-control-allow-methods:", CORS_ALLOW_METHODS,
                   sizeof CORS_ALLOW_METHODS - 1) ||
               ADD("access-control-allow-headers:", CORS_ALLOW_HEADERS,
                   sizeof CORS_ALLOW_HEADERS - 1) ||
               ADD("access-control-max-age:", CORS_MAX_AGE, sizeof CORS_MAX_AGE - 1);
    return rc || ADD("access-control-expose-headers:", CORS_EXPOSE_HEADERS,
                     sizeof CORS_EXPOSE_HEADERS - 1);
#undef ADD
}

/* The status line and headers of req's answer into buf: their length, or -1 if they do not fit. */
static int build_headers(struct lws *wsi, http_req_t *req, unsigned char *buf, size_t size)
{
    unsigned char *p = buf, *end = buf + size - 1;
    if (lws_add_http_common_headers(wsi, (unsigned)req->status, req->content_type, req->resp_len,
                                    &p, end) ||
        add_headers(wsi, req, &p, end) ||
        (req->retry_after_s && add_retry_after(wsi, req->retry_after_s, &p, end)) ||
        lws_finalize_http_header(wsi, &p, end))
        return -1;
    return (int)(p - buf);
}

/*
 * Writes req's answer, headers and body (none for HEAD) in one go: one
 * sendmsg() on a plain socket, lws_write() on TLS. The connection lets go of
 * the request (before lws may drop its memory). 0, or -1 when the connection
 * is unusable.
 */
static int write_answer(struct lws *wsi, http_req_t *req)
{
    unsigned char hdrs[LWS_PRE + 2048], *start = hdrs + LWS_PRE;
    int hlen = build_headers(wsi, req, start, sizeof hdrs - LWS_PRE);
    size_t blen = req->method == HTTP_HEAD ? 0 : req->resp_len;
    unsigned char *body = blen ? (unsigned char *)req->resp + LWS_PRE : NULL;
    int fd = sendv_fd(wsi), rc = 0;
    if (hlen < 0) {
        rc = -1;
    } else if (fd >= 0) {
        struct iovec iov[2] = {{start, (size_t)hlen}, {body, blen}};
        ssize_t sent = sendv(wsi, fd, iov, blen ? 2 : 1);
        if (sent >= 0 && (size_t)sent < (size_t)hlen + blen)
            metrics_http_partial();
        rc = sent < 0 ? -1 : 0;
    } else if (lws_write(wsi, start, (size_t)hlen, LWS_WRITE_HTTP_HEADERS) != hlen ||
               (blen && lws_write(wsi, body, blen, LWS_WRITE_HTTP_FINAL) < 0)) {
        rc = -1;
    }
    req->state = RESP_DONE;
    conn_release(req);
    return rc;
}

/*
 * The answer, outside lws's callbacks: written now, and the transaction
 * completed for the next request. When lws wants the connection closed (an
 * HTTP/1.0 client, Connection: close, a client that shut its side), that
 * happens at the next WRITEABLE turn, which lws gives only once what it holds
 * is sent: an asynchronous kill would drop it.
 */
static void answer_now(http_req_t *req)
{
    struct lws *wsi = req->wsi;
    if (write_answer(wsi, req) != 0) {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    if (!lws_http_transaction_completed(wsi))
        return;
    http_conn_t *conn = lws_wsi_user(wsi); /* still ours, unless lws ran out of memory */
    if (conn) {
        conn->close_pending = true;
        lws_callback_on_writable(wsi);
    } else {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

/* WRITEABLE: an answer given inside a callback, or a close after one (see the top). */
static int on_writeable(struct lws *wsi, http_conn_t *conn)
{
    if (conn->close_pending)
        return -1;
    http_req_t *req = conn->req;
    if (!req || req->state != RESP_WAITING)
        return 0;
    bool close = req->close_after;
    if (write_answer(wsi, req) != 0 || close)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The callback's work; http_callback counts how deep the loop is inside it. */
static int on_callback(struct lws *wsi, enum lws_callback_reasons reason, http_conn_t *conn,
                       void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return conn ? on_request(wsi, conn) : -1;
    case LWS_CALLBACK_HTTP_BODY:
        return conn ? on_body(conn->req, in, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (conn)
            on_body_complete(conn->req);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return conn ? on_writeable(wsi, conn) : 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return 1; /* an upgrade without our subprotocol lands here: refuse it */
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        /* the connection is going away: a handler still answering keeps the request */
        if (conn)
            conn_release(conn->req);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY: /* every connection's last call, WebSockets too */
        peer_free(lws_get_opaque_user_data(wsi));
        lws_set_opaque_user_data(wsi, NULL);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, conn, in, len);
    }
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    lws_depth++;
    int rc = on_callback(wsi, reason, user, in, len);
    lws_depth--;
    return rc;
}
