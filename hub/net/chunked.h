/*
 * chunked: an incremental decoder of HTTP/1.1 chunked request bodies
 * (RFC 9112 7.1). lws 4.1 does not decode them on the server side: it hands
 * the raw bytes of a POST/PUT/PATCH without Content-Length to the body
 * callback, and http.c feeds them here. Pure code over bytes, no sockets, so
 * it is fuzzed (tests/fuzz/fuzz_http.c).
 *
 * Strict: chunk sizes are hex, lines end in CRLF, chunk extensions and
 * trailer fields are skipped but bounded (CHUNKED_LINE_MAX each line).
 */
#ifndef RN_CHUNKED_H
#define RN_CHUNKED_H

#include <stddef.h>

#define CHUNKED_LINE_MAX 1024

typedef struct chunked {
    int state;
    size_t remain; /* data bytes left in the current chunk */
    size_t line;   /* bytes of the current size / extension / trailer line */
    int digits;
} chunked_t;

enum {
    CHUNKED_MORE = 0,     /* all of in consumed, the body goes on */
    CHUNKED_DONE = 1,     /* the last chunk and trailers ended; *used says where */
    CHUNKED_EBAD = -1,    /* malformed */
    CHUNKED_ETOOBIG = -2, /* the data would exceed cap */
};

void chunked_init(chunked_t *c);

/*
 * Decodes in[0..len): the data bytes are appended to out[*outlen..cap) and
 * *outlen grows. *used is always set: how many bytes of in were consumed
 * (all of them on CHUNKED_MORE). After an error, the decoder must not be fed
 * again.
 */
int chunked_feed(chunked_t *c, const char *in, size_t len, size_t *used, char *out, size_t cap,
                 size_t *outlen);

#endif
