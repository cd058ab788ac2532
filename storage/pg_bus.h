/*
 * pg_bus: the bus's second path between hub processes, through PostgreSQL
 * LISTEN/NOTIFY, for the messages Redis cannot carry (issue 12: no single
 * bus). Redis stays the normal path; bus_publish() hands a message here only
 * when it could not give it to Redis (bus_set_fallback).
 *
 * Listening: one dedicated connection per process (a pg_pool of one, so it
 * connects without blocking, resolves host names off the loop and reconnects
 * with backoff like the pool) that sends LISTEN rn_bus after every connect.
 * Publishing: the frames of one loop turn go together, from a 0 ms timer,
 * as one SELECT pg_notify('rn_bus', $1), pg_notify('rn_bus', $2), ... (up to
 * 32 per statement) on the caller's pool: one change publishes several
 * messages, and one round trip for them keeps the pool free for requests.
 *
 * A frame is "<origin> <channel>\n<payload>", origin being this process's
 * random id: a process drops its own frames (its caller delivered locally
 * already). NOTIFY payloads are limited to 8000 bytes: a bigger message goes
 * as "<origin> <channel>" alone and the receivers get a gap for that channel
 * (they catch it up from PostgreSQL).
 *
 * "<origin>+<channel>..." is a copy of a message Redis carried too
 * (bus_set_fallback_copies), for the processes that lost Redis: one that
 * has Redis drops it (pg_bus_config_t.wants_copies). A process that lost
 * Redis while others kept it would hear nothing of theirs, as they publish
 * to Redis only. So while it listens here without Redis it announces so
 * every second (pg_bus_announce, the frame "<origin>!"), and every process
 * that hears it copies what it publishes here for a few seconds (the hub's
 * bus watch, hub.c).
 *
 * Nothing here is atomic with the change it reports: a process that dies
 * between its commit and its NOTIFY leaves the others to their catch-ups.
 *
 * Loop thread only. Callbacks run from the listener connection's I/O.
 */
#ifndef RN_PG_BUS_H
#define RN_PG_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "pg_pool.h"

#define PG_BUS_CHANNEL "rn_bus"
#define PG_BUS_PAYLOAD_MAX 7999 /* NOTIFY's limit is 8000 bytes including the NUL */

typedef struct pg_bus pg_bus_t;

/* A message another process published; channel and payload borrowed for the call. */
typedef void (*pg_bus_message_cb)(void *arg, const char *channel, const char *payload, size_t len);
/*
 * Messages may have been missed: on channel (one too big for NOTIFY), or on
 * every channel when channel is NULL (LISTEN was (re)established, so what
 * was sent while it was down is gone). Callers catch up from PostgreSQL.
 */
typedef void (*pg_bus_gap_cb)(void *arg, const char *channel);
/* Another process announced that it hears the bus only here (pg_bus_announce). */
typedef void (*pg_bus_announce_cb)(void *arg);
/* Whether a copy that just arrived is wanted: false while Redis carries the originals. */
typedef bool (*pg_bus_wants_copies_cb)(void *arg);

typedef struct pg_bus_config {
    const char *conninfo;   /* as for pg_pool */
    int connect_timeout_ms; /* default: pg_pool's */
    pg_log_cb log;          /* optional, as for pg_pool */
    void *log_arg;
    pg_bus_announce_cb on_announce;      /* optional; called with the callbacks' arg */
    pg_bus_wants_copies_cb wants_copies; /* optional (NULL: every copy); the same arg */
} pg_bus_config_t;

/* Starts listening. NULL on bad config or out of memory. */
pg_bus_t *pg_bus_new(uv_loop_t *loop, const pg_bus_config_t *cfg, pg_bus_message_cb on_message,
                     pg_bus_gap_cb on_gap, void *arg);

/* The pool publishing goes through (borrowed; NULL until there is one, and before closing it). */
void pg_bus_set_pool(pg_bus_t *pb, pg_pool_t *pool);

/*
 * Sends one message to the other processes (copied), at the end of this
 * loop turn. 0 if queued, -1 if there is no pool (or out of memory). A
 * message the pool then cannot take (no connection up) is dropped: the
 * receivers' catch-ups cover it.
 */
int pg_bus_publish(pg_bus_t *pb, const char *channel, const char *payload, size_t len, bool copy);
/* Tells the other processes that this one hears the bus only here (sent like a message). */
int pg_bus_announce(pg_bus_t *pb);

/* 1 while LISTEN is in force on a live connection. */
int pg_bus_listening(const pg_bus_t *pb);
/* Messages sent (NOTIFY succeeded) and received from other processes. */
unsigned long pg_bus_sent(const pg_bus_t *pb);
unsigned long pg_bus_received(const pg_bus_t *pb);

/* Closes the listener (its pool frees itself once its handles are closed). NULL ignored. */
void pg_bus_close(pg_bus_t *pb);

#endif
