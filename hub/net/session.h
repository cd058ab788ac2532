/*
 * session: one WebSocket connection on /ws (subprotocol retronova.v1).
 *
 * A session authenticates first (an Authorization header at the handshake,
 * or an auth frame before the deadline), then exchanges envelope messages.
 * Outbound messages are shared msgbufs. One goes out at once when nothing is
 * ahead of it on that socket (at most one write per socket per loop turn);
 * otherwise it waits in a bounded queue, written one per turn (at the end of
 * the turn, or in a WRITEABLE turn while the socket is full), and a reader
 * that lets the queue overflow is closed with 4009 (session_out.c).
 * A session is never freed on its own call stack: session_close() asks lws
 * for a WRITEABLE turn in which the close happens.
 *
 * sessions_t is the registry of one hub: every live session (for drain and
 * stats) and the FIFO of sessions still waiting to authenticate, whose
 * deadlines are all "connect time + the same timeout", so one timer serves
 * them all.
 */
#ifndef RN_SESSION_H
#define RN_SESSION_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>

#include "envelope.h"
#include "hub.h"
#include "metrics.h"
#include "msgbuf.h"

typedef struct session session_t;

/*
 * The hooks: what the layers above net do with a session, installed by the
 * composition root (hub.c) with sessions_set_hooks before the server listens,
 * so that net never calls up. Every callback runs on the loop thread; env
 * and key are borrowed for the call.
 *
 * handlers is the message table (as Redis's command table): one row per
 * message type an authenticated session may send (auth and ping are net's
 * own). A type without a row is answered "unknown_type"; a row flagged
 * SESSION_MSG_CABINET_ONLY answers "forbidden" to any other session.
 */
typedef void (*session_msg_cb)(session_t *s, const envelope_t *env);
#define SESSION_MSG_CABINET_ONLY 1u
typedef struct session_handler {
    rn_msg_type_t type;
    session_msg_cb fn;
    unsigned flags;
} session_handler_t;

/* A cabinet-key check's answer: 0 the arcade's live key, or one of these. */
enum {
    SESSION_KEY_EUNKNOWN = -1,     /* unknown arcade, revoked or wrong key */
    SESSION_KEY_EUNAVAILABLE = -2, /* the database could not answer (errmsg says why) */
};
typedef void (*session_key_cb)(void *arg, int result, const char *errmsg);

typedef struct session_hooks {
    const session_handler_t *handlers; /* static storage; n_handlers rows */
    size_t n_handlers;
    /* Authenticated as kind: join its private channels. Nonzero: out of memory (closed). */
    int (*authenticated)(session_t *s, conn_kind_t kind);
    /* A cabinet's auth reply went out: it is online. */
    void (*cabinet_online)(session_t *s);
    /* An authenticated session of kind is gone (after this, s is not to be kept). */
    void (*closed)(session_t *s, conn_kind_t kind);
    /*
     * Checks a cabinet's API key for arcade_id. Returns 0 once started: cb
     * is then called exactly once, later. Negative: cb is never called.
     */
    int (*cabinet_key_check)(hub_t *hub, long arcade_id, const char *key, session_key_cb cb,
                             void *arg);
} session_hooks_t;

/*
 * Arcades one socket may subscribe to: queue.c refuses the next subscribe
 * ("too_many_subscriptions"), and the public lane keeps one slot per arcade.
 */
#define SESSION_SUBSCRIPTIONS_MAX 32

/* WebSocket close codes of protocol v1. */
enum {
    CLOSE_DRAINING = 4000,
    CLOSE_UNAUTHENTICATED = 4001,
    CLOSE_FORBIDDEN = 4003,
    CLOSE_RATE_LIMITED = 4008,
    CLOSE_SLOW_CONSUMER = 4009,
};

/* The lws protocol callback and its per-connection size. */
int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);
size_t session_pss_size(void);

sessions_t *sessions_new(hub_t *hub);
/*
 * Installs the hooks (copied; the handler table is borrowed for good).
 * 0, or -1 (nothing installed) when a handler's type is out of range or twice.
 */
int sessions_set_hooks(sessions_t *reg, const session_hooks_t *hooks);
/* Closes the registry's handles; frees it in the last close callback. Sessions must be gone. */
void sessions_close(sessions_t *reg);
size_t sessions_count(const sessions_t *reg);
/* Asks every session to close with code and reason. */
void sessions_close_all(sessions_t *reg, int code, const char *reason);
/*
 * Sends an error (err_code, message) to every socket not closing yet whose
 * uid pick() says yes to, and closes it with code. Returns how many.
 */
size_t sessions_close_users(sessions_t *reg, bool (*pick)(const char *uid, void *arg), void *arg,
                            int code, const char *err_code, const char *message);

/* Queues b (takes a reference of its own). Overflow closes the session with 4009. */
void session_send(session_t *s, msgbuf_t *b);
/* Encodes and queues msg (reference stolen). */
void session_send_json(session_t *s, json_t *msg);
/* Queues an error reply echoing the request id when there was one. */
void session_send_error(session_t *s, bool has_id, int64_t id, const char *code,
                        const char *message);
/* Flushes what is queued, then closes with code; reason must be a static string. */
void session_close(session_t *s, int code, const char *reason);

/*
 * The private lane: b carries an event_id. An event already sent on this
 * session is dropped (a resume and a live push may overlap); while a resume
 * is being answered, live events wait and follow the replay in order.
 */
void session_send_private(session_t *s, msgbuf_t *b);
/* A replayed event: deduplicated like a live one, never held. */
void session_send_replayed(session_t *s, msgbuf_t *b);
void session_resume_begin(session_t *s);
/* Sends what waited during the resume. */
void session_resume_end(session_t *s);

/*
 * A handle that async work (a query on behalf of a session) holds instead of
 * the session: when the session closes first, session_ref_get() returns NULL.
 */
typedef struct session_ref session_ref_t;
/* A new reference to s's handle. NULL on allocation failure. */
session_ref_t *session_ref(session_t *s);
/* The session, or NULL once it closed. */
session_t *session_ref_get(const session_ref_t *ref);
void session_ref_release(session_ref_t *ref);

/*
 * The public lane: b is the newest view of key (an arcade id). If the socket
 * is keeping up it goes out now; otherwise it replaces any older view still
 * waiting for that key, so a slow reader never builds a backlog.
 */
void session_send_public(session_t *s, long key, msgbuf_t *b);

hub_t *session_hub(const session_t *s);
/* The player's or admin's uid, or NULL. */
const char *session_uid(const session_t *s);
/* The cabinet's arcade id, or 0. */
long session_arcade_id(const session_t *s);
/* The session's channel memberships, owned by fanout.c. */
struct member;
struct member **session_members(session_t *s);

#endif
