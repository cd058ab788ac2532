/*
 * test_router: route matching, path parameters, query parsing and ids; the
 * edge checks (UTF-8, CORS origin list) and the chunked body decoder.
 */
#include "router.h"

#include "chunked.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void handler(struct http_req *req)
{
    (void)req;
}

static const route_t routes[] = {
    {HTTP_GET, "/api/v1/arcades", ROUTE_PUBLIC, handler},
    {HTTP_GET, "/api/v1/arcades/{id}", ROUTE_PUBLIC, handler},
    {HTTP_GET, "/api/v1/arcades/{id}/queue", ROUTE_PUBLIC, handler},
    {HTTP_DELETE, "/api/v1/reservations/{id}", ROUTE_USER, handler},
    {HTTP_POST, "/api/v1/friends/accept/{id}", ROUTE_USER, handler},
};
static const route_table_t table = {routes, sizeof routes / sizeof routes[0]};
static const route_table_t *const tables[] = {&table};

static int match(http_method_t m, const char *path, route_match_t *out)
{
    return router_match(tables, 1, m, path, strlen(path), out);
}

static void test_match(void)
{
    route_match_t m;
    CHECK(match(HTTP_GET, "/api/v1/arcades", &m) == ROUTE_FOUND && m.route == &routes[0] &&
              m.nparams == 0,
          "static path");
    CHECK(match(HTTP_GET, "/api/v1/arcades/42", &m) == ROUTE_FOUND && m.route == &routes[1] &&
              m.nparams == 1 && m.params[0].len == 2 && !memcmp(m.params[0].value, "42", 2),
          "one parameter");
    CHECK(match(HTTP_GET, "/api/v1/arcades/42/queue", &m) == ROUTE_FOUND && m.route == &routes[2],
          "parameter then literal");
    CHECK(match(HTTP_GET, "/api/v1/arcades/", &m) == ROUTE_NOT_FOUND, "empty parameter");
    CHECK(match(HTTP_GET, "/api/v1/arcades/42/", &m) == ROUTE_NOT_FOUND, "trailing slash");
    CHECK(match(HTTP_GET, "/api/v1/arcade", &m) == ROUTE_NOT_FOUND, "prefix only");
    CHECK(match(HTTP_GET, "/api/v1/arcadesX", &m) == ROUTE_NOT_FOUND, "longer literal");
    CHECK(match(HTTP_POST, "/api/v1/arcades", &m) == ROUTE_BAD_METHOD, "405 for another method");
    CHECK(match(HTTP_HEAD, "/api/v1/arcades", &m) == ROUTE_FOUND, "HEAD follows GET");
    CHECK(match(HTTP_DELETE, "/api/v1/reservations/7", &m) == ROUTE_FOUND &&
              m.route->access == ROUTE_USER,
          "delete route with access");
    CHECK(match(HTTP_GET, "", &m) == ROUTE_NOT_FOUND, "empty path");
}

/* A query as http.c keeps it: lws's decoded fragments, NUL-separated. */
static void test_query(void)
{
    char out[32];
    static const char q[] = "a=1\0ms=250\0name=J\xc3\xa9r\xc3\xb4me&B=%41\0empty=\0flag";
    size_t n = sizeof q - 1;
    CHECK(router_query_param(q, n, "ms", out, sizeof out) == 3 && !strcmp(out, "250"), "plain");
    CHECK(router_query_param(q, n, "a", out, sizeof out) == 1 && !strcmp(out, "1"), "first");
    CHECK(router_query_param(q, n, "name", out, sizeof out) > 0 &&
              !strcmp(out, "J\xc3\xa9r\xc3\xb4me&B=%41"),
          "taken as it is: no second decoding, '&' and '=' inside a value");
    CHECK(router_query_param(q, n, "empty", out, sizeof out) == 0 && !strcmp(out, ""), "empty");
    CHECK(router_query_param(q, n, "flag", out, sizeof out) == 0, "flag without '='");
    CHECK(router_query_param(q, n, "B", out, sizeof out) == -1, "not split on '&'");
    CHECK(router_query_param(q, n, "missing", out, sizeof out) == -1, "absent");
    CHECK(router_query_param(q, n, "m", out, sizeof out) == -1, "no prefix match");
    CHECK(router_query_param("x=123456", 8, "x", out, 4) == -1, "too long for out");
    CHECK(router_query_param("", 0, "x", out, sizeof out) == -1, "no query");
}

static void test_ids(void)
{
    CHECK(router_parse_id("1", 1) == 1, "one");
    CHECK(router_parse_id("9007199254740992", 16) == 9007199254740992LL, "2^53");
    CHECK(router_parse_id("9007199254740993", 16) == -1, "over 2^53");
    CHECK(router_parse_id("0", 1) == -1, "zero");
    CHECK(router_parse_id("007", 3) == -1, "leading zero");
    CHECK(router_parse_id("-1", 2) == -1, "negative");
    CHECK(router_parse_id("12a", 3) == -1, "junk");
    CHECK(router_parse_id("", 0) == -1, "empty");
}

#define UTF8(s) router_utf8_valid((s), sizeof(s) - 1)

