/*
 * queue: the newest snapshot of each arcade this process watches (see
 * queue.h). Snapshots are applied only when their v is higher than the one
 * held, so the order in which the bus or a local commit delivers them does
 * not matter.
 */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "duty.h"
#include "fanout.h"
#include "log.h"
#include "msgbuf.h"

typedef struct arcade_view {
    long arcade_id;
    json_int_t v;
    json_t *snapshot;
    msgbuf_t *buf; /* the snapshot encoded once for every subscriber */
} arcade_view_t;

struct queues {
    hub_t *hub;
    dict_t *views;              /* "<arcade id>" -> arcade_view_t */
    queue_snapshot_cb on_newer; /* queues_set_snapshot_hook, or NULL */
};

queues_t *queues_new(hub_t *hub)
{
    queues_t *q = calloc(1, sizeof *q);
    if (!q || !(q->views = dict_new())) {
        free(q);
        return NULL;
    }
    q->hub = hub;
    return q;
}

static void free_view(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    arcade_view_t *view = value;
    json_decref(view->snapshot);
    msgbuf_unref(view->buf);
    free(view);
}

void queues_set_snapshot_hook(queues_t *q, queue_snapshot_cb cb)
{
    q->on_newer = cb;
}

void queues_free(queues_t *q)
{
    if (!q)
        return;
    dict_each(q->views, free_view, NULL);
    dict_free(q->views);
    free(q);
}

static void arcade_channel(long arcade_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "rn:arcade:%ld", arcade_id);
}

static arcade_view_t *view_of(queues_t *q, long arcade_id, bool create)
{
    char key[24];
    snprintf(key, sizeof key, "%ld", arcade_id);
    arcade_view_t *view = dict_get(q->views, key);
    if (!view && create && (view = calloc(1, sizeof *view))) {
        view->arcade_id = arcade_id;
        view->v = -1;
        if (dict_set(q->views, key, view) != 0) {
            free(view);
            view = NULL;
        }
    }
    return view;
}

typedef struct push_ctx {
    long arcade_id;
    msgbuf_t *buf;
} push_ctx_t;

static void push_view(session_t *s, void *arg)
{
    push_ctx_t *ctx = arg;
    session_send_public(s, ctx->arcade_id, ctx->buf);
}

/*
 * Keeps snapshot if it is newer than what is held, and pushes it to the
 * channel's members. snapshot is borrowed (a reference is kept); buf is its
 * encoding when the caller has one (borrowed), NULL to encode it here.
 * true when it was newer (and pushed).
 */
static bool apply(hub_t *hub, json_t *snapshot, msgbuf_t *buf)
{
    long arcade_id = (long)json_integer_value(json_object_get(snapshot, "arcade_id"));
    json_int_t v = json_integer_value(json_object_get(snapshot, "v"));
    if (arcade_id <= 0)
        return false;
    arcade_view_t *view = view_of(hub_queues(hub), arcade_id, true);
    if (!view || v <= view->v)
        return false;
    buf = buf ? msgbuf_ref(buf) : msgbuf_from_json(snapshot);
    if (!buf)
        return false;
    json_decref(view->snapshot);
    msgbuf_unref(view->buf);
    view->snapshot = json_incref(snapshot);
    view->buf = buf;
    view->v = v;
    char channel[48];
    arcade_channel(arcade_id, channel, sizeof channel);
    push_ctx_t ctx = {arcade_id, buf};
    fanout_each(hub_fanout(hub), channel, push_view, &ctx);
    queues_t *q = hub_queues(hub);
    if (q->on_newer)
        q->on_newer(hub, arcade_id, view->snapshot);
    return true;
}

/* Encoded once: the same bytes go on the bus and to this process's sockets. */
void queue_publish(hub_t *hub, json_t *snapshot)
{
    msgbuf_t *buf = msgbuf_from_json(snapshot);
    if (!buf)
        return;
    char channel[48];
    arcade_channel((long)json_integer_value(json_object_get(snapshot, "arcade_id")), channel,
                   sizeof channel);
    bus_publish(hub_bus(hub), channel, buf->payload, buf->len);
    apply(hub, snapshot, buf); /* our own echo from the bus will be no newer */
    msgbuf_unref(buf);
}

