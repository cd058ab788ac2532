/*
 * events: the private lane, from commit to device ack (see events.h).
 */
#include "events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"
#include "log.h"
#include "metrics.h"
#include "msgbuf.h"

#define RESUME_BATCH 500

void events_user_channel(const char *uid, char *out, size_t outlen)
{
    snprintf(out, outlen, "rn:user:%s", uid);
}

void events_cabinet_channel(long arcade_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "rn:cabinet:%ld", arcade_id);
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
    json_array_foreach(events, i, e)
    {
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

typedef struct replay {
    session_ref_t *ref;
    bool reply, has_id;
    int64_t id;
} replay_t;

/* The unacked events of a session's user or cabinet after $3, oldest first. */
static const char replay_sql[] =
    "SELECT e.id, e.kind, e.payload::text, (extract(epoch FROM e.created_at) * 1000)::bigint "
    "FROM user_events e WHERE e.acked_at IS NULL AND e.id > $3 AND "
    "(e.user_id = rn_user_id($1) OR e.arcade_id = $2::bigint) ORDER BY e.id LIMIT 500";

static void on_replay_rows(void *arg, int status, PGresult *res, const char *errmsg)
{
    replay_t *r = arg;
    session_t *s = session_ref_get(r->ref);
    if (s && status != PG_OK) {
        if (r->reply)
            session_send_error(s, r->has_id, r->id, "unavailable", "cannot read events now");
        log_warn("replay failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
    } else if (s) {
        if (r->reply)
            session_send_json(s, envelope_ok(r->has_id, r->id));
        for (int i = 0; i < PQntuples(res); i++) {
            json_t *payload = json_loads(PQgetvalue(res, i, 2), 0, NULL);
            json_t *wire = wire_of(PQgetvalue(res, i, 1), strtoll(PQgetvalue(res, i, 0), NULL, 10),
                                   strtoll(PQgetvalue(res, i, 3), NULL, 10), payload);
            msgbuf_t *b = msgbuf_from_json(wire);
            if (b) {
                b->event_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
                session_send_replayed(s, b);
            }
            msgbuf_unref(b);
            json_decref(wire);
            json_decref(payload);
        }
    }
    if (s)
        session_resume_end(s);
    session_ref_release(r->ref);
    free(r);
}

/* Reads the unacked events after since for s; reply: answer a resume request. */
static void replay(session_t *s, int64_t since, bool reply, bool has_id, int64_t id)
{
    replay_t *r = calloc(1, sizeof *r);
    if (!r || !(r->ref = session_ref(s))) {
        free(r);
        return;
    }
    r->reply = reply;
    r->has_id = has_id;
    r->id = id;
    char arcade[24], after[24];
    snprintf(arcade, sizeof arcade, "%ld", session_arcade_id(s));
    snprintf(after, sizeof after, "%" PRId64, since);
    const char *uid = session_uid(s);
    const char *params[] = {uid ? uid : "", arcade, after};
    session_resume_begin(s);
    if (pg_pool_query(hub_pool(session_hub(s)), replay_sql, 3, params, on_replay_rows, r) != 0) {
        session_resume_end(s);
        if (reply)
            session_send_error(s, has_id, id, "unavailable", "database unavailable");
        session_ref_release(r->ref);
        free(r);
    }
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

static void resync_session(session_t *s, void *arg)
{
    (void)arg;
    replay(s, 0, false, false, 0); /* dedupe by event id drops what it already has */
}

void events_resync_channel(hub_t *hub, const char *channel)
{
    if (!strncmp(channel, "rn:user:", 8) || !strncmp(channel, "rn:cabinet:", 11))
        fanout_each(hub_fanout(hub), channel, resync_session, NULL);
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

typedef struct ack {
    session_ref_t *ref;
    bool has_id;
    int64_t id;
} ack_t;

static void on_acked(void *arg, int status, PGresult *res, const char *errmsg)
{
    ack_t *a = arg;
    session_t *s = session_ref_get(a->ref);
    if (status == PG_OK && PQntuples(res) == 1)
        metrics_delivery_observe(PQgetvalue(res, 0, 0), strtod(PQgetvalue(res, 0, 1), NULL));
    if (s && a->has_id) {
        if (status == PG_OK)
            session_send_json(s, envelope_ok(true, a->id));
        else
            session_send_error(s, true, a->id, "unavailable", errmsg ? "cannot ack now" : "");
    }
    session_ref_release(a->ref);
    free(a);
}

void events_on_ack(session_t *s, const envelope_t *env)
{
    json_t *event_id = json_object_get(env->body, "event_id");
    if (!json_is_integer(event_id) || json_integer_value(event_id) <= 0) {
        session_send_error(s, env->has_id, env->id, "bad_request", "ack needs an event_id");
        return;
    }
    ack_t *a = calloc(1, sizeof *a);
    if (!a || !(a->ref = session_ref(s))) {
        free(a);
        return;
    }
    a->has_id = env->has_id;
    a->id = env->id;
    char idtext[24], arcade[24];
    snprintf(idtext, sizeof idtext, "%" JSON_INTEGER_FORMAT, json_integer_value(event_id));
    snprintf(arcade, sizeof arcade, "%ld", session_arcade_id(s));
    const char *uid = session_uid(s);
    const char *params[] = {idtext, uid ? uid : "", arcade};
    /* Only the recipient can ack; a second ack changes nothing. */
    if (pg_pool_query(hub_pool(session_hub(s)),
                      "UPDATE user_events SET acked_at = clock_timestamp() "
                      "WHERE id = $1 AND acked_at IS NULL AND "
                      "(user_id = rn_user_id($2) OR arcade_id = $3::bigint) "
                      "RETURNING kind, extract(epoch FROM acked_at - created_at)",
                      3, params, on_acked, a) != 0) {
        if (a->has_id)
            session_send_error(s, true, a->id, "unavailable", "database unavailable");
        session_ref_release(a->ref);
        free(a);
    }
}
