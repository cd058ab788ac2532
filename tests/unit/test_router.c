/*
 * test_router: route matching, path parameters, query parsing and ids.
 */
#include "router.h"

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

int main(void)
{
    test_match();
    test_query();
    test_ids();
    return check_report();
}
