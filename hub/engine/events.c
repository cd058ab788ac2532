/*
 * events: the private lane, from commit to device ack (see events.h).
 */
#include "events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duty.h"
#include "fanout.h"
#include "log.h"
#include "metrics.h"
#include "msgbuf.h"

/* Unacked events replayed per resume (the replay query's LIMIT). */
#define RESUME_BATCH "500"

void events_user_channel(const char *uid, char *out, size_t outlen)
{
    snprintf(out, outlen, "rn:user:%s", uid);
}

void events_cabinet_channel(long arcade_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "rn:cabinet:%ld", arcade_id);
}

int events_session_join(session_t *s, conn_kind_t kind)
{
    char channel[EVENTS_CHANNEL_MAX];
    fanout_t *f = hub_fanout(session_hub(s));
    if (kind == CONN_CABINET)
        events_cabinet_channel(session_arcade_id(s), channel, sizeof channel);
    else
        events_user_channel(session_uid(s), channel, sizeof channel);
    if (fanout_join(f, s, channel) != 0 ||
        (kind == CONN_ADMIN && fanout_join(f, s, EVENTS_ADMIN_CHANNEL) != 0))
        return -1;
    return 0;
}

/* The device's view of an event: its payload plus type, event_id and at_ms. */
static json_t *wire_of(const char *kind, json_int_t id, json_int_t at_ms, json_t *payload)
{
    json_t *wire = json_is_object(payload) ? json_copy(payload) : json_object();
    json_object_set_new(wire, "type", json_string(kind));
    json_object_set_new(wire, "event_id", json_integer(id));
    json_object_set_new(wire, "at_ms", json_integer(at_ms));
    return wire;
}

static void send_private(session_t *s, void *arg)
{
    session_send_private(s, arg);
}

/* Pushes one encoded event to the local members of channel. */
static void deliver_local(hub_t *hub, const char *channel, msgbuf_t *b)
{
    if (strcmp(channel, EVENTS_ADMIN_CHANNEL) == 0)
        fanout_deliver(hub_fanout(hub), channel, b);
    else
        fanout_each(hub_fanout(hub), channel, send_private, b);
}

/*
 * Whether the private event e is one the admin stream shows: a reservation's
 * status, a game's score, a promo code's credit. A duo's two players get the
 * same reservation and score events in one transaction: only the first of
 * each (kind, reservation) of this batch is mirrored (seen[] holds them).
 */
#define MIRROR_SEEN_MAX 16
typedef struct mirror_seen {
    const char *kind, *status; /* borrowed from the batch */
    json_int_t reservation_id;
} mirror_seen_t;

static bool admin_mirrors(const json_t *e, const char *kind, const json_t *payload,
                          mirror_seen_t seen[MIRROR_SEEN_MAX], size_t *nseen)
{
    if (!json_string_value(json_object_get(e, "uid")) || !kind)
        return false;
    if (strcmp(kind, "balance") == 0) {
        const char *reason = json_string_value(json_object_get(payload, "reason"));
        return reason && strcmp(reason, "promo") == 0;
    }
    if (strcmp(kind, "reservation") != 0 && strcmp(kind, "score") != 0)
        return false;
    mirror_seen_t me = {kind, json_string_value(json_object_get(payload, "status")),
                        json_integer_value(json_object_get(payload, "reservation_id"))};
    for (size_t j = 0; j < *nseen; j++)
        if (seen[j].reservation_id == me.reservation_id && strcmp(seen[j].kind, kind) == 0 &&
            (seen[j].status == me.status ||
             (seen[j].status && me.status && strcmp(seen[j].status, me.status) == 0)))
            return false;
    if (*nseen < MIRROR_SEEN_MAX)
        seen[(*nseen)++] = me;
    return true;
}

/* {"kind": "reservation" | "score" | "promo", "uid", "at_ms", ...payload}, minus "you". */
static void mirror_to_admins(hub_t *hub, const json_t *e, const char *kind, json_t *payload)
{
    json_t *ev = json_is_object(payload) ? json_copy(payload) : json_object();
    if (!ev)
        return;
    json_object_del(ev, "you");
    json_object_set_new(ev, "kind", json_string(strcmp(kind, "balance") == 0 ? "promo" : kind));
    json_object_set(ev, "uid", json_object_get(e, "uid"));
    json_object_set(ev, "at_ms", json_object_get(e, "at_ms"));
    events_publish_admin(hub, ev);
    json_decref(ev);
}

