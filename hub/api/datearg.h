/*
 * datearg: a calendar date in a query parameter (?from=2026-12-01), checked
 * before it reaches SQL, so a bad date is a 400, never a failed cast.
 */
#ifndef RN_DATEARG_H
#define RN_DATEARG_H

#include "http.h"

#define DATEARG_TEXT 11 /* YYYY-MM-DD and its NUL */

/*
 * Reads optional parameter name as a real date (YYYY-MM-DD, year 2000..9999)
 * into text; *value is text, or NULL when absent. 0, or -1 after answering
 * 400 bad_request itself.
 */
int datearg_query(http_req_t *req, const char *name, char text[DATEARG_TEXT], const char **value);

#endif
