/*
 * datearg: dates in query parameters (see datearg.h).
 */
#include "datearg.h"

#define DATEARG_QUERY_MAX 1024 /* http.c's longest query */

#include <stdio.h>
#include <string.h>
#include <time.h>

/* 1 when y-m-d is a day of the calendar (timegm normalises 02-30 to 03-02). */
static int real_date(int y, int m, int d)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = 12};
    time_t t = timegm(&tm);
    struct tm back;
    return t != (time_t)-1 && gmtime_r(&t, &back) && back.tm_year == y - 1900 &&
           back.tm_mon == m - 1 && back.tm_mday == d;
}

int datearg_query(http_req_t *req, const char *name, char text[DATEARG_TEXT], const char **value)
{
    char raw[DATEARG_QUERY_MAX]; /* as large as a whole query: -1 means absent */
    int y, m, d, end = 0;
    *value = NULL;
    int n = http_req_query(req, name, raw, sizeof raw);
    if (n < 0)
        return 0;
    if (n != DATEARG_TEXT - 1 || sscanf(raw, "%4d-%2d-%2d%n", &y, &m, &d, &end) != 3 ||
        end != DATEARG_TEXT - 1 || y < 2000 || !real_date(y, m, d)) {
        http_respond_error(req, 400, "bad_request", "%s must be a date, YYYY-MM-DD", name);
        return -1;
    }
    memcpy(text, raw, DATEARG_TEXT);
    *value = text;
    return 0;
}