void events_publish(hub_t *hub, const json_t *events)
{
    size_t i;
    json_t *e;
    mirror_seen_t seen[MIRROR_SEEN_MAX];
    size_t nseen = 0;
    json_array_foreach (events, i, e) {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        json_t *payload = json_object_get(e, "payload");
        if (admin_mirrors(e, kind, payload, seen, &nseen))
            mirror_to_admins(hub, e, kind, payload);
        char channel[EVENTS_CHANNEL_MAX];
        const char *uid = json_string_value(json_object_get(e, "uid"));
        if (uid)
            events_user_channel(uid, channel, sizeof channel);
        else
            events_cabinet_channel((long)json_integer_value(json_object_get(e, "arcade_id")),
                                   channel, sizeof channel);
        json_int_t id = json_integer_value(json_object_get(e, "id"));
        json_t *wire =
            wire_of(json_string_value(json_object_get(e, "kind")), id,
                    json_integer_value(json_object_get(e, "at_ms")), json_object_get(e, "payload"));
        msgbuf_t *b = msgbuf_from_json(wire);
        json_decref(wire);
        if (!b)
            continue;
        b->event_id = id;
        /* Through Redis every process holding the device's socket gets it, this
         * one included; without Redis only our own sockets can, for now. */
        if (bus_publish(hub_bus(hub), channel, b->payload, b->len) != 0)
            deliver_local(hub, channel, b);
        msgbuf_unref(b);
    }
}

void events_publish_admin(hub_t *hub, const json_t *event)
{
    json_t *wire = json_pack("{s:s, s:O}", "type", "admin_event", "event", event);
    msgbuf_t *b = msgbuf_from_json(wire);
    json_decref(wire);
    if (b && bus_publish(hub_bus(hub), EVENTS_ADMIN_CHANNEL, b->payload, b->len) != 0)
        deliver_local(hub, EVENTS_ADMIN_CHANNEL, b);
    msgbuf_unref(b);
}

void events_on_bus_message(hub_t *hub, const char *channel, const char *payload, size_t len)
{
    msgbuf_t *b = msgbuf_from_bytes(payload, len);
    if (!b)
        return;
    json_t *msg = json_loadb(payload, len, 0, NULL);
    b->event_id = json_integer_value(json_object_get(msg, "event_id"));
    json_decref(msg);
    deliver_local(hub, channel, b);
    msgbuf_unref(b);
}

/* ---- resume ------------------------------------------------------------ */

/*
 * Every replay is a duty (duty.h): while PostgreSQL is unavailable it is
 * held, the socket kept, and retried until it has run; a resume is answered
 * only then. A channel's resync reads the channel's unacked events once and
 * pushes them to every member, the device dropping what it already has.
 */

typedef struct replay {
    hub_t *hub;
    session_ref_t *ref; /* a session's own replay; NULL for a channel's */
    duty_t *duty;       /* the attempt in flight */
    bool reply, has_id;
    int64_t id, since;
} replay_t;

/* The unacked events of a user ($1) or a cabinet ($2) after $3, oldest first, at most $4
 * (rn_events_unacked, 01_common.sql). */
static const char replay_sql[] =
    "SELECT * FROM rn_events_unacked($1, $2::bigint, $3::bigint, $4::integer)";

static void replay_free(void *arg)
{
    replay_t *r = arg;
    if (r->ref)
        session_ref_release(r->ref);
    free(r);
}

static void resume_begin_each(session_t *s, void *arg)
{
    (void)arg;
    session_resume_begin(s);
}

static void resume_end_each(session_t *s, void *arg)
{
    (void)arg;
    session_resume_end(s);
}

static void send_replayed_each(session_t *s, void *arg)
{
    session_send_replayed(s, arg);
}

