/* router: route matching and query parsing (see router.h). */
#include "router.h"

#include <string.h>

/* Matches one pattern against a path; fills params. true on a match. */
static bool pattern_match(const char *pat, const char *path, size_t len, route_match_t *out)
{
    size_t i = 0;
    int np = 0;
    while (*pat) {
        if (*pat == '{') {
            const char *close = strchr(pat, '}');
            if (!close || np == ROUTE_MAX_PARAMS)
                return false;
            size_t start = i;
            while (i < len && path[i] != '/')
                i++;
            if (i == start)
                return false;
            out->params[np].value = path + start;
            out->params[np].len = i - start;
            np++;
            pat = close + 1;
            continue;
        }
        if (i >= len || path[i] != *pat)
            return false;
        i++;
        pat++;
    }
    if (i != len)
        return false;
    out->nparams = np;
    return true;
}

int router_match(const route_table_t *const *tables, size_t ntables, http_method_t method,
                 const char *path, size_t len, route_match_t *out)
{
    int result = ROUTE_NOT_FOUND;
    route_match_t m;
    for (size_t t = 0; t < ntables; t++) {
        for (size_t r = 0; r < tables[t]->count; r++) {
            const route_t *route = &tables[t]->routes[r];
            memset(&m, 0, sizeof m);
            if (!pattern_match(route->pattern, path, len, &m))
                continue;
            if (route->method != method && !(method == HTTP_HEAD && route->method == HTTP_GET)) {
                result = ROUTE_BAD_METHOD;
                continue;
            }
            m.route = route;
            *out = m;
            return ROUTE_FOUND;
        }
    }
    return result;
}

int router_query_param(const char *query, size_t qlen, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name), i = 0;
    if (!query || outlen == 0)
        return -1;
    while (i < qlen) {
        const char *frag = query + i;
        const char *nul = memchr(frag, '\0', qlen - i);
        size_t flen = nul ? (size_t)(nul - frag) : qlen - i;
        const char *eq = memchr(frag, '=', flen);
        size_t klen = eq ? (size_t)(eq - frag) : flen;
        if (klen == nlen && memcmp(frag, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : frag + flen;
            size_t vlen = (size_t)(frag + flen - v);
            if (vlen + 1 > outlen)
                return -1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return (int)vlen;
        }
        i += flen + 1;
    }
    return -1;
}

long long router_parse_id(const char *s, size_t len)
{
    if (len == 0 || len > 16 || s[0] == '0')
        return -1;
    long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= (1LL << 53) ? v : -1;
}

/* The length of the sequence lead byte c starts, or 0 when c cannot lead one. */
static size_t utf8_seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0; /* a continuation byte, an overlong lead (c0, c1) or beyond U+10FFFF */
}

bool router_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq_len(s[i]);
        if (n == 0 || n > len - i)
            return false;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        /* the second byte's range rules out overlongs, surrogates and > U+10FFFF */
        if ((s[i] == 0xe0 && s[i + 1] < 0xa0) || (s[i] == 0xed && s[i + 1] > 0x9f) ||
            (s[i] == 0xf0 && s[i + 1] < 0x90) || (s[i] == 0xf4 && s[i + 1] > 0x8f))
            return false;
        i += n;
    }
    return true;
}

bool router_origin_allowed(const char *list, const char *origin, size_t len)
{
    if (!list || !len)
        return false;
    while (*list) {
        while (*list == ' ' || *list == ',')
            list++;
        const char *end = list;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > list && last[-1] == ' ')
            last--;
        if ((size_t)(last - list) == len && memcmp(list, origin, len) == 0)
            return true;
        list = end;
    }
    return false;
}

static const char *const method_names[] = {
    [HTTP_GET] = "GET",     [HTTP_POST] = "POST",     [HTTP_PUT] = "PUT",
    [HTTP_PATCH] = "PATCH", [HTTP_DELETE] = "DELETE", [HTTP_OPTIONS] = "OPTIONS",
    [HTTP_HEAD] = "HEAD",   [HTTP_OTHER] = "OTHER",
};
static const char *const access_names[] = {
    [ROUTE_PUBLIC] = "public",
    [ROUTE_USER] = "user",
    [ROUTE_ADMIN] = "admin",
};

int router_print_routes(const route_table_t *const *tables, size_t ntables,
                        const route_table_t *debug, FILE *out)
{
    for (size_t t = 0; t < ntables; t++) {
        for (size_t i = 0; i < tables[t]->count; i++) {
            const route_t *r = &tables[t]->routes[i];
            if (fprintf(out, "%s %s %s%s\n", method_names[r->method], r->pattern,
                        access_names[r->access], tables[t] == debug ? " debug" : "") < 0)
                return -1;
        }
    }
    return fflush(out) == 0 ? 0 : -1;
}
