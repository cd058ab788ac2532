/*
 * api_reports: the business numbers (issue 10 item 6), admin only.
 *
 *   GET /api/v1/admin/stats: rn_admin_stats (storage/sql/07_reports.sql)
 *       with the players online over every process (deploy.h);
 *   GET /api/v1/admin/reports/{revenue|plays|queues}?from&to&arcade_id&game_id:
 *       rn_admin_report, as JSON, or as CSV (RFC 4180: a header row, CRLF,
 *       fields quoted when they hold a comma, a quote or a line break) when
 *       the Accept header asks for text/csv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datearg.h"
#include "db_call.h"
#include "deploy.h"
#include "http.h"

#define REPORT_DAYS_DEFAULT 30 /* without from/to: the last 30 days, today included */

/* GET /api/v1/admin/stats */
static void get_stats(http_req_t *req)
{
    deploy_t *d = hub_deploy(http_req_hub(req));
    char online[96];
    snprintf(online, sizeof online, "{\"players_online\": %ld, \"processes\": %ld}",
             d ? deploy_players_online(d) : 0, d ? deploy_processes(d) : 1);
    const char *params[] = {online};
    db_call(req, "SELECT rn_admin_stats($1::jsonb)", 1, params, NULL, NULL);
}

/* A growing CSV text; on allocation failure it stops growing and fails. */
typedef struct csv {
    char *buf;
    size_t len, cap;
    int failed;
} csv_t;

static void csv_put(csv_t *c, const char *s, size_t n)
{
    if (c->failed)
        return;
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (c->len + n + 1 > cap)
            cap *= 2;
        char *buf = realloc(c->buf, cap);
        if (!buf) {
            c->failed = 1;
            return;
        }
        c->buf = buf;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, s, n);
    c->len += n;
    c->buf[c->len] = '\0';
}

/* One field: quoted (inner quotes doubled) when it holds a comma, quote, CR or LF. */
static void csv_field(csv_t *c, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        csv_put(c, s, strlen(s));
        return;
    }
    csv_put(c, "\"", 1);
    for (const char *p = s; *p; p++) {
        csv_put(c, p, 1);
        if (*p == '"')
            csv_put(c, "\"", 1); /* doubled */
    }
    csv_put(c, "\"", 1);
}

/* A JSON value as a field: strings as they are, null empty, numbers as JSON writes them. */
static void csv_value(csv_t *c, const json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v)) {
        csv_field(c, json_string_value(v));
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) {
        c->failed = 1;
        return;
    }
    csv_field(c, text);
    free(text);
}

/* The report's columns (header row) and items as CSV; NULL on allocation failure. */
static char *report_csv(const json_t *body, size_t *len)
{
    csv_t c = {0};
    const json_t *columns = json_object_get(body, "columns");
    size_t i, j;
    json_t *col, *item;
    json_array_foreach (columns, j, col) {
        if (j)
            csv_put(&c, ",", 1);
        csv_field(&c, json_string_value(col));
    }
    csv_put(&c, "\r\n", 2);
    json_array_foreach (json_object_get(body, "items"), i, item) {
        json_array_foreach (columns, j, col) {
            if (j)
                csv_put(&c, ",", 1);
            csv_value(&c, json_object_get(item, json_string_value(col)));
        }
        csv_put(&c, "\r\n", 2);
    }
    if (c.failed) {
        free(c.buf);
        return NULL;
    }
    *len = c.len;
    return c.buf;
}

/* db_result_cb: a 200 report in CSV (the caller asked for it); errors stay JSON. */
static void respond_csv(http_req_t *req, json_t *result, void *arg)
{
    (void)arg;
    if (json_integer_value(json_object_get(result, "status")) != 200) {
        db_respond(req, result);
        return;
    }
    size_t len = 0;
    char *text = report_csv(json_object_get(result, "body"), &len);
    if (!text) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    http_respond_text(req, 200, "text/csv; charset=utf-8", text, len);
}

/* GET /api/v1/admin/reports/{kind}?from=YYYY-MM-DD&to=YYYY-MM-DD&arcade_id&game_id */
static void get_report(http_req_t *req)
{
    const char *kind = http_req_param(req, 0);
    char from_text[DATEARG_TEXT], to_text[DATEARG_TEXT], arcade_text[HTTP_NUM_TEXT],
        game_text[HTTP_NUM_TEXT];
    const char *from, *to, *arcade, *game;
    if (!kind || (strcmp(kind, "revenue") && strcmp(kind, "plays") && strcmp(kind, "queues"))) {
        http_respond_error(req, 404, "unknown_report", "reports: revenue, plays, queues");
        return;
    }
    if (datearg_query(req, "from", from_text, &from) || datearg_query(req, "to", to_text, &to) ||
        http_req_query_id(req, "arcade_id", arcade_text, &arcade) ||
        http_req_query_id(req, "game_id", game_text, &game))
        return;
    char days[HTTP_NUM_TEXT];
    snprintf(days, sizeof days, "%d", REPORT_DAYS_DEFAULT - 1);
    const char *params[] = {kind, from, to, arcade, game, days};
    db_call(req,
            "SELECT rn_admin_report($1, coalesce($2::date, coalesce($3::date, "
            "(now() AT TIME ZONE 'UTC')::date) - $6::integer), coalesce($3::date, "
            "(now() AT TIME ZONE 'UTC')::date), $4::bigint, $5::bigint)",
            6, params, http_req_accepts(req, "text/csv") ? respond_csv : NULL, NULL);
}

static const route_t routes[] = {
    {HTTP_GET, "/api/v1/admin/stats", ROUTE_ADMIN, get_stats},
    {HTTP_GET, "/api/v1/admin/reports/{kind}", ROUTE_ADMIN, get_report},
};

const route_table_t api_reports_routes = {routes, sizeof routes / sizeof routes[0]};
