/*
 * https_get: one HTTPS GET on the loop, never blocking it, for small
 * documents the hub fetches itself (Google's Firebase signing keys).
 *
 * The host is resolved with uv_getaddrinfo (storage/resolve.h), connected
 * with uv_tcp, and TLS runs in OpenSSL over memory BIOs: every byte moves
 * through libuv. The server certificate is verified against the CAs of the
 * SSL_CTX (https_ctx_new: the system's, or one CA file) and must name the
 * URL's host (or IP). The request is HTTP/1.0 with Connection: close, so the
 * answer has no chunked encoding and ends with the connection. The response
 * is capped; one uv timer bounds the whole exchange.
 *
 * Loop thread only.
 */
#ifndef RN_HTTPS_GET_H
#define RN_HTTPS_GET_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <uv.h>

typedef struct https_get https_get_t;

typedef struct https_response {
    int status;       /* HTTP status code */
    long max_age;     /* Cache-Control max-age in seconds; -1 when absent */
    const char *body; /* borrowed for the callback */
    size_t body_len;
} https_response_t;

/*
 * Called once, on the loop, unless cancelled: res (borrowed) for any HTTP
 * answer, whatever its status; or res NULL and errmsg (borrowed, one line)
 * when there was none: no address, refused, TLS or certificate failure,
 * timeout, malformed or oversized answer.
 */
typedef void (*https_get_cb)(void *arg, const https_response_t *res, const char *errmsg);

/*
 * A client context: TLS 1.2+, peer verification on, trusting ca_file's CAs
 * when given, else the system's. NULL with a message in err.
 */
SSL_CTX *https_ctx_new(const char *ca_file, char *err, size_t errlen);

/*
 * Checks url is https://HOST[:PORT]/PATH with HOST a name or an IP literal
 * (IPv6 in brackets). 0, or -1 with a message in err.
 */
int https_url_check(const char *url, char *err, size_t errlen);

/*
 * Starts a GET of url (see https_url_check). ctx is borrowed: keep it alive
 * until the callback ran or the request was cancelled. The body may be at
 * most max_body bytes; timeout_ms bounds everything. Returns the request, or
 * NULL (bad URL, out of memory; message in err) and never calls back.
 */
https_get_t *https_get_start(uv_loop_t *loop, SSL_CTX *ctx, const char *url, size_t max_body,
                             int timeout_ms, https_get_cb cb, void *arg, char *err, size_t errlen);

/*
 * Cancels a request whose callback has not run: it never will. Its memory is
 * released once its handles are closed (run the loop). Not for use after
 * the callback ran.
 */
void https_get_cancel(https_get_t *g);

#endif
