/*
 * cabinet: the hub side of a cabinet's socket (see cabinet.h).
 *
 * This file keeps the entries (one per arcade held here, cabinet_op.h),
 * runs each arcade's statements one at a time, and follows the cabinet's
 * socket: authenticated, messages, closed. The timers are in
 * cabinet_timers.c, the messages in cabinet_msg.c.
 */
#include "cabinet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cabinet_config.h"
#include "cabinet_op.h"
#include "dict.h"
#include "events.h"
#include "fanout.h"
#include "log.h"
#include "queue.h"

#define OPS_MAX 64 /* queued per arcade; beyond, requests get `busy` */

struct cabinets {
    hub_t *hub;
    dict_t *entries; /* "<arcade id>" -> cabinet_entry_t */
    unsigned live;   /* entries not freed yet */
    bool closed;
};

cabinets_t *cabinets_new(hub_t *hub)
{
    cabinets_t *c = calloc(1, sizeof *c);
    if (!c || !(c->entries = dict_new())) {
        free(c);
        return NULL;
    }
    c->hub = hub;
    return c;
}

static void cabinets_free(cabinets_t *c)
{
    dict_free(c->entries);
    free(c);
}

/* ---- entries ----------------------------------------------------------- */

static void entry_key(long arcade_id, char *key, size_t n)
{
    snprintf(key, n, "%ld", arcade_id);
}

static cabinet_entry_t *entry_get(cabinets_t *c, long arcade_id, bool create)
{
    char key[24];
    entry_key(arcade_id, key, sizeof key);
    cabinet_entry_t *e = dict_get(c->entries, key);
    if (e || !create || c->closed)
        return e;
    if (!(e = calloc(1, sizeof *e)))
        return NULL;
    if (dict_set(c->entries, key, e) != 0) {
        free(e);
        return NULL;
    }
    e->c = c;
    e->hub = c->hub;
    e->arcade_id = arcade_id;
    uv_timer_init(hub_loop(c->hub), &e->deadline_timer);
    uv_timer_init(hub_loop(c->hub), &e->grace_timer);
    e->deadline_timer.data = e->grace_timer.data = e;
    e->open_handles = 2;
    c->live++;
    return e;
}

static void on_entry_handle_closed(uv_handle_t *h)
{
    cabinet_entry_t *e = h->data;
    if (--e->open_handles > 0)
        return;
    cabinets_t *c = e->c;
    free(e);
    if (--c->live == 0 && c->closed)
        cabinets_free(c);
}

/* After cabinets_close, an entry goes as soon as no statement is in flight. */
void cabinet_entry_release(cabinet_entry_t *e)
{
    if (e->closing || e->inflight)
        return;
    if (!e->c->closed && (e->sessions > 0 || e->grace || e->head))
        return;
    char key[24];
    entry_key(e->arcade_id, key, sizeof key);
    dict_delete(e->c->entries, key);
    e->closing = true;
    uv_close((uv_handle_t *)&e->deadline_timer, on_entry_handle_closed);
    uv_close((uv_handle_t *)&e->grace_timer, on_entry_handle_closed);
}

/* ---- the arcade's statements, one at a time ---------------------------- */

static void run_ops(cabinet_entry_t *e);

static void pop_op(cabinet_entry_t *e)
{
    cabinet_op_t *op = e->head;
    e->head = op->next;
    if (!e->head)
        e->tail = NULL;
    e->nops--;
    cabinet_op_free(op);
}

static void on_op_done(void *arg, int status, PGresult *res, const char *errmsg)
{
    cabinet_op_t *op = arg;
    cabinet_entry_t *e = op->entry;
    if (status == PG_EQUERY)
        log_error("cabinet statement failed",
                  json_pack("{s:i, s:s, s:s}", "arcade_id", (int)e->arcade_id, "sql", op->sql,
                            "error", errmsg ? errmsg : ""));
    e->inflight = false;
    if (!op->done(e->hub, op, status, res))
        pop_op(e);
    run_ops(e);
    cabinet_entry_release(e);
}

static void run_ops(cabinet_entry_t *e)
{
    while (e->head && !e->inflight && !e->closing) {
        cabinet_op_t *op = e->head;
        pg_pool_t *pool = hub_pool(e->hub);
        if (pool && pg_pool_query(pool, op->sql, op->nparams, (const char *const *)op->params,
                                  on_op_done, op) == 0) {
            e->inflight = true;
            return;
        }
        op->done(e->hub, op, PG_EUNAVAILABLE, NULL);
        pop_op(e);
    }
}

void cabinet_submit(hub_t *hub, cabinet_op_t *op)
{
    cabinets_t *c = hub_cabinets(hub);
    cabinet_entry_t *e = c ? entry_get(c, op->arcade_id, false) : NULL;
    if (!e || e->closing || e->nops >= OPS_MAX) {
        session_t *s = cabinet_op_session(op);
        bool busy = e && !e->closing;
        if (s)
            session_send_error(s, op->has_id, op->id, busy ? "busy" : "unavailable",
                               busy ? "too many requests in flight" : "the hub is stopping");
        cabinet_op_free(op);
        return;
    }
    op->entry = e;
    if (e->tail)
        e->tail->next = op;
    else
        e->head = op;
    e->tail = op;
    e->nops++;
    run_ops(e);
}

void cabinet_on_snapshot(hub_t *hub, long arcade_id, const json_t *snapshot)
{
    cabinets_t *c = hub_cabinets(hub);
    cabinet_entry_t *e = c ? entry_get(c, arcade_id, false) : NULL;
    if (e && !e->closing)
        cabinet_deadline_arm(e, snapshot);
}

/* ---- the cabinet's socket --------------------------------------------- */

