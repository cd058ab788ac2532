/*
 * cabinet_op: what cabinet.c, cabinet_timers.c and cabinet_msg.c share.
 * Internal to those three files.
 *
 * An entry is one arcade held by this process: while a cabinet session of
 * that arcade is connected here, and during the grace window after the last
 * one closed. It counts its cabinet sessions, keeps the epoch this process
 * got from rn_cabinet_online, runs the called reservation's deadline timer
 * and the grace timer, and queues the arcade's statements.
 *
 * Everything this process asks PostgreSQL about an arcade on behalf of its
 * cabinet (online, offline, expire, the cabinet's own messages) is an op
 * queued on the arcade's entry and run in order, one statement in flight per
 * arcade. So replies come in the order the cabinet sent its requests, and an
 * unlock never races a game_over of the same cabinet. An op holds its entry
 * (which waits for it) and the cabinet only through a session_ref_t.
 */
#ifndef RN_CABINET_OP_H
#define RN_CABINET_OP_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "envelope.h"
#include "hub.h"
#include "session.h"

#define CAB_OP_PARAMS 5
#define CAB_DB_RETRY_MS 1000 /* the database was unreachable: try again after */

typedef struct cab_op cab_op_t;

typedef struct cab_entry {
    cabinets_t *c;
    hub_t *hub;
    long arcade_id;
    unsigned sessions; /* cabinet sessions of this arcade in this process */
    int64_t epoch;     /* from our newest rn_cabinet_online; 0: none yet */
    bool grace;        /* grace_timer runs */
    bool closing;      /* its handles are closing */
    int open_handles;
    uv_timer_t deadline_timer, grace_timer;
    int64_t called_id;     /* the called reservation deadline_timer is for; 0: none */
    int expire_retries;    /* for called_id */
    bool expire_pending;   /* an rn_expire is queued or in flight */
    cab_op_t *head, *tail; /* ops; the head is in flight when inflight */
    unsigned nops;
    bool inflight;
} cab_entry_t;

/* Frees e once nothing holds it: no session, no grace window, no op. */
void cab_entry_release(cab_entry_t *e);

/*
 * Called once the op's statement completed. status is pg_pool's (PG_OK,
 * PG_EQUERY, PG_EUNAVAILABLE); res is borrowed for the call (NULL unless
 * PG_OK or PG_EQUERY). Returns 1 after setting the op's next statement
 * (cab_op_set) to run it at once, still at the head of the arcade's queue;
 * 0 when the op is done (it is then freed). With PG_EUNAVAILABLE it must
 * return 0.
 */
typedef int (*cab_op_cb)(hub_t *hub, cab_op_t *op, int status, PGresult *res);

struct cab_op {
    cab_op_t *next;
    cab_entry_t *entry; /* set by cabinet_submit */
    long arcade_id;
    cab_op_cb done;
    session_ref_t *ref; /* the cabinet to answer, or NULL */
    bool has_id;
    int64_t id;
    const char *sql; /* static text */
    int nparams;
    char *params[CAB_OP_PARAMS]; /* owned */
    int64_t reservation_id;      /* per-kind state */
    int64_t epoch;
    char code[8]; /* unlock: what was typed, until compared */
    bool matched; /* unlock: it matched the called reservation's code */
};

/* A new op for s's arcade (a ref taken when s is not NULL). NULL on allocation failure. */
cab_op_t *cab_op_new(session_t *s, long arcade_id, bool has_id, int64_t id, cab_op_cb done);
/* Sets the statement (static) and its parameters (copied; NULL is SQL NULL). 0, or -1. */
int cab_op_set(cab_op_t *op, const char *sql, int nparams, const char *const *params);
void cab_op_free(cab_op_t *op);
/* The session an op answers, or NULL (none, or it closed). */
session_t *cab_op_session(const cab_op_t *op);

/*
 * Queues op on its arcade's entry, which must be held here. Takes op in
 * every case; when it cannot be queued (too many, hub stopping) its cabinet
 * gets `busy` or `unavailable`.
 */
void cabinet_submit(hub_t *hub, cab_op_t *op);

/*
 * Decodes a jsonb result of the db.h convention ({status, body, events,
 * arcade?}), publishes its events and snapshot (db_publish) and returns it
 * (new reference); or NULL when the statement failed or the answer is
 * malformed, after an error reply to the op's cabinet, if any.
 */
json_t *cab_op_result(hub_t *hub, cab_op_t *op, int status, PGresult *res);
/* Answers the op's cabinet from a result: ok + body, or the body's error. */
void cab_op_reply(cab_op_t *op, const json_t *result);

/* cabinet_timers.c: the deadline and the grace window, online and offline. */
void cab_deadline_arm(cab_entry_t *e, const json_t *snapshot);
void cab_grace_start(cab_entry_t *e);
void cab_grace_stop(cab_entry_t *e);
/* rn_cabinet_online for s; a failure closes s (it must reconnect). 0, or -1. */
int cab_online(cab_entry_t *e, session_t *s);

/* cabinet_msg.c: the cabinet's messages. */
void cabinet_msg_unlock(session_t *s, const envelope_t *env);
void cabinet_msg_game_started(session_t *s, const envelope_t *env);
void cabinet_msg_game_over(session_t *s, const envelope_t *env);
void cabinet_msg_status(session_t *s, const envelope_t *env);

#endif
