/*
 * session_out: the outbound half of a session (see session.h): the write
 * queue, the conflated public lane, the deduplicated private lane, the close
 * frame, and when a message is written.
 *
 * When to write. A socket is written at most once per loop turn (a turn ends
 * after the poll phase, in the registry's uv_check handle), so a burst that
 * arrives in one turn goes out in one write: it queues (private lane: up to
 * send_queue_max, then 4009; snapshots too while the socket keeps up, see
 * session_send_public) or conflates (public lane, when the socket is full or
 * written through lws). A message goes:
 *  - at once (outside a WRITEABLE callback) when nothing is ahead of it: the
 *    queue and the public lane are empty, lws holds no unsent remainder of an
 *    earlier frame (lws_partial_buffered), the session is not closing, and the
 *    socket was not written yet in this turn. A fan-out to a socket that
 *    keeps up costs one send() and nothing else;
 *  - at the end of the turn (the flush list) when only the turn was in the
 *    way, with every frame waiting in one sendmsg();
 *  - in a WRITEABLE turn when lws holds a remainder (the socket is full), and
 *    for the close frame.
 * WRITEABLE is the last resort because lws's libuv plugin turns every change
 * of a socket's poll mask into uv_poll_start(), an EPOLL_CTL_DEL + ADD: a
 * lws_callback_on_writable() and the drop of POLLOUT before the callback cost
 * four epoll_ctl per message.
 *
 * How to write. On a plain (not TLS) socket the hub writes the frames itself,
 * one sendmsg() for every frame waiting (up to WRITE_BATCH), not lws_write():
 * a server's frame is unmasked, so each message is framed once, its header in
 * the shared buffer's headroom (frame_of), and the same bytes go to every
 * socket; lws_write would redo the header, its checks and its bookkeeping per
 * socket. The hub negotiates no extension (no permessage-deflate), so the
 * frame lws would write is byte for byte the same. What the kernel does not
 * take is handed to lws as raw bytes (sendv.h, shared with the REST
 * answers): from then on lws owns the remainder
 * exactly as after a partial lws_write, and no frame of ours or of lws's
 * (a pong, a close) can cut into it. TLS sockets, and every write while lws
 * holds a remainder, go through lws_write, one frame per turn.
 *
 * lws 4.1 on a write that does not all fit (lws_issue_raw): it keeps a copy
 * of the remainder on the connection (buflist_out), asks for POLLOUT itself,
 * sends the remainder before any WRITEABLE callback, asks for a WRITEABLE
 * callback once it is sent, and returns the whole length. A failed write (the
 * peer is gone) never closes on the caller's stack: lws is asked to kill the
 * connection from its own timer (LWS_TO_KILL_ASYNC).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "envelope.h"
#include "log.h"
#include "sendv.h"
#include "session_priv.h"

/* ---- the write queue -------------------------------------------------- */

static msgbuf_t **outq_ring(outq_t *q, unsigned *mask)
{
    if (q->heap) {
        *mask = q->cap - 1;
        return q->heap;
    }
    *mask = OUTQ_INLINE - 1;
    return q->inline_ring;
}

/* Appends a new reference to b, marked as a snapshot when pub. 0, or -1 on allocation failure. */
static int outq_put(outq_t *q, msgbuf_t *b, bool pub)
{
    unsigned mask;
    msgbuf_t **ring = outq_ring(q, &mask);
    if (q->count > mask) { /* full: move to a ring twice as large */
        unsigned cap = 2 * (mask + 1) < 16 ? 16 : 2 * (mask + 1);
        msgbuf_t **grown = malloc(cap * sizeof *grown);
        if (!grown)
            return -1;
        for (unsigned i = 0; i < q->count; i++)
            grown[i] = ring[(q->head + i) & mask];
        free(q->heap);
        q->heap = grown;
        q->cap = cap;
        q->head = 0;
        ring = grown;
        mask = cap - 1;
    }
    msgbuf_ref(b);
    ring[(q->head + q->count++) & mask] = pub ? (msgbuf_t *)((uintptr_t)b | 1) : b;
    q->npublic += pub;
    return 0;
}

static int outq_push(outq_t *q, msgbuf_t *b)
{
    return outq_put(q, b, false);
}

