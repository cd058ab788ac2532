/*
 * router: matches an HTTP method and path against route tables, and reads
 * query parameters. Pure functions over bytes: no sockets, so it is fuzzed
 * (tests/fuzz/fuzz_http.c) and unit-tested directly.
 *
 * A pattern is a path whose segments may be "{name}" placeholders, e.g.
 * "/api/v1/reservations/{id}"; a placeholder matches one non-empty segment.
 */
#ifndef RN_ROUTER_H
#define RN_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum http_method {
    HTTP_GET = 0,
    HTTP_POST,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_HEAD,
    HTTP_OTHER
} http_method_t;

/* Who may call a route; checked before the handler runs (401 / 403). */
typedef enum route_access {
    ROUTE_PUBLIC = 0,
    ROUTE_USER,  /* a valid player or admin token */
    ROUTE_ADMIN, /* a valid token with the admin claim */
} route_access_t;

struct http_req;
typedef void (*route_handler_fn)(struct http_req *req);

typedef struct route {
    http_method_t method;
    const char *pattern;
    route_access_t access;
    route_handler_fn handler;
} route_t;

typedef struct route_table {
    const route_t *routes;
    size_t count;
} route_table_t;

#define ROUTE_MAX_PARAMS 4

typedef struct route_param {
    const char *value; /* points into the matched path; not NUL-terminated */
    size_t len;
} route_param_t;

typedef struct route_match {
    const route_t *route;
    int nparams;
    route_param_t params[ROUTE_MAX_PARAMS];
} route_match_t;

enum { ROUTE_FOUND = 0, ROUTE_NOT_FOUND = -1, ROUTE_BAD_METHOD = -2 };

/*
 * Finds the route for method + path[0..len) in tables. ROUTE_FOUND fills
 * out; ROUTE_BAD_METHOD when the path exists for another method (405).
 */
int router_match(const route_table_t *const *tables, size_t ntables, http_method_t method,
                 const char *path, size_t len, route_match_t *out);

/*
 * Copies the value of query parameter name into out (NUL-terminated). query
 * is qlen bytes of "name=value" fragments separated by NUL bytes, already
 * URL-decoded (lws decodes them; decoding again would turn "%2531" into "1").
 * Returns the value's length, or -1 when absent or longer than outlen-1.
 */
int router_query_param(const char *query, size_t qlen, const char *name, char *out, size_t outlen);

/* Parses a positive decimal id (1 .. 2^53) of exactly len bytes. -1 when not one. */
long long router_parse_id(const char *s, size_t len);

/*
 * true when s[0..len) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). NUL bytes count as valid here.
 */
bool router_utf8_valid(const char *s, size_t len);

/*
 * true when origin[0..len) is one of the comma-separated entries of list
 * (spaces around entries ignored; exact, case-sensitive match). A NULL or
 * empty list allows nothing.
 */
bool router_origin_allowed(const char *list, const char *origin, size_t len);

/*
 * Prints the routes of tables, one per line, in match order: "METHOD PATTERN
 * ACCESS" (ACCESS: public, user or admin), plus " debug" for the routes of
 * the table debug (NULL: none). What `retronova-hub routes` shows, so a test
 * compares the served routes with protocol/openapi.json without parsing C.
 * 0, or -1 when writing to out failed.
 */
int router_print_routes(const route_table_t *const *tables, size_t ntables,
                        const route_table_t *debug, FILE *out);

#endif
