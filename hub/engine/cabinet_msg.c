/*
 * cabinet_msg: what a cabinet says (unlock, game_started, game_over, status),
 * checked here and turned into its arcade's SQL functions, and the replies
 * (see cabinet_op.h). A cabinet acts on its own arcade only: the arcade id
 * always comes from its session (its API key), never from the message.
 */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cabinet.h"
#include "cabinet_op.h"
#include "db_call.h"
#include "log.h"
#include "metrics.h"

#define CODE_LEN 6
#define SCORES_MAX 2

/* ---- ops --------------------------------------------------------------- */

cabinet_op_t *cabinet_op_new(session_t *s, long arcade_id, bool has_id, int64_t id,
                             cabinet_op_cb done)
{
    cabinet_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    if (s && !(op->ref = session_ref(s))) {
        free(op);
        return NULL;
    }
    op->arcade_id = arcade_id;
    op->has_id = has_id;
    op->id = id;
    op->done = done;
    return op;
}

int cabinet_op_set(cabinet_op_t *op, const char *sql, int nparams, const char *const *params)
{
    for (int i = 0; i < CABINET_OP_PARAMS; i++) {
        free(op->params[i]);
        op->params[i] = NULL;
    }
    op->sql = sql;
    op->nparams = nparams;
    for (int i = 0; i < nparams && i < CABINET_OP_PARAMS; i++)
        if (params[i] && !(op->params[i] = strdup(params[i])))
            return -1;
    return nparams <= CABINET_OP_PARAMS ? 0 : -1;
}

void cabinet_op_free(cabinet_op_t *op)
{
    if (!op)
        return;
    for (int i = 0; i < CABINET_OP_PARAMS; i++)
        free(op->params[i]);
    OPENSSL_cleanse(op->code, sizeof op->code);
    session_ref_release(op->ref);
    free(op);
}

session_t *cabinet_op_session(const cabinet_op_t *op)
{
    return op->ref ? session_ref_get(op->ref) : NULL;
}

json_t *cabinet_op_result(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    json_t *result = NULL;
    if (status == PG_OK && PQntuples(res) == 1 && PQnfields(res) >= 1 && !PQgetisnull(res, 0, 0))
        result = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, NULL);
    json_int_t code = json_integer_value(json_object_get(result, "status"));
    if (json_is_object(result) && code >= 200 && code <= 599) {
        db_publish(hub, result);
        return result;
    }
    if (status == PG_OK)
        log_error("cabinet statement: malformed answer", json_pack("{s:s}", "sql", op->sql));
    json_decref(result);
    session_t *s = cabinet_op_session(op);
    if (s && status == PG_EUNAVAILABLE)
        session_send_error(s, op->has_id, op->id, "unavailable", "database unavailable; retry");
    else if (s)
        session_send_error(s, op->has_id, op->id, "internal", "the request could not be completed");
    return NULL;
}

void cabinet_op_reply(cabinet_op_t *op, const json_t *result)
{
    session_t *s = cabinet_op_session(op);
    if (!s)
        return;
    json_int_t code = json_integer_value(json_object_get(result, "status"));
    json_t *body = json_object_get(result, "body");
    json_t *msg;
    if (code / 100 == 2) {
        msg = envelope_ok(op->has_id, op->id);
        if (json_is_object(body))
            json_object_update_missing(msg, body);
        json_object_del(msg, "ok");
    } else {
        json_t *err = json_object_get(body, "error");
        const char *ecode = json_string_value(json_object_get(err, "code"));
        msg = envelope_error(op->has_id, op->id,
                             ecode         ? ecode
                             : code == 404 ? "not_found"
                                           : "conflict",
                             json_string_value(json_object_get(err, "message")));
        if (json_is_object(err))
            json_object_update_missing(msg, err);
    }
    session_send_json(s, msg);
}

/* Answers from the result: every message but unlock. */
static int on_answer(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    json_t *result = cabinet_op_result(hub, op, status, res);
    if (result)
        cabinet_op_reply(op, result);
    json_decref(result);
    return 0;
}

/* game_over: an answer, and a count when it changed something (not a repeat). */
static int on_game_over(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    json_t *result = cabinet_op_result(hub, op, status, res);
    if (json_object_get(result, "arcade"))
        metrics_cabinet(CAB_EV_GAME_OVER);
    if (result)
        cabinet_op_reply(op, result);
    json_decref(result);
    return 0;
}

/* Queues sql with params for s's arcade; done replies. */
static void submit(session_t *s, const envelope_t *env, cabinet_op_cb done, const char *sql,
                   int nparams, const char *const *params, const char *code)
{
    hub_t *hub = session_hub(s);
    cabinet_op_t *op = cabinet_op_new(s, session_arcade_id(s), env->has_id, env->id, done);
    if (!op || cabinet_op_set(op, sql, nparams, params) != 0) {
        cabinet_op_free(op);
        session_send_error(s, env->has_id, env->id, "unavailable", "out of memory");
        return;
    }
    if (code)
        memcpy(op->code, code, CODE_LEN + 1);
    cabinet_submit(hub, op);
}

