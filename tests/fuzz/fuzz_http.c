/*
 * fuzz_http: the hub's own HTTP-side parsing — route matching over the real
 * route tables, query parameters and ids. lws parses the HTTP framing; what
 * it hands us (path, query, headers) is arbitrary bytes, and this target
 * feeds exactly that. Input layout: 1 byte method, then "path?query", the
 * query as http.c keeps it (decoded fragments, NUL-separated).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "router.h"

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
    return 0;
}