/* The bus's bytes are the compact encoding already: they are what sockets get. */
void queue_on_bus_message(hub_t *hub, const char *channel, const char *payload, size_t len)
{
    (void)channel;
    json_t *snapshot = json_loadb(payload, len, 0, NULL);
    msgbuf_t *buf = json_is_object(snapshot) ? msgbuf_from_bytes(payload, len) : NULL;
    if (buf)
        apply(hub, snapshot, buf);
    msgbuf_unref(buf);
    json_decref(snapshot);
}

const json_t *queue_snapshot(hub_t *hub, long arcade_id)
{
    arcade_view_t *view = view_of(hub_queues(hub), arcade_id, false);
    return view ? view->snapshot : NULL;
}

/* ---- loading from PostgreSQL ------------------------------------------ */

/*
 * Every load is a duty (duty.h): a resync of a channel (coalesced per
 * channel) or a subscriber waiting for its first snapshot, retried while
 * PostgreSQL is unavailable; the subscriber stays joined meanwhile.
 */
typedef struct load {
    hub_t *hub;
    long arcade_id;
    session_ref_t *ref; /* a subscriber waiting for its first snapshot, or NULL */
    bool has_id;
    int64_t id;
    duty_t *duty; /* the attempt in flight */
} load_t;

static void send_view(session_t *s, hub_t *hub, long arcade_id)
{
    arcade_view_t *view = view_of(hub_queues(hub), arcade_id, false);
    if (view && view->buf)
        session_send_public(s, arcade_id, view->buf);
}

/* The ok of a subscribe; the view follows it. */
static void send_subscribed(session_t *s, load_t *l)
{
    char ch[32];
    snprintf(ch, sizeof ch, "arcade:%ld", l->arcade_id);
    json_t *ok = envelope_ok(l->has_id, l->id);
    json_object_set_new(ok, "ch", json_string(ch));
    session_send_json(s, ok);
}

static void answer_subscribe(session_t *s, load_t *l)
{
    send_subscribed(s, l);
    send_view(s, l->hub, l->arcade_id);
}

static void load_free(void *arg)
{
    load_t *l = arg;
    if (l->ref)
        session_ref_release(l->ref);
    free(l);
}

static void on_loaded(void *arg, int status, PGresult *res, const char *errmsg)
{
    load_t *l = arg;
    session_t *s = l->ref ? session_ref_get(l->ref) : NULL;
    json_t *snapshot = NULL;
    if (status == PG_EUNAVAILABLE) {
        duty_done(l->duty, l->ref && !s, errmsg); /* retried, unless its subscriber left */
        return;
    }
    if (status == PG_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        snapshot = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!snapshot && status != PG_OK)
        log_warn("queue load failed", json_pack("{s:i, s:s}", "arcade_id", (int)l->arcade_id,
                                                "error", errmsg ? errmsg : ""));
    if (s && snapshot)
        send_subscribed(s, l); /* the ok goes before the snapshot that apply() pushes */
    /* s joined the channel first: a newer snapshot reaches it with every member */
    if (snapshot && !apply(l->hub, snapshot, NULL) && s)
        send_view(s, l->hub, l->arcade_id);
    if (s && !snapshot) {
        char channel[48];
        arcade_channel(l->arcade_id, channel, sizeof channel);
        fanout_leave(hub_fanout(l->hub), s, channel);
        session_send_error(s, l->has_id, l->id, status == PG_OK ? "not_found" : "internal",
                           status == PG_OK ? "no such arcade" : "cannot load the queue");
    }
    json_decref(snapshot);
    duty_done(l->duty, true, NULL);
}

/* One attempt: reads the arcade's snapshot. */
static int load_run(hub_t *hub, duty_t *d, void *arg)
{
    load_t *l = arg;
    char channel[48];
    arcade_channel(l->arcade_id, channel, sizeof channel);
    if ((l->ref && !session_ref_get(l->ref)) ||
        (!l->ref && fanout_size(hub_fanout(hub), channel) == 0)) {
        duty_done(d, true, NULL); /* nobody waits for this view any more */
        return 0;
    }
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%ld", l->arcade_id);
    const char *params[] = {idtext};
    l->duty = d;
    return pg_pool_query(hub_pool(hub), "SELECT rn_queue_snapshot($1::bigint)", 1, params,
                         on_loaded, l) == 0
               ? 0
               : -1;
}