/* A positive integer field, or 0 (after a bad_request reply). */
static json_int_t id_field(session_t *s, const envelope_t *env, const char *name)
{
    json_t *v = json_object_get(env->body, name);
    if (json_is_integer(v) && json_integer_value(v) > 0)
        return json_integer_value(v);
    char why[96];
    snprintf(why, sizeof why, "%s must be a positive integer", name);
    session_send_error(s, env->has_id, env->id, "bad_request", why);
    return 0;
}

/* ---- unlock ------------------------------------------------------------ */

static bool six_digits(const char *code)
{
    for (int i = 0; i < CODE_LEN; i++)
        if (code[i] < '0' || code[i] > '9')
            return false;
    return code[CODE_LEN] == '\0';
}

static int on_unlock_result(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    json_t *result = cabinet_op_result(hub, op, status, res);
    json_t *body = json_object_get(result, "body");
    session_t *s = cabinet_op_session(op);
    json_int_t code = json_integer_value(json_object_get(result, "status"));
    json_int_t locked = json_integer_value(json_object_get(body, "locked_for_s"));
    if (result && code / 100 == 2 && !json_is_true(json_object_get(body, "ok"))) {
        /* wrong (the fifth says how long the lock lasts), or locked meanwhile */
        bool wrong = !op->matched;
        json_t *err =
            wrong ? envelope_error(op->has_id, op->id, "bad_code", "wrong unlock code")
                  : envelope_error(op->has_id, op->id, "unlock_locked", "too many wrong codes");
        metrics_cabinet(wrong ? CAB_EV_UNLOCK_BAD : CAB_EV_UNLOCK_LOCKED);
        if (wrong)
            json_object_set_new(
                err, "attempts_left",
                json_integer(json_integer_value(json_object_get(body, "attempts_left"))));
        if (locked > 0)
            json_object_set_new(err, "retry_after_s", json_integer(locked));
        if (s)
            session_send_json(s, err);
        else
            json_decref(err);
    } else if (result) {
        cabinet_op_reply(op, result);
        if (code / 100 == 2) {
            metrics_cabinet(CAB_EV_UNLOCK_OK);
            log_info("unlocked", json_pack("{s:i, s:I}", "arcade_id", (int)op->arcade_id,
                                           "reservation_id", (json_int_t)op->reservation_id));
        }
    }
    json_decref(result);
    return 0;
}

/*
 * The called reservation's code, compared here in constant time; the
 * outcome (and only it) goes back to SQL, which counts the failures, locks
 * after five in five minutes and makes a right code single use.
 */
static int on_called_code(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    (void)hub;
    session_t *s = cabinet_op_session(op);
    if (status != PG_OK) {
        if (s)
            session_send_error(s, op->has_id, op->id,
                               status == PG_EUNAVAILABLE ? "unavailable" : "internal",
                               "cannot check the code now");
        return 0;
    }
    long locked = PQntuples(res) > 0 && !PQgetisnull(res, 0, 2) ? atol(PQgetvalue(res, 0, 2)) : 0;
    if (locked > 0) {
        metrics_cabinet(CAB_EV_UNLOCK_LOCKED);
        if (s) {
            json_t *err =
                envelope_error(op->has_id, op->id, "unlock_locked", "too many wrong codes");
            json_object_set_new(err, "retry_after_s", json_integer(locked));
            session_send_json(s, err);
        }
        return 0;
    }
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        if (s)
            session_send_error(s, op->has_id, op->id, "nothing_called", "no reservation is called");
        return 0;
    }
    const char *want = PQgetvalue(res, 0, 1);
    bool ok = PQgetlength(res, 0, 1) == CODE_LEN && CRYPTO_memcmp(op->code, want, CODE_LEN) == 0;
    op->matched = ok;
    OPENSSL_cleanse(op->code, sizeof op->code);
    op->reservation_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    char arcade[24], rid[24];
    snprintf(arcade, sizeof arcade, "%ld", op->arcade_id);
    snprintf(rid, sizeof rid, "%" PRId64, op->reservation_id);
    const char *params[] = {arcade, rid, ok ? "true" : "false"};
    if (cabinet_op_set(op, "SELECT rn_unlock_result($1::bigint, $2::bigint, $3::boolean)", 3,
                       params) != 0) {
        if (s)
            session_send_error(s, op->has_id, op->id, "unavailable", "out of memory");
        return 0;
    }
    op->done = on_unlock_result;
    return 1;
}

void cabinet_msg_unlock(session_t *s, const envelope_t *env)
{
    const char *code = json_string_value(json_object_get(env->body, "code"));
    if (!code || !six_digits(code)) { /* never reaches the database, never counts */
        session_send_error(s, env->has_id, env->id, "bad_code", "the code is 6 digits");
        return;
    }
    char arcade[24];
    snprintf(arcade, sizeof arcade, "%ld", session_arcade_id(s));
    const char *params[] = {arcade};
    submit(s, env, on_called_code,
           "SELECT reservation_id, unlock_code, locked_for_s FROM rn_called_code($1::bigint)", 1,
           params, code);
}