static void test_utf8(void)
{
    CHECK(UTF8("") && UTF8("abc") && UTF8("\xc3\xa9t\xc3\xa9") && UTF8("\xe2\x82\xac") &&
              UTF8("\xf0\x9f\x95\xb9") && UTF8("\xf4\x8f\xbf\xbf") && UTF8("a\0b"),
          "valid UTF-8");
    CHECK(!UTF8("\xff") && !UTF8("\xfe\xff") && !UTF8("\x80") && !UTF8("\xc3"), "invalid bytes");
    CHECK(!UTF8("\xc0\xaf") && !UTF8("\xe0\x80\xaf") && !UTF8("\xf0\x80\x80\xaf"), "overlong");
    CHECK(!UTF8("\xed\xa0\x80") && !UTF8("\xf4\x90\x80\x80"), "surrogate, over U+10FFFF");
    CHECK(!UTF8("\xe2\x82") && !UTF8("\xe2\x28\xa1"), "truncated, bad continuation");
}

static void test_origins(void)
{
    const char *list = "https://a.example, http://127.0.0.1:8080 ,https://b.example";
#define ALLOWED(o) router_origin_allowed(list, (o), strlen(o))
    CHECK(ALLOWED("https://a.example") && ALLOWED("http://127.0.0.1:8080") &&
              ALLOWED("https://b.example"),
          "listed origins");
    CHECK(!ALLOWED("https://a.example.evil") && !ALLOWED("https://a.exampl") &&
              !ALLOWED("HTTPS://A.EXAMPLE") && !ALLOWED("null") && !ALLOWED(""),
          "exact match only");
    CHECK(!router_origin_allowed(NULL, "x", 1) && !router_origin_allowed("", "x", 1),
          "no list, nothing allowed");
#undef ALLOWED
}

static int decode(const char *in, size_t step, char *out, size_t cap, size_t *outlen)
{
    chunked_t c;
    size_t len = strlen(in), used = 0;
    chunked_init(&c);
    *outlen = 0;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        int rc = chunked_feed(&c, in + i, n, &used, out, cap, outlen);
        if (rc != CHUNKED_MORE)
            return rc;
    }
    return CHUNKED_MORE;
}

static void test_chunked(void)
{
    char out[64];
    size_t n;
    const char *body = "4;x=y\r\nWiki\r\nB\r\npedia in \r\n\r\n0\r\nT: v\r\n\r\n";
    for (size_t step = 1; step <= strlen(body); step++)
        CHECK(decode(body, step, out, sizeof out, &n) == CHUNKED_DONE && n == 15 &&
                  !memcmp(out, "Wikipedia in \r\n", 15),
              "decoded whatever the split");
    chunked_t c;
    size_t used;
    chunked_init(&c);
    n = 0;
    CHECK(chunked_feed(&c, "1\r\na\r\n0\r\n\r\nGET /", 16, &used, out, sizeof out, &n) ==
                  CHUNKED_DONE &&
              used == 11 && n == 1,
          "stops at the end of the body");
    CHECK(decode("4\r\nabc\r\n0\r\n\r\n", 1, out, sizeof out, &n) == CHUNKED_EBAD, "short data");
    CHECK(decode("zz\r\n", 1, out, sizeof out, &n) == CHUNKED_EBAD, "not hex");
    CHECK(decode("\r\n", 1, out, sizeof out, &n) == CHUNKED_EBAD, "no size");
    CHECK(decode("1\na\r\n", 1, out, sizeof out, &n) == CHUNKED_EBAD, "bare LF");
    CHECK(decode("123456789\r\n", 1, out, sizeof out, &n) == CHUNKED_EBAD, "size too long");
    CHECK(decode("41\r\n", 1, out, sizeof out, &n) == CHUNKED_ETOOBIG, "over the cap");
    CHECK(decode("40\r\n", 1, out, sizeof out, &n) == CHUNKED_MORE, "exactly the cap");
}

/* The route table as `retronova-hub routes` prints it. */
static void test_print_routes(void)
{
    static const route_t dbg[] = {{HTTP_GET, "/api/v1/debug/sleep", ROUTE_PUBLIC, handler}};
    static const route_t admin[] = {
        {HTTP_PUT, "/api/v1/admin/users/{id}/tickets", ROUTE_ADMIN, handler}};
    static const route_table_t dbg_table = {dbg, 1}, admin_table = {admin, 1};
    const route_table_t *const all[] = {&table, &admin_table, &dbg_table};
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    CHECK(out != NULL, "open_memstream");
    if (!out)
        return;
    CHECK(router_print_routes(all, 3, &dbg_table, out) == 0, "router_print_routes: 0");
    fclose(out);
    CHECK(text && strcmp(text, "GET /api/v1/arcades public\n"
                               "GET /api/v1/arcades/{id} public\n"
                               "GET /api/v1/arcades/{id}/queue public\n"
                               "DELETE /api/v1/reservations/{id} user\n"
                               "POST /api/v1/friends/accept/{id} user\n"
                               "PUT /api/v1/admin/users/{id}/tickets admin\n"
                               "GET /api/v1/debug/sleep public debug\n") == 0,
          "one line per route in match order: method, pattern, access, debug marked");
    free(text);
    text = NULL;
    out = open_memstream(&text, &len);
    CHECK(out && router_print_routes(all, 0, NULL, out) == 0, "no tables: 0");
    if (out)
        fclose(out);
    CHECK(len == 0, "no tables: nothing printed");
    free(text);
}

int main(void)
{
    test_match();
    test_query();
    test_ids();
    test_utf8();
    test_origins();
    test_chunked();
    test_print_routes();
    return check_report();
}
