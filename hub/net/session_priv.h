/*
 * session_priv: what session.c (registry, authentication, inbound, lifecycle)
 * and session_out.c (the two outbound lanes and the writes) share. Not for
 * any other module: session.h is the public surface.
 */
#ifndef RN_SESSION_PRIV_H
#define RN_SESSION_PRIV_H

#include <stdint.h>

#include "clientip.h"
#include "session.h"

/*
 * The write queue: a FIFO of msgbuf references. Short queues live in the
 * session itself; one that outgrows OUTQ_INLINE moves to a heap ring (a power
 * of two), freed again when the queue empties. No allocation per message.
 * A snapshot queued behind others on a socket that keeps up is marked in the
 * ring (the pointer's low bit) and counted apart: it does not count towards
 * send_queue_max (session_out.c).
 */
#define OUTQ_INLINE 4
typedef struct outq {
    msgbuf_t *inline_ring[OUTQ_INLINE];
    msgbuf_t **heap; /* NULL while the queue fits inline */
    unsigned head, count, cap;
    unsigned npublic; /* snapshots among count */
} outq_t;

/* A conflated public view waiting to be written: the newest per key. */
typedef struct public_slot {
    long key;
    msgbuf_t *buf;
} public_slot_t;

/* Private events that arrived during a resume, in order (rare: a list). */
typedef struct held_event {
    struct held_event *next;
    msgbuf_t *buf;
} held_event_t;

struct session_ref {
    session_t *session; /* NULL once the session closed */
    unsigned refs;
};

/* A session's place in one of the registry's FIFOs (session.c), and a FIFO. */
typedef struct session_link {
    session_t *prev, *next;
} session_link_t;
typedef struct session_fifo {
    session_t *head, *tail;
} session_fifo_t;

/* lws allocates this (zeroed) as the per-connection user memory. */
struct session {
    struct lws *wsi;
    hub_t *hub;
    session_t *prev, *next; /* registry list */
    session_link_t wait;    /* unauthenticated FIFO, by auth_deadline_ms */
    session_link_t live;    /* keepalive FIFO, by last_rx_ms (session.c) */
    uint64_t last_rx_ms;    /* the peer's last frame (a pong counts) */
    bool pinged;            /* a ping went since last_rx_ms */
    uint64_t auth_deadline_ms;
    conn_kind_t kind;
    bool waiting, authenticating; /* authenticating: an API key lookup in flight */
    bool closing, close_sent;
    bool peer_closed;   /* the peer's close frame came: nothing more is written */
    bool want_writable; /* a WRITEABLE turn was asked for and has not come yet */
    int fd;             /* the socket, written directly (session_out.c); -1: through lws (TLS) */
    bool resuming;
    unsigned short close_code;
    const char *close_reason;
    bool flush_queued;        /* on the registry's flush list (session_out.c) */
    unsigned last_write_turn; /* loop turn of the last lws_write (sessions_t.turn) */
    session_t *flush_prev, *flush_next;
    char *uid;
    long arcade_id;
    session_ref_t *ref;      /* shared with async work; see session_ref() */
    struct member *members;  /* channels joined (fanout.c) */
    outq_t out;              /* replies, private events, cabinet commands; snapshots too
                                while the socket keeps up (session_send_public) */
    public_slot_t pub0;      /* the public lane: the oldest waiting view ... */
    public_slot_t *pub_more; /* ... and the others, while two or more wait */
    unsigned char npub;
    unsigned char recent_next;
    int64_t *recent;                     /* private lane: ids sent lately, a ring */
    held_event_t *held_head, *held_tail; /* private events that arrived during a resume */
    unsigned held_count;
    char *rx; /* a message being reassembled from fragments */
    size_t rx_len;
    uint64_t rate_ts_ms;
    double rate_tokens;
    char client_ip[CLIENTIP_MAX + 4]; /* the per-IP limits' key (clientip_limit_key) */
};

/*
 * Message types a handler can be keyed by: room for rn_msg_type_t to grow
 * (sessions_set_hooks refuses a type beyond it).
 */
#define SESSION_MSG_TYPES 64
_Static_assert(RN_MSG_STATUS < SESSION_MSG_TYPES, "SESSION_MSG_TYPES: rn_msg_type_t outgrew it");

struct sessions {
    hub_t *hub;
    session_t *head;
    session_fifo_t waitq; /* unauthenticated sessions, oldest first */
    size_t count;
    unsigned turn;         /* loop turns, counted by turn_check; starts at 1 */
    session_t *flush_head; /* sessions to write to at the end of this turn */
    int open_handles;
    uv_timer_t auth_timer;
    session_fifo_t liveq; /* every session, by last_rx_ms (keepalive) */
    uv_timer_t keepalive_timer;
    uv_check_t turn_check; /* ends a turn: counts it, then writes the flush list */
    uv_idle_t flush_idle;  /* active while the flush list is not empty: the loop does not block */
    session_hooks_t hooks; /* installed by hub.c (sessions_set_hooks) */
    const session_handler_t *by_type[SESSION_MSG_TYPES]; /* hooks.handlers, keyed by type */
};

/* session_out.c: the end of a loop turn (after the poll phase): writes the flush list. */
void session_out_turn(sessions_t *reg);
/* session_out.c: a WRITEABLE turn (the lws callback's return value). */
int session_out_writeable(session_t *s);
/* session_out.c: drops everything waiting to be written (on close). */
void session_out_clear(session_t *s);
/* session_out.c: a WebSocket ping, if nothing is ahead of it; false: not now. */
bool session_out_ping(session_t *s);
/* session_out.c: closes s now, no close frame (s is gone on return); never from an lws callback. */
void session_out_drop(session_t *s);

/* session.c: leaves the unauthenticated FIFO (on close). */
void session_wait_remove(session_t *s);

#endif