/* ---- game_started, game_over, status --------------------------------- */

void cabinet_msg_game_started(session_t *s, const envelope_t *env)
{
    json_int_t rid = id_field(s, env, "reservation_id");
    if (!rid)
        return;
    char arcade[24], rtext[24];
    snprintf(arcade, sizeof arcade, "%ld", session_arcade_id(s));
    snprintf(rtext, sizeof rtext, "%" JSON_INTEGER_FORMAT, rid);
    const char *params[] = {arcade, rtext};
    submit(s, env, on_answer, "SELECT rn_game_started($1::bigint, $2::bigint)", 2, params, NULL);
}

/* 1..2 scores, each an integer (player order) or {"pseudo": "...", "score": integer}. */
static bool scores_valid(const json_t *scores)
{
    size_t i, n = json_array_size(scores);
    json_t *v;
    if (!json_is_array(scores) || n < 1 || n > SCORES_MAX)
        return false;
    json_array_foreach (scores, i, v) {
        if (json_is_object(v)) {
            if (!json_is_integer(json_object_get(v, "score")) ||
                !json_is_string(json_object_get(v, "pseudo")))
                return false;
        } else if (!json_is_integer(v)) {
            return false;
        }
    }
    return true;
}

void cabinet_msg_game_over(session_t *s, const envelope_t *env)
{
    json_t *scores = json_object_get(env->body, "scores");
    json_int_t rid = id_field(s, env, "reservation_id");
    if (!rid)
        return;
    if (!scores_valid(scores)) {
        session_send_error(s, env->has_id, env->id, "bad_request",
                           "scores must be 1 or 2 integer scores, in player order");
        return;
    }
    char arcade[24], rtext[24], secs[24];
    char *text = json_dumps(scores, JSON_COMPACT);
    snprintf(arcade, sizeof arcade, "%ld", session_arcade_id(s));
    snprintf(rtext, sizeof rtext, "%" JSON_INTEGER_FORMAT, rid);
    snprintf(secs, sizeof secs, "%d", hub_config(session_hub(s))->call_deadline_s);
    const char *params[] = {arcade, rtext, text, secs};
    if (text)
        submit(s, env, on_game_over,
               "SELECT rn_game_over($1::bigint, $2::bigint, $3::jsonb, $4::int)", 4, params, NULL);
    else
        session_send_error(s, env->has_id, env->id, "unavailable", "out of memory");
    free(text);
}

/* status: an answer; a reconcile that ended a game the cabinet no longer knew is counted. */
static int on_report(hub_t *hub, cabinet_op_t *op, int status, PGresult *res)
{
    json_t *result = cabinet_op_result(hub, op, status, res);
    if (json_object_get(json_object_get(result, "body"), "ended_reservation_id"))
        metrics_cabinet(CAB_EV_RECONCILED);
    if (result)
        cabinet_op_reply(op, result);
    json_decref(result);
    return 0;
}

/*
 * status {state: idle | playing | maintenance, reservation_id?}. idle and
 * playing (with the reservation it plays) are the cabinet's report of what
 * it is doing, sent at connect and whenever it changes: rn_cabinet_report
 * reconciles (a playing reservation it does not know ends as timed_out).
 * maintenance: rn_cabinet_status.
 */
void cabinet_msg_status(session_t *s, const envelope_t *env)
{
    const char *state = json_string_value(json_object_get(env->body, "state"));
    bool report = state && (strcmp(state, "idle") == 0 || strcmp(state, "playing") == 0);
    if (!report && (!state || strcmp(state, "maintenance") != 0)) {
        session_send_error(s, env->has_id, env->id, "bad_request",
                           "state must be \"idle\", \"playing\" or \"maintenance\"");
        return;
    }
    const hub_config_t *cfg = hub_config(session_hub(s));
    char arcade[24], secs[24], rid[24];
    snprintf(arcade, sizeof arcade, "%ld", session_arcade_id(s));
    snprintf(secs, sizeof secs, "%d", cfg->call_deadline_s);
    if (!report) {
        const char *params[] = {arcade, state, secs};
        submit(s, env, on_answer, "SELECT rn_cabinet_status($1::bigint, $2::text, $3::int)", 3,
               params, NULL);
        return;
    }
    json_int_t id = 0;
    if (strcmp(state, "playing") == 0 && !(id = id_field(s, env, "reservation_id")))
        return;
    snprintf(rid, sizeof rid, "%" JSON_INTEGER_FORMAT, id);
    const char *params[] = {arcade, state, id ? rid : NULL,
                            cfg->refund_timed_out ? "true" : "false", secs};
    submit(s, env, on_report,
           "SELECT rn_cabinet_report($1::bigint, $2::text, $3::bigint, $4::boolean, $5::int)", 5,
           params, NULL);
}
