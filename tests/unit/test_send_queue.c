/*
 * test_send_queue: a session's outbound buffers, as h2o's unit tests do it:
 * the .c under test is included, so its static functions are called
 * directly (hub/ is on the include path; the file is found by name).
 *
 *  - the write queue (outq_t): the first OUTQ_INLINE messages live in the
 *    session, the next one moves the queue to a heap ring that doubles as it
 *    fills, FIFO order holds across every growth and wrap-around, and the heap
 *    ring is freed when the queue empties;
 *  - the public lane (snapshot conflation): one slot per key, the newest view
 *    of a key replaces the older one (whose reference is dropped), keys leave
 *    in the order they first arrived, the lane holds nothing once empty;
 *  - snapshots queued behind other frames: marked in the ring and counted
 *    apart (npublic), and frame_of() writes each length encoding once;
 *  - release on close: session_out_clear() drops every reference the session
 *    holds (queue, public lane, private events held during a resume).
 *
 * No socket is written: every message here is kept (nothing calls the
 * write path), so a zeroed session_t without a wsi or hub is enough. Each
 * msgbuf's reference count is checked, and ASan checks nothing leaks.
 */
#include "session_out.c"

#include "check.h"

#include <stdio.h>

static msgbuf_t *msg(const char *text)
{
    return msgbuf_from_bytes(text, strlen(text));
}

static int payload_is(const msgbuf_t *b, const char *text)
{
    return b && b->len == strlen(text) && memcmp(b->payload, text, b->len) == 0;
}

/* Inline -> heap growth, FIFO order, wrap-around, the heap freed when empty. */
static void test_outq_growth_and_order(void)
{
    enum { N = 100 };
    outq_t q = {0};
    msgbuf_t *bufs[N];
    char text[16];
    for (int i = 0; i < N; i++) {
        snprintf(text, sizeof text, "m%d", i);
        bufs[i] = msg(text);
    }

    for (int i = 0; i < OUTQ_INLINE; i++)
        CHECK(outq_push(&q, bufs[i]) == 0, "push inline");
    CHECK(q.count == OUTQ_INLINE && q.heap == NULL, "OUTQ_INLINE messages stay inline");
    CHECK(bufs[0]->refs == 2, "the queue holds its own reference");

    CHECK(outq_push(&q, bufs[OUTQ_INLINE]) == 0, "push past inline");
    CHECK(q.heap != NULL && q.cap == 16, "one more moves the queue to a 16-slot heap ring");
    for (int i = OUTQ_INLINE + 1; i < 17; i++)
        CHECK(outq_push(&q, bufs[i]) == 0, "push");
    CHECK(q.cap == 32 && q.count == 17, "a full heap ring doubles (16 -> 32)");

    /* wrap around: take 10, add 20 (head moves, the ring fills again and doubles) */
    int next_out = 0, next_in = 17, fifo = 1;
    for (int i = 0; i < 10; i++) {
        msgbuf_t *b = outq_pop(&q);
        fifo &= b == bufs[next_out++];
        msgbuf_unref(b);
    }
    for (int i = 0; i < 20; i++)
        CHECK(outq_push(&q, bufs[next_in++]) == 0, "push after pops");
    CHECK(q.count == 27 && q.cap == 32, "27 waiting in the 32-slot ring (wrapped)");
    while (next_in < N)
        CHECK(outq_push(&q, bufs[next_in++]) == 0, "push to 100");
    CHECK(q.cap == 128, "grown to 128 slots for 90 waiting");

    msgbuf_t *b;
    while ((b = outq_pop(&q))) {
        fifo &= b == bufs[next_out++];
        msgbuf_unref(b);
    }
    CHECK(fifo && next_out == N, "every message came out once, in the order it went in");
    CHECK(q.count == 0 && q.heap == NULL && q.cap == 0 && q.head == 0,
          "an empty queue frees its heap ring and is inline again");
    CHECK(outq_pop(&q) == NULL, "pop on an empty queue: NULL");

    int refs_ok = 1;
    for (int i = 0; i < N; i++) {
        refs_ok &= bufs[i]->refs == 1;
        msgbuf_unref(bufs[i]);
    }
    CHECK(refs_ok, "each message is back to the caller's one reference");
}

