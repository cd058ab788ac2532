/*
 * fuzz_http: the hub's own HTTP-side parsing — route matching over the real
 * route tables, query parameters and ids. lws parses the HTTP framing; what
 * it hands us (path, query, headers) is arbitrary bytes, and this target
 * feeds exactly that. Input layout: 1 byte method, then "path?query", the
 * query as http.c keeps it (decoded fragments, NUL-separated).
 *
 * The same bytes (after the method byte) also go through the edge checks
 * http.c applies (UTF-8, the CORS origin list) and, as a request body, through
 * the chunked decoder, fed whole and split at the method byte's position:
 * both must agree, and the output never exceeds its capacity.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "chunked.h"
#include "http.h"
#include "router.h"

#define BODY_CAP 4096

/* Decodes body[0..len) in two feeds split at cut; the result code and the data. */
static int decode(const char *body, size_t len, size_t cut, char *out, size_t *outlen)
{
    chunked_t c;
    size_t used = 0;
    chunked_init(&c);
    *outlen = 0;
    int rc = chunked_feed(&c, body, cut, &used, out, BODY_CAP, outlen);
    if (used > cut || *outlen > BODY_CAP)
        abort();
    if (rc != CHUNKED_MORE)
        return rc;
    rc = chunked_feed(&c, body + cut, len - cut, &used, out, BODY_CAP, outlen);
    if (used > len - cut || *outlen > BODY_CAP)
        abort();
    return rc;
}

static void check_edge(const char *bytes, size_t len, unsigned split)
{
    static char whole[BODY_CAP], parts[BODY_CAP];
    size_t wlen, plen;
    router_utf8_valid(bytes, len);
    router_origin_allowed("https://a.example, http://127.0.0.1:8080 ,x", bytes, len);
    int a = decode(bytes, len, len, whole, &wlen);
    int b = decode(bytes, len, len ? split % (len + 1) : 0, parts, &plen);
    /* where the split falls must not change the outcome of a well-formed body */
    if (a == CHUNKED_DONE && (b != CHUNKED_DONE || wlen != plen || memcmp(whole, parts, wlen)))
        abort();
}

static const route_table_t *const tables[] = {&api_ops_routes};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    http_method_t method = (http_method_t)(data[0] % (HTTP_OTHER + 1));
    const char *path = (const char *)data + 1;
    size_t len = size - 1;
    const char *q = memchr(path, '?', len);
    size_t plen = q ? (size_t)(q - path) : len;

    route_match_t m;
    if (router_match(tables, 1, method, path, plen, &m) == ROUTE_FOUND) {
        for (int i = 0; i < m.nparams; i++) {
            if (m.params[i].value < path || m.params[i].value + m.params[i].len > path + plen)
                abort();
            router_parse_id(m.params[i].value, m.params[i].len);
        }
    }
    if (q) {
        char out[64];
        int n = router_query_param(q + 1, len - plen - 1, "ms", out, sizeof out);
        if (n >= (int)sizeof out || (n >= 0 && strlen(out) != (size_t)n))
            abort();
    }
    router_parse_id(path, plen);
    check_edge(path, len, data[0]);
    return 0;
}
