/*
 * https_get: a small HTTPS client on uv_tcp + OpenSSL memory BIOs (see
 * https_get.h).
 *
 *   RESOLVING --uv_getaddrinfo--> CONNECTING --uv_tcp_connect--> TLS --EOF or
 *   close_notify--> parse the answer --> DONE
 *
 * Any failure, the timer, or a cancel goes straight to DONE: the callback (if
 * any) runs once, both handles close, and the request is freed in the last
 * close callback (a pending connect or write completes with UV_ECANCELED
 * before that and finds DONE).
 */
#include "https_get.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "resolve.h"

#define HEADERS_MAX (16 * 1024) /* bytes of status line + headers we accept */
#define HOST_MAX 253

typedef enum { ST_RESOLVING, ST_CONNECTING, ST_TLS, ST_DONE } get_state_t;

struct https_get {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    resolve_req_t *resolving;
    int open_handles;
    get_state_t state;
    int timeout_ms;
    https_get_cb cb; /* NULL once cancelled */
    void *arg;

    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl: network -> OpenSSL, OpenSSL -> network */
    bool handshaken, request_sent;
    char host[HOST_MAX + 1]; /* without brackets */
    int port;
    char *request;
    size_t request_len;

    char *resp; /* everything received: headers + body */
    size_t resp_len, resp_max;
    size_t max_body;
    char rx[16384];
};

typedef struct write_req {
    uv_write_t req;
    https_get_t *g;
    char data[];
} write_req_t;

static void get_fail(https_get_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- URL ---- */

/* Splits url into host (no brackets), port and the path's offset. */
static int parse_url(const char *url, char *host, int *port, size_t *path_at, char *err,
                     size_t errlen)
{
    const char *p, *h, *end;
    size_t n;

    if (!url || strncasecmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "URL must start with https://");
        return -1;
    }
    p = url + 8;
    if (*p == '[') {
        h = p + 1;
        if (!(end = strchr(h, ']'))) {
            snprintf(err, errlen, "unterminated [IPv6] address in URL");
            return -1;
        }
        p = end + 1;
    } else {
        h = p;
        end = h + strcspn(h, ":/?#@");
        p = end;
    }
    n = (size_t)(end - h);
    if (n == 0 || n > HOST_MAX) {
        snprintf(err, errlen, "missing or bad host in URL");
        return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-:", host[i])) {
            snprintf(err, errlen, "bad host in URL");
            return -1;
        }
    if ((strchr(host, ':') || h[-1] == '[') && (!strchr(host, ':') || !resolve_is_literal(host))) {
        snprintf(err, errlen, "bad IPv6 address in URL");
        return -1;
    }
    *port = 443;
    if (*p == ':') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || v < 1 || v > 65535) {
            snprintf(err, errlen, "bad port in URL");
            return -1;
        }
        *port = (int)v;
        p = e;
    }
    if (*p != '/') {
        snprintf(err, errlen, "URL needs a path (https://host/path)");
        return -1;
    }
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '#') {
            snprintf(err, errlen, "bad character in URL path");
            return -1;
        }
    *path_at = (size_t)(p - url);
    return 0;
}

int https_url_check(const char *url, char *err, size_t errlen)
{
    char host[HOST_MAX + 1];
    int port;
    size_t at;
    return parse_url(url, host, &port, &at, err, errlen);
}

/* ---- context ---- */

SSL_CTX *https_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "cannot load %s", ca_file ? ca_file : "the system CA certificates");
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

/* ---- teardown ---- */

static void on_closed(uv_handle_t *h)
{
    https_get_t *g = h->data;
    if (--g->open_handles > 0)
        return;
    SSL_free(g->ssl);
    free(g->request);
    free(g->resp);
    free(g);
}

static void get_close(https_get_t *g)
{
    g->state = ST_DONE;
    resolve_cancel(g->resolving);
    g->resolving = NULL;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, on_closed);
    uv_close((uv_handle_t *)&g->tcp, on_closed);
}