/* A queue that grew and still holds messages: outq_clear drops every reference. */
static void test_outq_clear(void)
{
    outq_t q = {0};
    msgbuf_t *b = msg("x");
    for (int i = 0; i < 40; i++)
        CHECK(outq_push(&q, b) == 0, "push the same message 40 times");
    CHECK(b->refs == 41, "40 queue references");
    outq_clear(&q);
    CHECK(b->refs == 1 && q.count == 0 && q.heap == NULL, "clear drops all 40 and the heap ring");
    msgbuf_unref(b);
}

/* The public lane: newest per key wins, the older is unref'd, arrival order kept. */
static void test_public_conflation(void)
{
    session_t *s = calloc(1, sizeof *s);
    msgbuf_t *a1 = msg("arcade 1 v1"), *a1b = msg("arcade 1 v2"), *a1c = msg("arcade 1 v3");
    msgbuf_t *a2 = msg("arcade 2 v1"), *a3 = msg("arcade 3 v1"), *a2b = msg("arcade 2 v2");

    CHECK(public_put(s, 1, a1) == 0 && s->npub == 1, "first view: one slot");
    CHECK(s->pub_more == NULL, "one waiting view lives in the session (no allocation)");
    CHECK(public_put(s, 1, a1b) == 0 && s->npub == 1, "a newer view of key 1 takes its slot");
    CHECK(a1->refs == 1, "the replaced view's reference is dropped");
    CHECK(public_put(s, 2, a2) == 0 && public_put(s, 3, a3) == 0 && s->npub == 3,
          "other keys get slots of their own");
    CHECK(s->pub_more != NULL, "a second key allocates the extra slots");
    CHECK(public_put(s, 1, a1c) == 0 && public_put(s, 2, a2b) == 0 && s->npub == 3,
          "newer views of keys 1 and 2: still three slots");
    CHECK(a1b->refs == 1 && a2->refs == 1, "both replaced views are unref'd");

    msgbuf_t *t1 = public_take(s), *t2 = public_take(s), *t3 = public_take(s);
    CHECK(t1 == a1c && t2 == a2b && t3 == a3,
          "views leave in the order their keys first arrived, each the newest of its key");
    CHECK(payload_is(t1, "arcade 1 v3"), "key 1's newest payload");
    CHECK(s->npub == 0 && s->pub_more == NULL, "an empty lane frees its extra slots");
    msgbuf_unref(t1);
    msgbuf_unref(t2);
    msgbuf_unref(t3);
    CHECK(a1c->refs == 1 && a2b->refs == 1 && a3->refs == 1, "taken references handed back");

    /* SESSION_SUBSCRIPTIONS_MAX keys at most: one more is refused, and nothing is taken */
    int puts_ok = 1;
    for (long k = 0; k < SESSION_SUBSCRIPTIONS_MAX; k++)
        puts_ok &= public_put(s, k, a3) == 0;
    CHECK(puts_ok && s->npub == SESSION_SUBSCRIPTIONS_MAX, "SESSION_SUBSCRIPTIONS_MAX keys fit");
    CHECK(public_put(s, SESSION_SUBSCRIPTIONS_MAX, a1) == -1, "one key more is refused");
    CHECK(a1->refs == 1, "a refused view is not referenced");
    CHECK(public_put(s, 5, a1) == 0 && s->npub == SESSION_SUBSCRIPTIONS_MAX,
          "a full lane still takes a newer view of a key it has");
    public_clear(s);
    CHECK(s->npub == 0 && s->pub_more == NULL && a3->refs == 1 && a1->refs == 1,
          "public_clear drops every view");

    msgbuf_t *all[] = {a1, a1b, a1c, a2, a2b, a3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        msgbuf_unref(all[i]);
    free(s);
}

/* session_out_clear (on close) releases the queue, the lane and held events. */
static void test_release_on_close(void)
{
    session_t *s = calloc(1, sizeof *s);
    msgbuf_t *q = msg("{\"type\":\"reply\"}"), *v = msg("{\"type\":\"queue\"}");
    msgbuf_t *e1 = msg("{\"type\":\"event\",\"id\":1}"), *e2 = msg("{\"type\":\"event\",\"id\":2}");
    e1->event_id = 1;
    e2->event_id = 2;

    for (int i = 0; i < 9; i++)
        CHECK(outq_push(&s->out, q) == 0, "queue a reply");
    CHECK(s->out.heap != NULL, "nine replies: the queue is on the heap");
    CHECK(public_put(s, 7, v) == 0 && public_put(s, 8, v) == 0, "two views wait");
    /* private events held during a resume, as session_send_private links them
     * (built here: holding asks the hub for its send_queue_max) */
    held_event_t *h2 = malloc(sizeof *h2), *h1 = malloc(sizeof *h1);
    *h2 = (held_event_t){NULL, msgbuf_ref(e2)};
    *h1 = (held_event_t){h2, msgbuf_ref(e1)};
    s->held_head = h1;
    s->held_tail = h2;
    s->held_count = 2;
    s->recent = calloc(RECENT_EVENTS, sizeof *s->recent); /* the dedupe ring */
    CHECK(s->held_count == 2 && e1->refs == 2 && e2->refs == 2, "two private events are held");
    CHECK(q->refs == 10 && v->refs == 3, "the session holds its references");

    session_out_clear(s);
    CHECK(q->refs == 1 && v->refs == 1 && e1->refs == 1 && e2->refs == 1,
          "every reference the session held is dropped");
    CHECK(s->out.count == 0 && s->out.heap == NULL && s->npub == 0 && s->pub_more == NULL &&
              s->held_head == NULL && s->held_tail == NULL && s->recent == NULL,
          "nothing is left allocated on the session");
    session_out_clear(s); /* a second clear (close after close) is harmless */
    CHECK(q->refs == 1, "a second clear changes nothing");

    msgbuf_unref(q);
    msgbuf_unref(v);
    msgbuf_unref(e1);
    msgbuf_unref(e2);
    free(s);
}

/*
 * Snapshots queued behind other frames (a socket that keeps up): marked in
 * the ring, counted apart (npublic, left out of send_queue_max), handed back
 * unmarked and in order through growth, and a frame's header is made once.
 */
static void test_outq_public_marks(void)
{
    outq_t q = {0};
    msgbuf_t *e = msg("event"), *v1 = msg("view 1"), *v2 = msg("view 2");
    int ok = 1;
    for (int i = 0; i < 6; i++) /* past OUTQ_INLINE: the marks survive the move to the heap */
        ok &= outq_put(&q, i % 2 ? v1 : e, i % 2 == 1) == 0;
    ok &= outq_put(&q, v2, true) == 0;
    CHECK(ok && q.count == 7 && q.npublic == 4, "7 queued, 4 of them snapshots");
    msgbuf_t *order[7];
    for (int i = 0; i < 7; i++)
        order[i] = outq_pop(&q);
    CHECK(order[0] == e && order[1] == v1 && order[2] == e && order[5] == v1 && order[6] == v2,
          "popped in order, as the plain pointers");
    CHECK(q.npublic == 0 && q.count == 0, "every mark counted off");
    for (int i = 0; i < 7; i++)
        msgbuf_unref(order[i]);

    size_t len;
    unsigned char *f = frame_of(v2, &len);
    CHECK(len == v2->len + 2 && f[0] == 0x81 && f[1] == v2->len && f + 2 == (void *)v2->payload,
          "a short frame: FIN text, 7-bit length, right before the payload");
    CHECK(frame_of(v2, &len) == f && v2->frame_hd == 2, "framed once");
    char *text = malloc(70000);
    memset(text, 'x', 70000);
    msgbuf_t *m16 = msgbuf_from_bytes(text, 300), *m64 = msgbuf_from_bytes(text, 70000);
    f = frame_of(m16, &len);
    CHECK(len == 304 && f[1] == 126 && f[2] == 1 && f[3] == 44, "a 16-bit length (300)");
    f = frame_of(m64, &len);
    CHECK(len == 70010 && f[1] == 127 && f[7] == 0x01 && f[8] == 0x11 && f[9] == 0x70,
          "a 64-bit length (70000 = 0x11170)");
    free(text);
    msgbuf_unref(m16);
    msgbuf_unref(m64);
    CHECK(e->refs == 1 && v1->refs == 1 && v2->refs == 1, "references handed back");
    msgbuf_unref(e);
    msgbuf_unref(v1);
    msgbuf_unref(v2);
}

int main(void)
{
    test_outq_growth_and_order();
    test_outq_clear();
    test_outq_public_marks();
    test_public_conflation();
    test_release_on_close();
    return check_report();
}
