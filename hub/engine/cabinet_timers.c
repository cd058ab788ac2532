/*
 * cabinet_timers: the two clocks of an arcade held here (cabinet_op.h).
 *
 * Deadline: armed from each newer snapshot's called.deadline_ms (wall
 * clock); on fire rn_expire, which only expires a reservation still called
 * whose deadline passed by the database's clock, then calls the next one. A
 * second process doing the same changes nothing.
 *
 * Grace: the last cabinet socket of the arcade closed. A cabinet back within
 * offline_grace_ms changes nothing anyone sees; after it, rn_cabinet_offline
 * with the epoch of our rn_cabinet_online, which is a no-op when the cabinet
 * came back through another process meanwhile (it bumped the epoch).
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "cabinet_op.h"
#include "log.h"
#include "metrics.h"

#define DEADLINE_SLACK_MS 50 /* fire just after: SQL expires when deadline <= now() */
#define EXPIRE_RETRY_MS 250  /* the deadline passed here, not yet for SQL */
#define EXPIRE_RETRIES 20

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- deadline: expire a no-show -------------------------------------- */

static void on_deadline(uv_timer_t *t);

static void deadline_retry(cabinet_entry_t *e, uint64_t ms)
{
    if (!e->closing && e->called_id)
        uv_timer_start(&e->deadline_timer, on_deadline, ms, 0);
}

static int on_expired(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    cabinet_entry_t *e = op->entry;
    e->expire_pending = false;
    json_t *result = cabinet_op_result(hub, op, status, res); /* its snapshot re-arms us */
    json_t *body = json_object_get(result, "body");
    json_int_t retry_in_ms = json_integer_value(json_object_get(body, "retry_in_ms"));
    if (json_is_true(json_object_get(body, "changed"))) {
        metrics_cabinet(CAB_EV_NO_SHOW);
        log_info("no-show expired", json_pack("{s:i, s:I}", "arcade_id", (int)e->arcade_id,
                                              "reservation_id", (json_int_t)op->reservation_id));
    } else if (e->called_id == op->reservation_id && status == PG_EUNAVAILABLE) {
        deadline_retry(e, CAB_DB_RETRY_MS);
    } else if (e->called_id == op->reservation_id && e->expire_retries++ < EXPIRE_RETRIES) {
        /* not due yet by the database's clock, or a snapshot is late */
        deadline_retry(e, retry_in_ms > 0 ? (uint64_t)retry_in_ms + DEADLINE_SLACK_MS
                                          : EXPIRE_RETRY_MS);
    }
    json_decref(result);
    return 0;
}

static void on_deadline(uv_timer_t *t)
{
    cabinet_entry_t *e = t->data;
    const hub_config_t *cfg = hub_config(e->hub);
    if (!e->called_id || e->expire_pending)
        return;
    char arcade[24], rid[24], secs[24];
    snprintf(arcade, sizeof arcade, "%ld", e->arcade_id);
    snprintf(rid, sizeof rid, "%" PRId64, e->called_id);
    snprintf(secs, sizeof secs, "%d", cfg->call_deadline_s);
    const char *params[] = {arcade, rid, secs, cfg->refund_no_show ? "true" : "false"};
    cabinet_op_t *op = cabinet_op_new(NULL, e->arcade_id, false, 0, on_expired);
    if (!op || cabinet_op_set(op, "SELECT rn_expire($1::bigint, $2::bigint, $3::int, $4::boolean)",
                              4, params) != 0) {
        cabinet_op_free(op);
        deadline_retry(e, CAB_DB_RETRY_MS);
        return;
    }
    op->reservation_id = e->called_id;
    e->expire_pending = true;
    cabinet_submit(e->hub, op);
}