/* Ends the request with res or errmsg; the callback runs last, g stays valid during it. */
static void get_finish(https_get_t *g, const https_response_t *res, const char *errmsg)
{
    https_get_cb cb = g->cb;

    if (g->state == ST_DONE)
        return;
    g->cb = NULL;
    get_close(g);
    ERR_clear_error();
    if (cb)
        cb(g->arg, res, errmsg);
}

static void get_fail(https_get_t *g, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    get_finish(g, NULL, msg);
}

void https_get_cancel(https_get_t *g)
{
    if (!g)
        return;
    g->cb = NULL;
    if (g->state != ST_DONE)
        get_close(g);
}

/* ---- the answer ---- */

/* The value of header name (lower case, with its colon) in [h, end), or NULL. */
static const char *header_value(const char *h, const char *end, const char *name, size_t *len)
{
    size_t nlen = strlen(name);

    while (h < end) {
        const char *eol = memchr(h, '\n', (size_t)(end - h));
        if (!eol)
            eol = end;
        if ((size_t)(eol - h) > nlen && strncasecmp(h, name, nlen) == 0) {
            const char *v = h + nlen, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        h = eol + 1;
    }
    return NULL;
}

/* max-age=N of a Cache-Control value; -1 when absent or not a number. */
static long cache_max_age(const char *v, size_t len)
{
    for (size_t i = 0; i + 8 <= len; i++) {
        if (strncasecmp(v + i, "max-age=", 8) != 0 || (i > 0 && v[i - 1] != ' ' && v[i - 1] != ','))
            continue;
        long n = 0;
        size_t j = i + 8;
        if (j >= len || !isdigit((unsigned char)v[j]))
            return -1;
        for (; j < len && isdigit((unsigned char)v[j]); j++)
            n = n > LONG_MAX / 10 - 10 ? LONG_MAX / 10 : n * 10 + (v[j] - '0');
        return n;
    }
    return -1;
}

static void get_complete(https_get_t *g)
{
    const char *r = g->resp, *hend, *v;
    size_t vlen, hlen;
    https_response_t res = {.max_age = -1};

    g->resp[g->resp_len] = '\0';
    hend = g->resp_len >= 4 ? memmem(r, g->resp_len, "\r\n\r\n", 4) : NULL;
    if (!hend || (size_t)(hend - r) > HEADERS_MAX) {
        get_fail(g, "malformed HTTP answer (no end of headers)");
        return;
    }
    hlen = (size_t)(hend - r) + 4;
    if (sscanf(r, "HTTP/1.%*[01] %3d", &res.status) != 1 || res.status < 100 || res.status > 599) {
        get_fail(g, "malformed HTTP status line");
        return;
    }
    if (header_value(r, hend, "transfer-encoding:", &vlen)) {
        get_fail(g, "unexpected Transfer-Encoding in an HTTP/1.0 answer");
        return;
    }
    res.body = r + hlen;
    res.body_len = g->resp_len - hlen;
    if ((v = header_value(r, hend, "content-length:", &vlen))) {
        char num[24];
        char *e;
        if (vlen == 0 || vlen >= sizeof num) {
            get_fail(g, "bad Content-Length");
            return;
        }
        memcpy(num, v, vlen);
        num[vlen] = '\0';
        unsigned long long cl = strtoull(num, &e, 10);
        if (*e || cl != res.body_len) {
            get_fail(g, "answer truncated (Content-Length %s, got %zu bytes)", num, res.body_len);
            return;
        }
    }
    if (res.body_len > g->max_body) {
        get_fail(g, "answer body larger than %zu bytes", g->max_body);
        return;
    }
    if ((v = header_value(r, hend, "cache-control:", &vlen)))
        res.max_age = cache_max_age(v, vlen);
    get_finish(g, &res, NULL);
}

/* ---- TLS over memory BIOs ---- */

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    https_get_t *g = w->g;
    free(w);
    if (status < 0 && g->state != ST_DONE)
        get_fail(g, "write to %s failed: %s", g->host, uv_strerror(status));
}