/* Takes the oldest message (its reference becomes the caller's), or NULL. */
static msgbuf_t *outq_pop(outq_t *q)
{
    if (!q->count)
        return NULL;
    unsigned mask;
    msgbuf_t **ring = outq_ring(q, &mask);
    msgbuf_t *b = ring[q->head];
    if ((uintptr_t)b & 1) {
        b = (msgbuf_t *)((uintptr_t)b & ~(uintptr_t)1);
        q->npublic--;
    }
    q->head = (q->head + 1) & mask;
    if (--q->count == 0) {
        free(q->heap);
        q->heap = NULL;
        q->cap = q->head = 0;
    }
    return b;
}

static void outq_clear(outq_t *q)
{
    msgbuf_t *b;
    while ((b = outq_pop(q)))
        msgbuf_unref(b);
}

/* ---- the public lane ---------------------------------------------------- */

static public_slot_t *public_slot(session_t *s, unsigned i)
{
    return i == 0 ? &s->pub0 : &s->pub_more[i - 1];
}

/* Keeps b as the newest view of key. 0, or -1 when it cannot be kept. */
static int public_put(session_t *s, long key, msgbuf_t *b)
{
    for (unsigned i = 0; i < s->npub; i++) {
        public_slot_t *slot = public_slot(s, i);
        if (slot->key == key) {
            msgbuf_unref(slot->buf);
            slot->buf = msgbuf_ref(b);
            return 0;
        }
    }
    if (s->npub == SESSION_SUBSCRIPTIONS_MAX)
        return -1; /* more keys than a session may subscribe to: cannot happen */
    if (s->npub == 1 && !s->pub_more &&
        !(s->pub_more = malloc((SESSION_SUBSCRIPTIONS_MAX - 1) * sizeof *s->pub_more)))
        return -1;
    *public_slot(s, s->npub++) = (public_slot_t){key, msgbuf_ref(b)};
    return 0;
}

/* Takes the oldest waiting view (its reference becomes the caller's). */
static msgbuf_t *public_take(session_t *s)
{
    msgbuf_t *b = s->pub0.buf;
    if (--s->npub) {
        s->pub0 = s->pub_more[0];
        memmove(&s->pub_more[0], &s->pub_more[1], (size_t)(s->npub - 1) * sizeof s->pub_more[0]);
    } else {
        free(s->pub_more); /* the lane is empty: hold nothing while idle */
        s->pub_more = NULL;
    }
    return b;
}

static void public_clear(session_t *s)
{
    for (unsigned i = 0; i < s->npub; i++)
        msgbuf_unref(public_slot(s, i)->buf);
    free(s->pub_more);
    s->pub_more = NULL;
    s->npub = 0;
}

/* The next message to write: the queue first (the private lane), then the views. */
static msgbuf_t *take_next(session_t *s)
{
    msgbuf_t *b = outq_pop(&s->out);
    if (!b && s->npub && !s->closing)
        b = public_take(s);
    return b;
}

static bool has_pending(const session_t *s)
{
    return s->out.count || (s->npub && !s->closing);
}

/* ---- writing ------------------------------------------------------------ */

static unsigned current_turn(const session_t *s)
{
    return hub_sessions(s->hub)->turn;
}

/*
 * Asks lws for a WRITEABLE turn, once. While lws holds a remainder it has
 * asked already, and it asks again for us once the remainder is sent.
 */
static void want_writable(session_t *s)
{
    if (s->want_writable)
        return;
    s->want_writable = true;
    if (!lws_partial_buffered(s->wsi))
        lws_callback_on_writable(s->wsi);
}

static void on_flush_idle(uv_idle_t *h)
{
    (void)h; /* only there so that the poll phase does not block while a flush waits */
}

/* Writes to s at the end of this turn (session_out_turn). */
static void want_flush(session_t *s)
{
    if (s->flush_queued)
        return;
    sessions_t *reg = hub_sessions(s->hub);
    if (!reg->flush_head)
        uv_idle_start(&reg->flush_idle, on_flush_idle);
    s->flush_queued = true;
    s->flush_prev = NULL;
    s->flush_next = reg->flush_head;
    if (reg->flush_head)
        reg->flush_head->flush_prev = s;
    reg->flush_head = s;
}

static void flush_remove(session_t *s)
{
    if (!s->flush_queued)
        return;
    sessions_t *reg = hub_sessions(s->hub);
    if (s->flush_prev)
        s->flush_prev->flush_next = s->flush_next;
    else if (reg->flush_head == s)
        reg->flush_head = s->flush_next;
    if (s->flush_next)
        s->flush_next->flush_prev = s->flush_prev;
    s->flush_prev = s->flush_next = NULL;
    s->flush_queued = false;
}

