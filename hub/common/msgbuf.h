/*
 * msgbuf: one encoded message shared by every socket it is sent to.
 *
 * Fan-out encodes an event once and hands the same reference-counted buffer
 * to N sessions; each session releases it once written (or dropped). The
 * payload is preceded by LWS_PRE bytes of headroom so lws_write() can put the
 * frame header in front without a copy. A server's frame is unmasked, so its
 * header is the same for every socket: it is written there once and the
 * same bytes go to every socket (session_out.c).
 */
#ifndef RN_MSGBUF_H
#define RN_MSGBUF_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct msgbuf {
    unsigned refs;
    int64_t event_id;       /* a private event's id (ack, resume, dedupe); 0 otherwise */
    size_t len;             /* payload bytes */
    char *payload;          /* points LWS_PRE bytes into the allocation */
    unsigned char frame_hd; /* bytes of WebSocket frame header written just before payload
                               (session_out.c, on the first direct write); 0 until then */
} msgbuf_t;

/* Encodes msg (compact JSON) into a new buffer with one reference. NULL on failure. */
msgbuf_t *msgbuf_from_json(const json_t *msg);
/* Copies len bytes into a new buffer with one reference. NULL on failure. */
msgbuf_t *msgbuf_from_bytes(const char *data, size_t len);

static inline msgbuf_t *msgbuf_ref(msgbuf_t *b)
{
    b->refs++;
    return b;
}
/* Drops one reference; frees on the last. NULL is ignored. */
void msgbuf_unref(msgbuf_t *b);

#endif
