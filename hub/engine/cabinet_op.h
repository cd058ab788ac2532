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

#define CABINET_OP_PARAMS 5
#define CAB_DB_RETRY_MS 1000 /* the database was unreachable: try again after */

typedef struct cabinet_op cabinet_op_t;

typedef struct cabinet_entry {
    cabinets_t *c;
    hub_t *hub;
    long arcade_id;
    unsigned sessions; /* cabinet sessions of this arcade in this process */
    int64_t epoch;     /* from our newest rn_cabinet_online; 0: none yet */
    bool grace;        /* grace_timer runs */
    bool closing;      /* its handles are closing */
    int open_handles;
    uv_timer_t deadline_timer, grace_timer;
    int64_t called_id;         /* the called reservation deadline_timer is for; 0: none */
    int expire_retries;        /* for called_id */
    bool expire_pending;       /* an rn_expire is queued or in flight */
    cabinet_op_t *head, *tail; /* ops; the head is in flight when inflight */
    unsigned nops;
    bool inflight;
} cabinet_entry_t;

/* Frees e once nothing holds it: no session, no grace window, no op. */
void cabinet_entry_release(cabinet_entry_t *e);

/*
 * Called once the op's statement completed. status is pg_pool's (PG_OK,
 * PG_EQUERY, PG_EUNAVAILABLE); res is borrowed for the call (NULL unless
 * PG_OK or PG_EQUERY). Returns 1 after setting the op's next statement
 * (cabinet_op_set) to run it at once, still at the head of the arcade's queue;
 * 0 when the op is done (it is then freed). With PG_EUNAVAILABLE it must
 * return 0.
 */
typedef int (*cabinet_op_cb)(hub_t *hub, cabinet_op_t *op, int status, PGresult *res);

struct cabinet_op {
    cabinet_op_t *next;
    cabinet_entry_t *entry; /* set by cabinet_submit */
    long arcade_id;
    cabinet_op_cb done;
    session_ref_t *ref; /* the cabinet to answer, or NULL */
    bool has_id;
    int64_t id;
    const char *sql; /* static text */
    int nparams;
    char *params[CABINET_OP_PARAMS]; /* owned */
    int64_t reservation_id;          /* per-kind state */
    int64_t epoch;
    char code[8]; /* unlock: what was typed, until compared */
    bool matched; /* unlock: it matched the called reservation's code */
};

/* A new op for s's arcade (a ref taken when s is not NULL). NULL on allocation failure. */
cabinet_op_t *cabinet_op_new(session_t *s, long arcade_id, bool has_id, int64_t id,
                             cabinet_op_cb done);
/* Sets the statement (static) and its parameters (copied; NULL is SQL NULL). 0, or -1. */
int cabinet_op_set(cabinet_op_t *op, const char *sql, int nparams, const char *const *params);
void cabinet_op_free(cabinet_op_t *op);
/* The session an op answers, or NULL (none, or it closed). */
session_t *cabinet_op_session(const cabinet_op_t *op);

/*
 * Queues op on its arcade's entry, which must be held here. Takes op in
 * every case; when it cannot be queued (too many, hub stopping) its cabinet
 * gets `busy` or `unavailable`.
 */
void cabinet_submit(hub_t *hub, cabinet_op_t *op);

/*
 * Decodes a jsonb result of the db_call.h convention ({status, body, events,
 * arcade?}), publishes its events and snapshot (db_publish) and returns it
 * (new reference); or NULL when the statement failed or the answer is
 * malformed, after an error reply to the op's cabinet, if any.
 */
json_t *cabinet_op_result(hub_t *hub, cabinet_op_t *op, int status, PGresult *res);
/* Answers the op's cabinet from a result: ok + body, or the body's error. */
void cabinet_op_reply(cabinet_op_t *op, const json_t *result);

/* cabinet_timers.c: the deadline and the grace window, online and offline. */
void cabinet_deadline_arm(cabinet_entry_t *e, const json_t *snapshot);
void cabinet_grace_start(cabinet_entry_t *e);
void cabinet_grace_stop(cabinet_entry_t *e);
/* rn_cabinet_online for s; a failure closes s (it must reconnect). 0, or -1. */
int cabinet_entry_online(cabinet_entry_t *e, session_t *s);

/* cabinet_msg.c: the cabinet's messages. */
void cabinet_msg_unlock(session_t *s, const envelope_t *env);
void cabinet_msg_game_started(session_t *s, const envelope_t *env);
void cabinet_msg_game_over(session_t *s, const envelope_t *env);
void cabinet_msg_status(session_t *s, const envelope_t *env);

#endif