/* Something waits: the end of this turn, or a WRITEABLE turn when the socket is full. */
static void write_later(session_t *s)
{
    if (s->closing || lws_partial_buffered(s->wsi))
        want_writable(s);
    else
        want_flush(s);
}

/*
 * The connection is unusable (a write failed): nothing more is written, and
 * lws closes it from its own timer, not on this stack.
 */
static void write_failed(session_t *s)
{
    s->closing = s->close_sent = true;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Frames one direct write takes at most (a flush or a WRITEABLE turn). */
#define WRITE_BATCH 32
_Static_assert(LWS_PRE >= 10, "frame_of: the headroom must hold the longest frame header");

/*
 * b as one final text frame: the header (RFC 6455 5.2, unmasked) is written
 * once into b's headroom, just before the payload, where lws_write() puts
 * the same bytes. Returns the frame's first byte; *len its length.
 */
static unsigned char *frame_of(msgbuf_t *b, size_t *len)
{
    unsigned char *p = (unsigned char *)b->payload;
    if (!b->frame_hd) {
        if (b->len < 126) {
            p[-1] = (unsigned char)b->len;
            b->frame_hd = 2;
        } else if (b->len <= 0xffff) {
            p[-3] = 126;
            p[-2] = (unsigned char)(b->len >> 8);
            p[-1] = (unsigned char)b->len;
            b->frame_hd = 4;
        } else {
            p[-9] = 127;
            for (int i = 0; i < 8; i++)
                p[-1 - i] = (unsigned char)((uint64_t)b->len >> (8 * i));
            b->frame_hd = 10;
        }
        p[-(int)b->frame_hd] = 0x81; /* FIN, text */
    }
    *len = b->frame_hd + b->len;
    return p - b->frame_hd;
}

/* Writes n frames straight to the socket in one sendmsg() (sendv.h). -1: unusable. */
static int write_direct(session_t *s, msgbuf_t **bufs, unsigned n)
{
    struct iovec iov[WRITE_BATCH];
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        iov[i].iov_base = frame_of(bufs[i], &iov[i].iov_len);
        total += iov[i].iov_len;
    }
    ssize_t sent = sendv(s->wsi, s->fd, iov, n);
    if (sent < 0)
        return -1;
    if ((size_t)sent < total)
        metrics_ws_partial();
    return 0;
}

/*
 * Writes n frames (n is 1 unless the socket is written directly), the
 * references stay the caller's. The caller made sure lws holds nothing
 * unsent (lws_partial_buffered). -1: the connection is unusable.
 */
static int write_frames(session_t *s, msgbuf_t **bufs, unsigned n)
{
    s->last_write_turn = current_turn(s);
    if (s->fd >= 0) {
        if (write_direct(s, bufs, n) != 0)
            return -1;
    } else if (lws_write(s->wsi, (unsigned char *)bufs[0]->payload, bufs[0]->len, LWS_WRITE_TEXT) <
               0) {
        return -1;
    }
    metrics_ws_out(n);
    return 0;
}

/* One turn's write: every frame waiting, up to WRITE_BATCH (one through lws). -1: unusable. */
static int write_pending(session_t *s)
{
    msgbuf_t *bufs[WRITE_BATCH];
    unsigned max = s->fd >= 0 ? WRITE_BATCH : 1, n = 0;
    while (n < max && (bufs[n] = take_next(s)))
        n++;
    int rc = n ? write_frames(s, bufs, n) : 0;
    for (unsigned i = 0; i < n; i++)
        msgbuf_unref(bufs[i]);
    return rc;
}

/* May a message go now, nothing being ahead of it? (see the top) */
static bool can_write_now(const session_t *s)
{
    return !has_pending(s) && !s->closing && !s->peer_closed &&
           s->last_write_turn != current_turn(s) && !lws_partial_buffered(s->wsi);
}

/* Writes b now when it may go now; false: the caller keeps it for later. */
static bool write_now(session_t *s, msgbuf_t *b)
{
    if (!can_write_now(s))
        return false;
    if (write_frames(s, &b, 1) != 0)
        write_failed(s);
    return true;
}

