/* msgbuf: reference-counted, LWS_PRE-prefixed send buffers (see msgbuf.h). */
#include "msgbuf.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

/*
 * The msgbuf header and the bytes live in one allocation made by
 * envelope_encode (headroom = header + LWS_PRE), so a fan-out costs one
 * malloc however many sockets receive it.
 */
#define MSGBUF_HEADROOM (sizeof(msgbuf_t) + LWS_PRE)

/* The header at the front of mem, one reference, the payload after the headroom. */
static msgbuf_t *msgbuf_init(char *mem, size_t len)
{
    msgbuf_t *b = (msgbuf_t *)mem;
    b->refs = 1;
    b->event_id = 0;
    b->frame_hd = 0;
    b->len = len;
    b->payload = mem + MSGBUF_HEADROOM;
    return b;
}

msgbuf_t *msgbuf_from_json(const json_t *msg)
{
    char *mem;
    size_t len;
    if (envelope_encode(msg, MSGBUF_HEADROOM, &mem, &len) != 0)
        return NULL;
    return msgbuf_init(mem, len);
}

msgbuf_t *msgbuf_from_bytes(const char *data, size_t len)
{
    char *mem = malloc(MSGBUF_HEADROOM + len + 1);
    if (!mem)
        return NULL;
    msgbuf_t *b = msgbuf_init(mem, len);
    memcpy(b->payload, data, len);
    b->payload[len] = '\0';
    return b;
}

void msgbuf_unref(msgbuf_t *b)
{
    if (b && --b->refs == 0)
        free(b);
}
