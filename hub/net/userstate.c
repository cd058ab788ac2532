/* userstate: the deleted users' set, loaded and kept current (see userstate.h). */
#include "userstate.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "log.h"
#include "metrics.h"
#include "session.h"

enum { USERSTATE_RETRY_MS = 1000 };

#define MARK_DELETED ((void *)1)
#define MARK_RESTORED ((void *)2)

struct userstate {
    hub_t *hub;
    dict_t *deleted; /* uid -> MARK_DELETED */
    dict_t *since;   /* while a load runs: uid -> the newest change seen meanwhile */
    bool loading, again, closed, timer_closed;
    bool failing; /* the last load failed: said once, not at every retry */
    uv_timer_t retry;
};

static void load_start(userstate_t *us);

static void on_retry(uv_timer_t *t)
{
    load_start(t->data);
}

/* Applies the changes seen during the load on top of its result. */
static void replay_change(const char *uid, void *mark, void *arg)
{
    dict_t *set = arg;
    if (mark == MARK_DELETED)
        dict_set(set, uid, MARK_DELETED);
    else
        dict_delete(set, uid);
}

static bool is_deleted(const char *uid, void *arg)
{
    return dict_get(arg, uid) != NULL;
}

/* Closes the sockets of users deleted while this process was not told (bus down). */
static void close_deleted(userstate_t *us)
{
    if (!hub_sessions(us->hub))
        return; /* not serving yet */
    size_t n = sessions_close_users(hub_sessions(us->hub), is_deleted, us->deleted, CLOSE_FORBIDDEN,
                                    "account_deleted", "this account was deleted");
    for (size_t i = 0; i < n; i++)
        metrics_deleted_user_refused();
}

static void on_loaded(void *arg, int status, PGresult *res, const char *errmsg)
{
    userstate_t *us = arg;
    dict_t *set = NULL;

    us->loading = false;
    if (us->closed) {
        if (!us->timer_closed)
            return; /* on_timer_closed frees it */
        dict_free(us->since);
        dict_free(us->deleted);
        free(us);
        return;
    }
    if (status == PG_OK && (set = dict_new()) != NULL) {
        for (int i = 0; i < PQntuples(res); i++)
            dict_set(set, PQgetvalue(res, i, 0), MARK_DELETED);
        dict_each(us->since, replay_change, set);
        dict_free(us->deleted);
        us->deleted = set;
        log_info("deleted users loaded", json_pack("{s:i}", "count", (int)dict_size(set)));
        close_deleted(us);
    } else {
        if (!us->failing)
            log_warn("deleted users not loaded (retrying)",
                     json_pack("{s:s}", "error", errmsg ? errmsg : "?"));
        us->again = true;
    }
    us->failing = status != PG_OK;
    dict_free(us->since);
    us->since = NULL;
    if (us->again) {
        us->again = false;
        uv_timer_start(&us->retry, on_retry, status == PG_OK ? 0 : USERSTATE_RETRY_MS, 0);
    }
}

static void load_start(userstate_t *us)
{
    if (us->closed)
        return;
    if (us->loading) {
        us->again = true; /* what it reads may predate what made us ask */
        return;
    }
    if (!(us->since = dict_new()) ||
        pg_pool_query(hub_pool(us->hub), "SELECT * FROM rn_users_deleted()", 0, NULL, on_loaded,
                      us) != 0) {
        dict_free(us->since);
        us->since = NULL;
        uv_timer_start(&us->retry, on_retry, USERSTATE_RETRY_MS, 0);
        return;
    }
    us->loading = true;
}

userstate_t *userstate_new(hub_t *hub)
{
    userstate_t *us = calloc(1, sizeof *us);
    if (!us || !(us->deleted = dict_new())) {
        free(us);
        return NULL;
    }
    us->hub = hub;
    uv_timer_init(hub_loop(hub), &us->retry);
    us->retry.data = us;
    load_start(us);
    return us;
}

static void on_timer_closed(uv_handle_t *h)
{
    userstate_t *us = h->data;
    us->timer_closed = true;
    if (us->loading)
        return; /* on_loaded frees it */
    dict_free(us->since);
    dict_free(us->deleted);
    free(us);
}

void userstate_close(userstate_t *us)
{
    if (!us)
        return;
    us->closed = true;
    uv_close((uv_handle_t *)&us->retry, on_timer_closed);
}

bool userstate_is_deleted(const userstate_t *us, const char *uid)
{
    return us && uid && dict_get(us->deleted, uid) != NULL;
}

void userstate_reload(userstate_t *us)
{
    if (us)
        load_start(us);
}

/* Records a change in the set (and in the log of a load in flight); closes the user's sockets. */
static void apply(userstate_t *us, const char *uid, bool deleted)
{
    if (deleted)
        dict_set(us->deleted, uid, MARK_DELETED);
    else
        dict_delete(us->deleted, uid);
    if (us->since)
        dict_set(us->since, uid, deleted ? MARK_DELETED : MARK_RESTORED);
    if (deleted)
        close_deleted(us);
}

void userstate_announce(userstate_t *us, const char *uid, bool deleted)
{
    if (!us || us->closed)
        return;
    apply(us, uid, deleted);
    json_t *msg = json_pack("{s:s, s:b}", "uid", uid, "deleted", deleted);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    /* Redis down: the bus hands it to its PostgreSQL fallback (pg_bus.h) when that is on,
     * and the others load the set again when their bus comes back anyway. */
    if (text && bus_publish(hub_bus(us->hub), USERSTATE_CHANNEL, text, strlen(text)) != 0)
        log_info("user deletion not announced on Redis (bus down): fallback and reload",
                 json_pack("{s:s}", "uid", uid));
    free(text);
    json_decref(msg);
}

void userstate_on_bus_message(userstate_t *us, const char *payload, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(payload, len, 0, &jerr);
    const char *uid = json_string_value(json_object_get(msg, "uid"));
    json_t *deleted = json_object_get(msg, "deleted");
    if (us && !us->closed && uid && json_is_boolean(deleted))
        apply(us, uid, json_is_true(deleted));
    json_decref(msg);
}