void session_out_turn(sessions_t *reg)
{
    session_t *s = reg->flush_head;
    reg->flush_head = NULL; /* who wants more from here on waits for the next turn */
    while (s) {
        session_t *next = s->flush_next;
        if (next)
            next->flush_prev = NULL; /* the rest stays a well-formed list */
        s->flush_queued = false;
        s->flush_prev = s->flush_next = NULL;
        if (!s->closing && !s->peer_closed) {
            if (lws_partial_buffered(s->wsi)) {
                want_writable(s);
            } else if (s->last_write_turn == reg->turn) {
                want_flush(s); /* cannot happen: the turn just began */
            } else {
                if (write_pending(s) != 0)
                    write_failed(s);
                if (has_pending(s) && !s->closing)
                    write_later(s);
            }
        } /* a closing session's queue drains in its WRITEABLE turns */
        s = next;
    }
    if (!reg->flush_head)
        uv_idle_stop(&reg->flush_idle);
}

/* ---- the close frame ---------------------------------------------------- */

void session_close(session_t *s, int code, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    s->close_code = (unsigned short)code;
    s->close_reason = reason;
    session_wait_remove(s);
    want_writable(s);
}

/*
 * Writes the close frame ourselves. lws 4.1 on a libuv loop re-enters its own
 * close path and kills the socket before a close reason set with
 * lws_close_reason() is sent (its debug build calls close twice, "uv repeat
 * test", and the second call kills the socket), so the peer would see 1006
 * instead of our code. The peer's answering close frame (or the timeout) ends
 * the connection. LWS_WRITE_CLOSE is lws's own opcode value 4, not exported in
 * 4.1 headers.
 */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)
static int send_close_frame(session_t *s)
{
    unsigned char frame[LWS_PRE + 125];
    size_t rlen = s->close_reason ? strlen(s->close_reason) : 0;
    if (rlen > 123)
        rlen = 123;
    frame[LWS_PRE] = (unsigned char)(s->close_code >> 8);
    frame[LWS_PRE + 1] = (unsigned char)(s->close_code & 0xff);
    memcpy(frame + LWS_PRE + 2, s->close_reason, rlen);
    s->close_sent = true;
    s->last_write_turn = current_turn(s);
    if (lws_write(s->wsi, frame + LWS_PRE, 2 + rlen, WS_WRITE_CLOSE) < 0)
        return -1;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
    return 0;
}

/* ---- sending -------------------------------------------------------------- */

/*
 * Sends b, or queues it. capped: live traffic (held behind a replay or not),
 * which closes a reader that falls send_queue_max messages behind (4009; its
 * events stay unacked for the next resume). Replayed private events are not
 * capped: a replay is bounded by its batch.
 */
static void enqueue(session_t *s, msgbuf_t *b, bool capped)
{
    if (!b || s->closing || s->peer_closed)
        return; /* a closing session takes nothing new */
    if (write_now(s, b))
        return;
    if (capped && s->out.count - s->out.npublic >= (unsigned)hub_config(s->hub)->send_queue_max) {
        outq_clear(&s->out);
        s->closing = false; /* a slow-consumer close overrides a gentler one */
        session_close(s, CLOSE_SLOW_CONSUMER, "send queue overflow");
        return;
    }
    if (outq_push(&s->out, b) != 0)
        return;
    write_later(s);
}

void session_send(session_t *s, msgbuf_t *b)
{
    enqueue(s, b, true);
}

/* Is a view of key waiting in the conflated lane? */
static bool public_waiting(session_t *s, long key)
{
    for (unsigned i = 0; i < s->npub; i++)
        if (public_slot(s, i)->key == key)
            return true;
    return false;
}

/*
 * A snapshot that cannot go now: on a socket that keeps up (written directly,
 * lws holding nothing) it waits in the queue with everything else and goes in
 * the same write at the end of the turn; it is superseded only when the
 * socket could not take it (full, or written through lws) or when
 * PUBLIC_QUEUED snapshots wait already. A view of key already in the
 * conflated lane is replaced there, so views never go out of order.
 */
#define PUBLIC_QUEUED WRITE_BATCH
void session_send_public(session_t *s, long key, msgbuf_t *b)
{
    if (!b || s->closing || s->peer_closed || write_now(s, b))
        return;
    if (s->fd >= 0 && s->out.npublic < PUBLIC_QUEUED && !public_waiting(s, key) &&
        !lws_partial_buffered(s->wsi)) {
        if (outq_put(&s->out, b, true) != 0)
            return;
    } else if (public_put(s, key, b) != 0) {
        return;
    }
    write_later(s);
}

