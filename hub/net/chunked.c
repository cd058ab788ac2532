/* chunked: the chunked body decoder (see chunked.h). */
#include "chunked.h"

#include <string.h>

enum {
    ST_SIZE = 0,   /* hex digits of a chunk size */
    ST_EXT,        /* ";ext" after the size, up to CR */
    ST_SIZE_LF,    /* the LF ending the size line */
    ST_DATA,       /* remain data bytes */
    ST_DATA_CR,    /* the CRLF after a chunk's data */
    ST_DATA_LF,    /*   ... its LF */
    ST_TRAILER,    /* start of a trailer line (CR here ends the body) */
    ST_TRAILER_IN, /* inside a trailer line */
    ST_TRAILER_LF, /* LF of a trailer line */
    ST_END_LF,     /* LF of the final empty line */
};

void chunked_init(chunked_t *c)
{
    memset(c, 0, sizeof *c);
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* One byte of the framing (everything but chunk data). */
static int step(chunked_t *c, char ch)
{
    int v;
    switch (c->state) {
    case ST_SIZE:
        if ((v = hex_value(ch)) >= 0) {
            if (++c->digits > 8) /* 4 GiB: far over any body limit */
                return CHUNKED_EBAD;
            c->remain = c->remain * 16 + (size_t)v;
            return CHUNKED_MORE;
        }
        if (!c->digits)
            return CHUNKED_EBAD;
        if (ch == ';' || ch == ' ' || ch == '\t') {
            c->state = ST_EXT;
            c->line = 0;
            return CHUNKED_MORE;
        }
        __attribute__((fallthrough)); /* CR ends the size line */
    case ST_EXT:
        if (ch == '\r') {
            c->state = ST_SIZE_LF;
            return CHUNKED_MORE;
        }
        return c->state == ST_EXT && ++c->line < CHUNKED_LINE_MAX && ch != '\n' ? CHUNKED_MORE
                                                                                : CHUNKED_EBAD;
    case ST_SIZE_LF:
        if (ch != '\n')
            return CHUNKED_EBAD;
        c->state = c->remain ? ST_DATA : ST_TRAILER;
        return CHUNKED_MORE;
    case ST_DATA_CR:
        c->state = ST_DATA_LF;
        return ch == '\r' ? CHUNKED_MORE : CHUNKED_EBAD;
    case ST_DATA_LF:
        c->state = ST_SIZE;
        c->digits = 0;
        c->remain = 0;
        return ch == '\n' ? CHUNKED_MORE : CHUNKED_EBAD;
    case ST_TRAILER:
        if (ch == '\r') {
            c->state = ST_END_LF;
            return CHUNKED_MORE;
        }
        c->state = ST_TRAILER_IN;
        c->line = 0;
        __attribute__((fallthrough));
    case ST_TRAILER_IN:
        if (ch == '\r') {
            c->state = ST_TRAILER_LF;
            return CHUNKED_MORE;
        }
        return ++c->line < CHUNKED_LINE_MAX && ch != '\n' ? CHUNKED_MORE : CHUNKED_EBAD;
    case ST_TRAILER_LF:
        c->state = ST_TRAILER;
        return ch == '\n' ? CHUNKED_MORE : CHUNKED_EBAD;
    case ST_END_LF:
        return ch == '\n' ? CHUNKED_DONE : CHUNKED_EBAD;
    }
    return CHUNKED_EBAD;
}

int chunked_feed(chunked_t *c, const char *in, size_t len, size_t *used, char *out, size_t cap,
                 size_t *outlen)
{
    size_t i = 0;
    while (i < len) {
        if (c->state == ST_DATA) {
            size_t n = len - i < c->remain ? len - i : c->remain;
            if (n > cap - *outlen)
                break;
            memcpy(out + *outlen, in + i, n);
            *outlen += n;
            c->remain -= n;
            i += n;
            if (!c->remain)
                c->state = ST_DATA_CR;
            continue;
        }
        if (c->state == ST_SIZE_LF && c->remain > cap - *outlen)
            break; /* refuse before reading a byte of it */
        int rc = step(c, in[i++]);
        if (rc != CHUNKED_MORE) {
            *used = i;
            return rc;
        }
    }
    *used = i;
    return i < len ? CHUNKED_ETOOBIG : CHUNKED_MORE;
}