/* Arms the deadline timer for the snapshot's called reservation, or stops it. */
void cabinet_deadline_arm(cabinet_entry_t *e, const json_t *snapshot)
{
    const json_t *called = json_object_get(snapshot, "called");
    json_int_t rid = json_integer_value(json_object_get(called, "reservation_id"));
    const json_t *deadline = json_object_get(called, "deadline_ms");
    if (!json_is_object(called) || rid <= 0 || !json_is_number(deadline)) {
        e->called_id = 0;
        uv_timer_stop(&e->deadline_timer);
        return;
    }
    if (rid != e->called_id)
        e->expire_retries = 0;
    e->called_id = rid;
    int64_t delay = (int64_t)json_number_value(deadline) - wall_ms() + DEADLINE_SLACK_MS;
    uv_timer_start(&e->deadline_timer, on_deadline, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* ---- online ------------------------------------------------------------ */

static int on_online(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    cabinet_entry_t *e = op->entry;
    session_t *s = cabinet_op_session(op);
    json_t *result = cabinet_op_result(hub, op, status, res);
    json_t *body = json_object_get(result, "body");
    json_int_t code = json_integer_value(json_object_get(result, "status"));
    json_int_t epoch = json_integer_value(json_object_get(body, "epoch"));
    if (result && code / 100 == 2 && epoch > 0) {
        if (epoch > e->epoch)
            e->epoch = epoch;
        metrics_cabinet(CAB_EV_ONLINE);
        log_info("cabinet online",
                 json_pack("{s:i, s:I}", "arcade_id", (int)e->arcade_id, "epoch", epoch));
    } else if (s) {
        /* Not registered: the cabinet must reconnect rather than look connected. */
        if (result)
            session_send_error(s, false, 0, "unavailable", "cannot register the cabinet now");
        session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "unavailable");
    }
    json_decref(result);
    return 0;
}

int cabinet_entry_online(cabinet_entry_t *e, session_t *s)
{
    char arcade[24], secs[24];
    snprintf(arcade, sizeof arcade, "%ld", e->arcade_id);
    snprintf(secs, sizeof secs, "%d", hub_config(e->hub)->call_deadline_s);
    const char *params[] = {arcade, secs};
    cabinet_op_t *op = cabinet_op_new(s, e->arcade_id, false, 0, on_online);
    if (!op ||
        cabinet_op_set(op, "SELECT rn_cabinet_online($1::bigint, $2::int)", 2, params) != 0) {
        cabinet_op_free(op);
        return -1;
    }
    cabinet_submit(e->hub, op);
    return 0;
}

/* ---- grace window, offline -------------------------------------------- */

static void on_grace_over(uv_timer_t *t);

static int on_offline(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    cabinet_entry_t *e = op->entry;
    json_t *result = cabinet_op_result(hub, op, status, res);
    if (result) {
        if (json_is_true(json_object_get(json_object_get(result, "body"), "changed")))
            metrics_cabinet(CAB_EV_OFFLINE);
        log_info("cabinet offline",
                 json_pack("{s:i, s:I, s:O}", "arcade_id", (int)e->arcade_id, "epoch",
                           (json_int_t)op->epoch, "body", json_object_get(result, "body")));
    } else if (status == PG_EUNAVAILABLE && e->sessions == 0 && !e->grace) {
        /* try again: the arcade must not look connected forever */
        e->grace = true;
        uv_timer_start(&e->grace_timer, on_grace_over, CAB_DB_RETRY_MS, 0);
    }
    json_decref(result);
    return 0;
}

static void on_grace_over(uv_timer_t *t)
{
    cabinet_entry_t *e = t->data;
    if (e->head) { /* an rn_cabinet_online may still be queued: wait for its epoch */
        uv_timer_start(&e->grace_timer, on_grace_over, 100, 0);
        return;
    }
    e->grace = false;
    if (e->sessions == 0 && e->epoch > 0) {
        char arcade[24], epoch[24];
        snprintf(arcade, sizeof arcade, "%ld", e->arcade_id);
        snprintf(epoch, sizeof epoch, "%" PRId64, e->epoch);
        const char *params[] = {arcade, epoch};
        cabinet_op_t *op = cabinet_op_new(NULL, e->arcade_id, false, 0, on_offline);
        if (op && cabinet_op_set(op, "SELECT rn_cabinet_offline($1::bigint, $2::bigint)", 2,
                                 params) == 0) {
            op->epoch = e->epoch;
            cabinet_submit(e->hub, op);
        } else {
            cabinet_op_free(op);
        }
    }
    cabinet_entry_release(e);
}

void cabinet_grace_start(cabinet_entry_t *e)
{
    e->grace = true;
    uv_timer_start(&e->grace_timer, on_grace_over, (uint64_t)hub_config(e->hub)->offline_grace_ms,
                   0);
}

void cabinet_grace_stop(cabinet_entry_t *e)
{
    e->grace = false;
    uv_timer_stop(&e->grace_timer);
}