/*
 * The private lane sends an event at most once per session, whichever way it
 * comes (live, a resume, a resynchronisation). Ids, not a high-water mark: an
 * event that went live before the device resumed must not hide older unacked
 * ones from that resume. The ring is allocated on the first private event,
 * so idle sockets pay nothing; an overlap wider than the ring is still
 * harmless, devices drop repeated event ids.
 */
#define RECENT_EVENTS 32

static void send_event(session_t *s, msgbuf_t *b, bool capped)
{
    if (!s->recent && !(s->recent = calloc(RECENT_EVENTS, sizeof *s->recent)))
        return;
    for (unsigned i = 0; i < RECENT_EVENTS; i++)
        if (s->recent[i] == b->event_id)
            return;
    s->recent[s->recent_next] = b->event_id;
    s->recent_next = (unsigned char)((s->recent_next + 1) % RECENT_EVENTS);
    enqueue(s, b, capped);
}

void session_send_replayed(session_t *s, msgbuf_t *b)
{
    send_event(s, b, false);
}

void session_send_private(session_t *s, msgbuf_t *b)
{
    if (!s->resuming) {
        send_event(s, b, true);
        return;
    }
    /* live traffic waiting behind a replay: the same bound as the send queue */
    if (s->held_count >= (unsigned)hub_config(s->hub)->send_queue_max) {
        session_close(s, CLOSE_SLOW_CONSUMER, "send queue overflow");
        return;
    }
    held_event_t *h = malloc(sizeof *h);
    if (!h)
        return;
    *h = (held_event_t){NULL, msgbuf_ref(b)};
    if (s->held_tail)
        s->held_tail->next = h;
    else
        s->held_head = h;
    s->held_tail = h;
    s->held_count++;
}

void session_resume_begin(session_t *s)
{
    s->resuming = true;
}

void session_resume_end(session_t *s)
{
    s->resuming = false;
    held_event_t *held = s->held_head;
    s->held_head = s->held_tail = NULL;
    s->held_count = 0;
    while (held) {
        held_event_t *h = held;
        held = h->next;
        send_event(s, h->buf, true); /* live traffic: capped like any other */
        msgbuf_unref(h->buf);
        free(h);
    }
}

void session_send_json(session_t *s, json_t *msg)
{
    msgbuf_t *b = msgbuf_from_json(msg);
    json_decref(msg);
    session_send(s, b);
    msgbuf_unref(b);
}

void session_send_error(session_t *s, bool has_id, int64_t id, const char *code,
                        const char *message)
{
    session_send_json(s, envelope_error(has_id, id, code, message));
}

/* ---- WRITEABLE and close -------------------------------------------------- */

/* One WRITEABLE turn: what waits (write_pending), or the close frame once nothing is queued. */
int session_out_writeable(session_t *s)
{
    s->want_writable = false; /* lws dropped POLLOUT before calling us */
    if (!s->hub || s->peer_closed || s->close_sent)
        return 0; /* nothing is written after a close frame, either way */
    if (s->last_write_turn == current_turn(s)) {
        want_writable(s); /* written already in this turn (a flush): next turn */
        return 0;
    }
    if (has_pending(s)) {
        if (write_pending(s) != 0)
            return -1;
        if (has_pending(s) || s->closing)
            write_later(s);
        return 0;
    }
    if (s->closing)
        return send_close_frame(s);
    return 0;
}

void session_out_clear(session_t *s)
{
    flush_remove(s);
    outq_clear(&s->out);
    public_clear(s);
    for (held_event_t *h = s->held_head, *next; h; h = next) {
        next = h->next;
        msgbuf_unref(h->buf);
        free(h);
    }
    s->held_head = s->held_tail = NULL;
    free(s->recent);
    s->recent = NULL;
}

/* ---- keepalive (session.c decides when) --------------------------------- */

/* One byte of payload: lws 4.1 does not pass an empty pong to RECEIVE_PONG. */
bool session_out_ping(session_t *s)
{
    if (!can_write_now(s))
        return false;
    unsigned char frame[LWS_PRE + 1] = {[LWS_PRE] = 'k'};
    s->last_write_turn = current_turn(s);
    if (lws_write(s->wsi, frame + LWS_PRE, 1, LWS_WRITE_PING) < 0)
        write_failed(s);
    return true;
}

/*
 * From the keepalive timer, not from an lws callback: closed at once (as
 * Redis's clientsCron frees a timed-out client). An asynchronous kill would
 * wait for lws's own timer, which nothing re-arms on a silent socket.
 */
void session_out_drop(session_t *s)
{
    s->closing = s->close_sent = true;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}