/* Loads an arcade's snapshot, as a duty; with s, answers its subscribe when done. */
static int load(hub_t *hub, long arcade_id, session_t *s, bool has_id, int64_t id)
{
    static unsigned long seq;
    load_t *l = calloc(1, sizeof *l);
    if (!l)
        return -1;
    *l = (load_t){hub, arcade_id, NULL, has_id, id, NULL};
    if (s && !(l->ref = session_ref(s))) {
        free(l);
        return -1;
    }
    char key[64];
    if (s)
        snprintf(key, sizeof key, "subscribe:%lu", ++seq);
    else
        snprintf(key, sizeof key, "queue:rn:arcade:%ld", arcade_id); /* one per channel */
    return duty_want(hub_duties(hub), key, load_run, l, load_free) < 0 ? -1 : 0;
}

void queue_resync_channel(hub_t *hub, const char *channel)
{
    long arcade_id;
    if (sscanf(channel, "rn:arcade:%ld", &arcade_id) == 1)
        load(hub, arcade_id, NULL, false, 0);
}

static void resync_each(const char *channel, void *arg)
{
    queue_resync_channel(arg, channel);
}

void queue_resync(hub_t *hub)
{
    fanout_each_channel(hub_fanout(hub), resync_each, hub);
}

/* ---- subscribe --------------------------------------------------------- */

/*
 * The request's "ch": "arcade:<id>" -> the id, with its bus channel in
 * channel. -1 after answering bad_request.
 */
static long read_channel(session_t *s, const envelope_t *env, char channel[48])
{
    const char *ch = json_string_value(json_object_get(env->body, "ch"));
    long id;
    char tail;
    if (!ch || sscanf(ch, "arcade:%ld%c", &id, &tail) != 1 || id <= 0) {
        session_send_error(s, env->has_id, env->id, "bad_request", "ch must be \"arcade:<id>\"");
        return -1;
    }
    arcade_channel(id, channel, 48);
    return id;
}

void queue_on_subscribe(session_t *s, const envelope_t *env)
{
    hub_t *hub = session_hub(s);
    char channel[48];
    long arcade_id = read_channel(s, env, channel);
    if (arcade_id < 0)
        return;
    if (fanout_is_member(hub_fanout(hub), s, channel)) {
        load_t l = {hub, arcade_id, NULL, env->has_id, env->id, NULL};
        answer_subscribe(s, &l);
        return;
    }
    if (fanout_count_prefix(s, "rn:arcade:") >= SESSION_SUBSCRIPTIONS_MAX) {
        char why[48];
        snprintf(why, sizeof why, "at most %d arcades per socket", SESSION_SUBSCRIPTIONS_MAX);
        session_send_error(s, env->has_id, env->id, "too_many_subscriptions", why);
        return;
    }
    /*
     * A view held here is current only while this process listened to the
     * channel; the first local subscriber reloads it. Join first, so no
     * change committed while we load is missed.
     */
    bool current = fanout_size(hub_fanout(hub), channel) > 0;
    if (fanout_join(hub_fanout(hub), s, channel) != 0) {
        session_send_error(s, env->has_id, env->id, "unavailable", "out of memory");
        return;
    }
    arcade_view_t *view = view_of(hub_queues(hub), arcade_id, false);
    if (current && view && view->buf) {
        load_t l = {hub, arcade_id, NULL, env->has_id, env->id, NULL};
        answer_subscribe(s, &l);
    } else if (load(hub, arcade_id, s, env->has_id, env->id) != 0) {
        fanout_leave(hub_fanout(hub), s, channel);
        session_send_error(s, env->has_id, env->id, "unavailable", "out of memory");
    }
}

void queue_on_unsubscribe(session_t *s, const envelope_t *env)
{
    char channel[48];
    long arcade_id = read_channel(s, env, channel);
    if (arcade_id < 0)
        return;
    fanout_leave(hub_fanout(session_hub(s)), s, channel);
    session_send_json(s, envelope_ok(env->has_id, env->id));
}