/* Sends rows to s (the session's replay) or to every member of channel. */
static void send_rows(hub_t *hub, session_t *s, const char *channel, PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *payload = json_loads(PQgetvalue(res, i, 2), 0, NULL);
        json_int_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        json_t *wire =
            wire_of(PQgetvalue(res, i, 1), id, strtoll(PQgetvalue(res, i, 3), NULL, 10), payload);
        msgbuf_t *b = msgbuf_from_json(wire);
        if (b) {
            b->event_id = id;
            if (s)
                session_send_replayed(s, b);
            else
                fanout_each(hub_fanout(hub), channel, send_replayed_each, b);
        }
        msgbuf_unref(b);
        json_decref(wire);
        json_decref(payload);
    }
}

static void on_replay_rows(void *arg, int status, PGresult *res, const char *errmsg)
{
    replay_t *r = arg;
    duty_t *d = r->duty;
    const char *channel = r->ref ? NULL : duty_key(d) + strlen("events:");
    session_t *s = r->ref ? session_ref_get(r->ref) : NULL;
    if (status == PG_EUNAVAILABLE) {
        if (s)
            session_resume_end(s); /* live events flow while it waits */
        else if (!r->ref)
            fanout_each(hub_fanout(r->hub), channel, resume_end_each, NULL);
        duty_done(d, r->ref && !s, errmsg); /* a closed session needs nothing more */
        return;
    }
    if (status != PG_OK)
        log_warn("replay failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
    if (s && r->reply)
        session_send_json(s, status == PG_OK ? envelope_ok(r->has_id, r->id)
                                             : envelope_error(r->has_id, r->id, "internal",
                                                              "cannot read events"));
    if (status == PG_OK && (s || !r->ref))
        send_rows(r->hub, s, channel, res);
    if (s)
        session_resume_end(s);
    else if (!r->ref)
        fanout_each(hub_fanout(r->hub), channel, resume_end_each, NULL);
    duty_done(d, true, NULL); /* a statement error is not retried: it would fail again */
}

/* One attempt of a replay duty: 0 when the query is queued. */
static int replay_run(hub_t *hub, duty_t *d, void *arg)
{
    replay_t *r = arg;
    const char *channel = r->ref ? NULL : duty_key(d) + strlen("events:");
    session_t *s = r->ref ? session_ref_get(r->ref) : NULL;
    char arcade[24] = "0", after[24];
    const char *uid = "";
    if (r->ref && !s) {
        duty_done(d, true, NULL); /* the session closed while it waited */
        return 0;
    }
    if (s) {
        snprintf(arcade, sizeof arcade, "%ld", session_arcade_id(s));
        uid = session_uid(s) ? session_uid(s) : "";
    } else if (fanout_size(hub_fanout(hub), channel) == 0) {
        duty_done(d, true, NULL); /* nobody left to catch up */
        return 0;
    } else if (!strncmp(channel, "rn:user:", 8)) {
        uid = channel + 8;
    } else {
        snprintf(arcade, sizeof arcade, "%ld", strtol(channel + 11, NULL, 10));
    }
    snprintf(after, sizeof after, "%" PRId64, r->since);
    const char *params[] = {uid, arcade, after, RESUME_BATCH};
    r->duty = d;
    if (pg_pool_query(hub_pool(hub), replay_sql, 4, params, on_replay_rows, r) != 0)
        return -1;
    if (s)
        session_resume_begin(s); /* live events wait behind the replay, in order */
    else
        fanout_each(hub_fanout(hub), channel, resume_begin_each, NULL);
    return 0;
}

/* Replays s's unacked events after since, as a duty; reply: answers a resume request. */
static void replay(session_t *s, int64_t since, bool reply, bool has_id, int64_t id)
{
    static unsigned long seq;
    hub_t *hub = session_hub(s);
    replay_t *r = calloc(1, sizeof *r);
    if (!r || !(r->ref = session_ref(s))) {
        free(r);
        if (reply)
            session_send_error(s, has_id, id, "unavailable", "out of memory");
        return;
    }
    r->hub = hub;
    r->reply = reply;
    r->has_id = has_id;
    r->id = id;
    r->since = since;
    char key[48];
    snprintf(key, sizeof key, "replay:%lu", ++seq);
    if (duty_want(hub_duties(hub), key, replay_run, r, replay_free) < 0 && reply)
        session_send_error(s, has_id, id, "unavailable", "cannot replay now");
}

void events_on_resume(session_t *s, const envelope_t *env)
{
    json_t *since = json_object_get(env->body, "since");
    if (since && (!json_is_integer(since) || json_integer_value(since) < 0)) {
        session_send_error(s, env->has_id, env->id, "bad_request",
                           "since must be an event id >= 0");
        return;
    }
    replay(s, since ? json_integer_value(since) : 0, true, env->has_id, env->id);
}

void events_replay(session_t *s, int64_t since)
{
    replay(s, since, false, false, 0);
}

void events_resync_channel(hub_t *hub, const char *channel)
{
    if (strncmp(channel, "rn:user:", 8) && strncmp(channel, "rn:cabinet:", 11))
        return;
    char key[EVENTS_CHANNEL_MAX + 16];
    snprintf(key, sizeof key, "events:%s", channel);
    replay_t *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->hub = hub;
    duty_want(hub_duties(hub), key, replay_run, r, replay_free); /* coalesced per channel */
}

static void resync_each(const char *channel, void *arg)
{
    events_resync_channel(arg, channel);
}

void events_resync(hub_t *hub)
{
    fanout_each_channel(hub_fanout(hub), resync_each, hub);
}

/* ---- ack --------------------------------------------------------------- */

/*
 * An ack is a duty too: it is the fact a no-show is decided on (rn_call_due),
 * so one that arrives while PostgreSQL is away is recorded when it returns,
 * with the time the hub received it.
 */
typedef struct ack {
    session_ref_t *ref; /* to answer, when the ack had an id */
    bool has_id;
    int64_t id;
    char event_id[24], arcade[24], at_ms[24];
    char *uid;
    duty_t *duty;
} ack_t;

static void ack_free(void *arg)
{
    ack_t *a = arg;
    session_ref_release(a->ref);
    free(a->uid);
    free(a);
}

static void on_acked(void *arg, int status, PGresult *res, const char *errmsg)
{
    ack_t *a = arg;
    session_t *s = session_ref_get(a->ref);
    if (status == PG_EUNAVAILABLE) {
        duty_done(a->duty, false, errmsg);
        return;
    }
    if (status == PG_OK && PQntuples(res) == 1)
        metrics_delivery_observe(PQgetvalue(res, 0, 0), strtod(PQgetvalue(res, 0, 1), NULL));
    if (s && a->has_id) {
        if (status == PG_OK)
            session_send_json(s, envelope_ok(true, a->id));
        else
            session_send_error(s, true, a->id, "internal", "cannot ack");
    }
    duty_done(a->duty, true, NULL);
}

static int ack_run(hub_t *hub, duty_t *d, void *arg)
{
    ack_t *a = arg;
    const char *params[] = {a->event_id, a->uid, a->arcade, a->at_ms};
    a->duty = d;
    /* Only the recipient can ack; a second ack changes nothing. */
    return pg_pool_query(hub_pool(hub),
                         "SELECT kind, seconds FROM rn_ack($1::bigint, $2, $3::bigint, $4::bigint)",
                         4, params, on_acked, a) == 0
               ? 0
               : -1;
}

void events_on_ack(session_t *s, const envelope_t *env)
{
    static unsigned long seq;
    json_t *event_id = json_object_get(env->body, "event_id");
    if (!json_is_integer(event_id) || json_integer_value(event_id) <= 0) {
        session_send_error(s, env->has_id, env->id, "bad_request", "ack needs an event_id");
        return;
    }
    ack_t *a = calloc(1, sizeof *a);
    if (!a || !(a->ref = session_ref(s)) ||
        !(a->uid = strdup(session_uid(s) ? session_uid(s) : ""))) {
        if (a && a->ref)
            session_ref_release(a->ref);
        free(a);
        return;
    }
    a->has_id = env->has_id;
    a->id = env->id;
    snprintf(a->event_id, sizeof a->event_id, "%" JSON_INTEGER_FORMAT,
             json_integer_value(event_id));
    snprintf(a->arcade, sizeof a->arcade, "%ld", session_arcade_id(s));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(a->at_ms, sizeof a->at_ms, "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    char key[48];
    snprintf(key, sizeof key, "ack:%lu", ++seq);
    duty_want(hub_duties(session_hub(s)), key, ack_run, a, ack_free);
}
