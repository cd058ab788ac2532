/*
 * test_fanout: fan-out membership (hub/fanout.c): which local sessions are
 * in which bus channel. join / leave / leave_all / is_member / size /
 * count_prefix, delivery to every member, and that the index and every
 * membership are freed (ASan's leak check is the proof).
 *
 * The fanout runs without a bus (fanout_new(NULL), as after
 * fanout_detach_bus): membership is the fanout's own bookkeeping, the Redis
 * side is covered by tests/unit/test_bus.c and the integration suites.
 * Sessions are zeroed session_t (session_priv.h): fanout.c only uses a
 * session's membership list. Delivery goes to sessions marked closing, which
 * take nothing, so fanout_deliver's count is checked without a socket.
 */
#include "fanout.h"
#include "session_priv.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

static void count_call(session_t *s, void *arg)
{
    (void)s;
    (*(int *)arg)++;
}

static void count_channel(const char *channel, void *arg)
{
    (void)channel;
    (*(int *)arg)++;
}

static void test_join_leave(fanout_t *f, session_t *a, session_t *b)
{
    CHECK(fanout_size(f, "rn:arcade:1") == 0, "an unknown channel has no members");
    CHECK(fanout_join(f, a, "rn:arcade:1") == 0, "a joins arcade 1");
    CHECK(fanout_join(f, a, "rn:arcade:1") == 0, "a second join is a no-op ...");
    CHECK(fanout_size(f, "rn:arcade:1") == 1, "... and counts once");
    CHECK(fanout_join(f, b, "rn:arcade:1") == 0 && fanout_size(f, "rn:arcade:1") == 2,
          "b joins too: two members");
    CHECK(fanout_join(f, a, "rn:arcade:2") == 0 && fanout_join(f, a, "rn:user:u1") == 0,
          "a joins arcade 2 and its user channel");
    CHECK(fanout_is_member(f, a, "rn:arcade:2") && !fanout_is_member(f, b, "rn:arcade:2"),
          "is_member: a in arcade 2, b not");
    CHECK(!fanout_is_member(f, a, "rn:arcade:"), "a prefix is not a channel");
    CHECK(fanout_count_prefix(a, "rn:arcade:") == 2 && fanout_count_prefix(b, "rn:arcade:") == 1,
          "count_prefix: a in two arcades, b in one");
    CHECK(fanout_count_prefix(a, "rn:user:") == 1 && fanout_count_prefix(b, "rn:user:") == 0,
          "count_prefix: only a has a user channel");

    int calls = 0;
    fanout_each(f, "rn:arcade:1", count_call, &calls);
    CHECK(calls == 2, "fanout_each calls every member of the channel");
    int channels = 0;
    fanout_each_channel(f, count_channel, &channels);
    CHECK(channels == 3, "three channels have members");

    msgbuf_t *m = msgbuf_from_bytes("{}", 2);
    CHECK(fanout_deliver(f, "rn:arcade:1", m) == 2, "deliver reaches both members");
    CHECK(fanout_deliver(f, "rn:arcade:9", m) == 0, "deliver to a channel nobody joined: 0");
    CHECK(m->refs == 1, "closing sessions took no reference");
    msgbuf_unref(m);

    fanout_leave(f, b, "rn:arcade:2"); /* not a member: no-op */
    CHECK(fanout_size(f, "rn:arcade:2") == 1, "leaving a channel one is not in changes nothing");
    fanout_leave(f, a, "rn:arcade:1");
    CHECK(!fanout_is_member(f, a, "rn:arcade:1") && fanout_size(f, "rn:arcade:1") == 1,
          "a left arcade 1, b is still there");
    CHECK(fanout_is_member(f, a, "rn:arcade:2"), "a's other memberships stay");
    fanout_leave(f, b, "rn:arcade:1");
    channels = 0;
    fanout_each_channel(f, count_channel, &channels);
    CHECK(fanout_size(f, "rn:arcade:1") == 0 && channels == 2,
          "the last leave takes the channel away");
}

static void test_leave_all(fanout_t *f, session_t *a, session_t *b)
{
    CHECK(fanout_join(f, b, "rn:arcade:2") == 0, "b joins arcade 2 (a is there)");
    fanout_leave_all(f, a);
    CHECK(a->members == NULL, "leave_all empties a's membership list");
    CHECK(fanout_count_prefix(a, "rn:") == 0, "a is in no channel");
    CHECK(fanout_size(f, "rn:arcade:2") == 1 && fanout_size(f, "rn:user:u1") == 0,
          "b stays in arcade 2; a's user channel is gone");
    fanout_leave_all(f, a); /* twice: nothing left to leave */
    fanout_leave_all(f, b);
    int channels = 0;
    fanout_each_channel(f, count_channel, &channels);
    CHECK(channels == 0, "everyone left: no channel remains");
}

/* Many sessions on one channel, leaving in an order unlike joining. */
static void test_many(fanout_t *f)
{
    enum { N = 200 };
    session_t *s = calloc(N, sizeof *s);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        s[i].closing = true;
        ok &= fanout_join(f, &s[i], "rn:admin") == 0;
        ok &= fanout_join(f, &s[i], i % 2 ? "rn:arcade:odd" : "rn:arcade:even") == 0;
    }
    CHECK(ok && fanout_size(f, "rn:admin") == N, "200 sessions in rn:admin");
    CHECK(fanout_size(f, "rn:arcade:odd") == N / 2, "100 in the odd channel");
    for (int i = 0; i < N; i += 2)
        fanout_leave(f, &s[i], "rn:admin");
    CHECK(fanout_size(f, "rn:admin") == N / 2, "the even half left rn:admin");
    for (int i = N - 1; i >= 0; i--)
        fanout_leave_all(f, &s[i]);
    CHECK(fanout_size(f, "rn:admin") == 0 && fanout_size(f, "rn:arcade:odd") == 0,
          "everyone left everything");
    free(s);
}

int main(void)
{
    fanout_t *f = fanout_new(NULL);
    CHECK(f != NULL, "fanout_new without a bus");
    session_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    a->closing = b->closing = true; /* deliveries are counted, not written */

    test_join_leave(f, a, b);
    test_leave_all(f, a, b);
    test_many(f);

    fanout_free(f);
    free(a);
    free(b);
    return check_report();
}