/* Sends what OpenSSL has written to the network BIO. 0, or -1 (failed: g is DONE). */
static int get_flush(https_get_t *g)
{
    size_t n;

    while ((n = BIO_ctrl_pending(g->wbio)) > 0) {
        write_req_t *w = malloc(sizeof *w + n);
        if (!w) {
            get_fail(g, "out of memory");
            return -1;
        }
        int got = BIO_read(g->wbio, w->data, (int)n);
        if (got <= 0) {
            free(w);
            break;
        }
        w->g = g;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
        int rc = uv_write(&w->req, (uv_stream_t *)&g->tcp, &b, 1, on_write);
        if (rc < 0) {
            free(w);
            get_fail(g, "write to %s failed: %s", g->host, uv_strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void tls_fail(https_get_t *g, const char *what)
{
    long vr = SSL_get_verify_result(g->ssl);
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;

    if (vr != X509_V_OK)
        get_fail(g, "%s: server certificate of %s refused: %s", what, g->host,
                 X509_verify_cert_error_string(vr));
    else
        get_fail(g, "%s with %s failed: %s", what, g->host, reason ? reason : "protocol error");
}

/* Is ret of an SSL call "come back with more bytes", not an error? */
static bool tls_wants(https_get_t *g, int ret)
{
    int e = SSL_get_error(g->ssl, ret);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

static int resp_append(https_get_t *g, const char *data, size_t n)
{
    if (n > g->resp_max - g->resp_len)
        return -1;
    memcpy(g->resp + g->resp_len, data, n);
    g->resp_len += n;
    return 0;
}

/* Moves the exchange on as far as the bytes received allow. */
static void tls_advance(https_get_t *g)
{
    int r;

    if (!g->handshaken) {
        r = SSL_do_handshake(g->ssl);
        if (r == 1)
            g->handshaken = true;
        else if (!tls_wants(g, r)) {
            tls_fail(g, "TLS handshake");
            return;
        }
    }
    if (g->handshaken && !g->request_sent) {
        r = SSL_write(g->ssl, g->request, (int)g->request_len);
        if (r > 0)
            g->request_sent = true;
        else if (!tls_wants(g, r)) {
            tls_fail(g, "TLS write");
            return;
        }
    }
    while (g->request_sent) {
        char buf[16384];
        r = SSL_read(g->ssl, buf, sizeof buf);
        if (r > 0) {
            if (resp_append(g, buf, (size_t)r) != 0) {
                get_fail(g, "answer larger than %zu bytes", g->resp_max);
                return;
            }
            continue;
        }
        if (SSL_get_error(g->ssl, r) == SSL_ERROR_ZERO_RETURN) {
            get_complete(g); /* close_notify: the whole answer is here */
            return;
        }
        if (!tls_wants(g, r)) {
            tls_fail(g, "TLS read");
            return;
        }
        break;
    }
    get_flush(g);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    https_get_t *g = h->data;
    (void)suggested;
    *buf = uv_buf_init(g->rx, sizeof g->rx);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    https_get_t *g = s->data;

    if (g->state == ST_DONE)
        return;
    if (nread > 0) {
        if (BIO_write(g->rbio, buf->base, (int)nread) != (int)nread) {
            get_fail(g, "out of memory");
            return;
        }
        tls_advance(g);
    } else if (nread == UV_EOF) {
        /*
         * A TCP close without close_notify: the answer stands if its
         * Content-Length (when sent) is met; a truncated JSON document
         * fails its parse anyway.
         */
        if (!g->request_sent) {
            get_fail(g, "%s closed the connection during the TLS handshake", g->host);
            return;
        }
        get_complete(g);
    } else if (nread < 0) {
        get_fail(g, "read from %s failed: %s", g->host, uv_strerror((int)nread));
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    https_get_t *g = req->data;

    if (g->state == ST_DONE)
        return;
    if (status < 0) {
        get_fail(g, "cannot connect to %s port %d: %s", g->host, g->port, uv_strerror(status));
        return;
    }
    g->state = ST_TLS;
    uv_read_start((uv_stream_t *)&g->tcp, on_alloc, on_read);
    tls_advance(g);
}

static void on_resolved(void *arg, int status, const resolve_result_t *res)
{
    https_get_t *g = arg;
    struct sockaddr_storage sa;
    int rc;

    g->resolving = NULL;
    if (status < 0) {
        get_fail(g, "cannot resolve %s: %s", g->host, uv_strerror(status));
        return;
    }
    rc = strchr(res->addr[0], ':') ? uv_ip6_addr(res->addr[0], g->port, (struct sockaddr_in6 *)&sa)
                                   : uv_ip4_addr(res->addr[0], g->port, (struct sockaddr_in *)&sa);
    if (rc == 0) {
        g->state = ST_CONNECTING;
        g->connect.data = g;
        rc = uv_tcp_connect(&g->connect, &g->tcp, (struct sockaddr *)&sa, on_connect);
    }
    if (rc < 0)
        get_fail(g, "cannot connect to %s: %s", res->addr[0], uv_strerror(rc));
}

static void on_timeout(uv_timer_t *t)
{
    https_get_t *g = t->data;
    get_fail(g, "no complete answer from %s within %d ms", g->host, g->timeout_ms);
}

/* ---- start ---- */

/* The TLS side: SNI and the name (or IP) the certificate must carry. */
static int tls_setup(https_get_t *g, SSL_CTX *ctx)
{
    bool ip = resolve_is_literal(g->host);

    g->ssl = SSL_new(ctx);
    g->rbio = BIO_new(BIO_s_mem());
    g->wbio = BIO_new(BIO_s_mem());
    if (!g->ssl || !g->rbio || !g->wbio) {
        BIO_free(g->rbio);
        BIO_free(g->wbio);
        return -1;
    }
    SSL_set_bio(g->ssl, g->rbio, g->wbio);
    SSL_set_connect_state(g->ssl);
    if (ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(g->ssl), g->host) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(g->ssl, g->host) != 1 || SSL_set1_host(g->ssl, g->host) != 1)
        return -1;
    return 0;
}

https_get_t *https_get_start(uv_loop_t *loop, SSL_CTX *ctx, const char *url, size_t max_body,
                             int timeout_ms, https_get_cb cb, void *arg, char *err, size_t errlen)
{
    https_get_t *g = calloc(1, sizeof *g);
    size_t path_at;
    int e = 0;

    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_url(url, g->host, &g->port, &path_at, err, errlen) != 0)
        goto fail;
    bool v6 = strchr(g->host, ':') != NULL;
    size_t cap = strlen(url) + strlen(g->host) + 160;
    g->request = malloc(cap);
    g->resp_max = max_body + HEADERS_MAX;
    g->resp = malloc(g->resp_max + 1); /* + a NUL for sscanf */
    if (!g->request || !g->resp || max_body > (size_t)INT_MAX || tls_setup(g, ctx) != 0) {
        snprintf(err, errlen, "cannot set up the request");
        goto fail;
    }
    char port[8] = "";
    if (g->port != 443) /* Host names the port unless it is the default */
        snprintf(port, sizeof port, ":%d", g->port);
    g->request_len = (size_t)snprintf(g->request, cap,
                                      "GET %s HTTP/1.0\r\nHost: %s%s%s%s\r\n"
                                      "Accept: application/json\r\nUser-Agent: retronova-hub\r\n"
                                      "Connection: close\r\n\r\n",
                                      url + path_at, v6 ? "[" : "", g->host, v6 ? "]" : "", port);
    g->loop = loop;
    g->cb = cb;
    g->arg = arg;
    g->max_body = max_body;
    g->timeout_ms = timeout_ms;
    g->resolving = resolve_start(loop, g->host, on_resolved, g, &e);
    if (!g->resolving) {
        snprintf(err, errlen, "cannot resolve %s: %s", g->host, uv_strerror(e));
        goto fail;
    }
    /* From here on g is freed through its handles' close callbacks. */
    uv_timer_init(loop, &g->timer);
    uv_tcp_init(loop, &g->tcp);
    g->timer.data = g->tcp.data = g;
    g->open_handles = 2;
    uv_timer_start(&g->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return g;
fail:
    SSL_free(g->ssl);
    free(g->request);
    free(g->resp);
    free(g);
    ERR_clear_error();
    return NULL;
}