/*
 * In order: the arcade's public channel (so this process's view of it stays
 * current, and every change committed from now on reaches us), the grace
 * window cancelled, the cabinet's unacked inbox replayed (live events wait
 * behind it, so none is skipped), then rn_cabinet_online, whose
 * cabinet_queue comes last: the cabinet acts on the newest.
 */
void cabinet_on_authenticated(session_t *s)
{
    hub_t *hub = session_hub(s);
    cabinets_t *c = hub_cabinets(hub);
    long arcade_id = session_arcade_id(s);
    cabinet_entry_t *e = c ? entry_get(c, arcade_id, true) : NULL;
    char channel[48];
    snprintf(channel, sizeof channel, "rn:arcade:%ld", arcade_id);
    if (!e || e->closing || fanout_join(hub_fanout(hub), s, channel) != 0) {
        session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    e->sessions++;
    cabinet_grace_stop(e);
    const json_t *snapshot = queue_snapshot(hub, arcade_id);
    if (snapshot)
        cabinet_deadline_arm(e, snapshot);
    events_replay(s, 0); /* its unacked commands, before the fresh cabinet_queue */
    if (cabinet_entry_online(e, s) != 0)
        session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
    else if (cabinet_config_push(hub, arcade_id) != 0)
        log_warn("cabinet config not pushed", json_pack("{s:i}", "arcade_id", (int)arcade_id));
}

void cabinet_on_closed(session_t *s)
{
    cabinets_t *c = hub_cabinets(session_hub(s));
    cabinet_entry_t *e = c ? entry_get(c, session_arcade_id(s), false) : NULL;
    if (!e || e->closing || e->sessions == 0)
        return;
    if (--e->sessions == 0 && !c->closed)
        cabinet_grace_start(e);
}

void cabinet_on_message(session_t *s, const envelope_t *env)
{
    switch (env->type) {
    case RN_MSG_UNLOCK:
        cabinet_msg_unlock(s, env);
        break;
    case RN_MSG_GAME_STARTED:
        cabinet_msg_game_started(s, env);
        break;
    case RN_MSG_GAME_OVER:
        cabinet_msg_game_over(s, env);
        break;
    case RN_MSG_STATUS:
        cabinet_msg_status(s, env);
        break;
    default:
        session_send_error(s, env->has_id, env->id, "unknown_type", "not a cabinet message");
        break;
    }
}

/* ---- shutdown ---------------------------------------------------------- */

static void collect(const char *key, void *value, void *arg)
{
    (void)key;
    cabinet_entry_t ***cursor = arg;
    *(*cursor)++ = value;
}

/* Drops the queued ops of e, all but one in flight (its callback is still to come). */
static void drop_queued(cabinet_entry_t *e)
{
    while (e->head && !e->inflight)
        pop_op(e);
    while (e->head && e->head->next) {
        cabinet_op_t *second = e->head->next;
        e->head->next = second->next;
        if (e->tail == second)
            e->tail = e->head;
        e->nops--;
        cabinet_op_free(second);
    }
}

/*
 * The pool is closed first (hub.c), so nothing queued would run: drop it,
 * stop the timers and close every entry; one whose statement is still in
 * flight closes when it completes. Frees itself after the last entry.
 */
void cabinets_close(cabinets_t *c)
{
    if (!c)
        return;
    c->closed = true;
    size_t n = dict_size(c->entries);
    cabinet_entry_t **all = calloc(n ? n : 1, sizeof *all), **cursor = all;
    if (all)
        dict_each(c->entries, collect, &cursor);
    for (size_t i = 0; all && i < n; i++) {
        drop_queued(all[i]);
        cabinet_grace_stop(all[i]);
        uv_timer_stop(&all[i]->deadline_timer);
        cabinet_entry_release(all[i]);
    }
    free(all);
    if (c->live == 0)
        cabinets_free(c);
}

typedef struct held_ctx {
    void (*fn)(long arcade_id, void *arg);
    void *arg;
} held_ctx_t;

static void call_held(const char *key, void *value, void *arg)
{
    (void)key;
    held_ctx_t *ctx = arg;
    cabinet_entry_t *e = value;
    if (!e->closing)
        ctx->fn(e->arcade_id, ctx->arg);
}

void cabinets_each_held(cabinets_t *c, void (*fn)(long arcade_id, void *arg), void *arg)
{
    held_ctx_t ctx = {fn, arg};
    if (c && !c->closed)
        dict_each(c->entries, call_held, &ctx);
}

/* ---- key rotation ------------------------------------------------------ */

static void close_revoked(session_t *s, void *arg)
{
    (void)arg;
    session_close(s, CLOSE_UNAUTHENTICATED, "api key rotated");
}

static void close_local_cabinets(hub_t *hub, long arcade_id)
{
    char channel[EVENTS_CHANNEL_MAX];
    events_cabinet_channel(arcade_id, channel, sizeof channel);
    fanout_each(hub_fanout(hub), channel, close_revoked, NULL);
}

void cabinet_revoke(hub_t *hub, long arcade_id)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "{\"revoke_cabinet\":%ld}", arcade_id);
    bus_publish(hub_bus(hub), CABINET_CONTROL_CHANNEL, msg, (size_t)n);
    close_local_cabinets(hub, arcade_id); /* now, and again (a no-op) on our echo */
}

void cabinet_on_control(hub_t *hub, const char *payload, size_t len)
{
    json_t *msg = json_loadb(payload, len, 0, NULL);
    json_int_t id = json_integer_value(json_object_get(msg, "revoke_cabinet"));
    if (id > 0)
        close_local_cabinets(hub, (long)id);
    json_decref(msg);
}
