/*
 * cabinet: the hub side of a cabinet's socket. The process that holds a
 * cabinet's socket drives its arcade: it reports the cabinet online (and,
 * after the grace window, offline), runs the called reservation's deadline
 * timer, and turns the cabinet's messages (unlock, game_started, game_over,
 * status) into SQL transitions. Transitions are conditional in SQL, so a
 * second process trying the same one changes nothing.
 */
#ifndef RN_CABINET_H
#define RN_CABINET_H

#include <jansson.h>

#include "envelope.h"
#include "hub.h"
#include "session.h"

typedef struct cabinets cabinets_t;

/* Control messages between hub processes (key rotations). */
#define CABINET_CONTROL_CHANNEL "rn:control"

cabinets_t *cabinets_new(hub_t *hub);
/*
 * Stops every timer; frees itself once they are closed. Call it after the
 * pool is closed (nothing queued would run), then never call into it again.
 */
void cabinets_close(cabinets_t *c);

/*
 * A cabinet session authenticated: it joins its arcade's public channel, a
 * grace window of that arcade ends, its unacked inbox is replayed, and
 * rn_cabinet_online registers it (a fresh cabinet_queue follows). If the
 * registration fails the session is closed (1011): it must reconnect.
 */
void cabinet_on_authenticated(session_t *s);
/* unlock, game_started, game_over, status from a cabinet session. */
void cabinet_on_message(session_t *s, const envelope_t *env);
/* A cabinet session closed: the last one of its arcade here starts the grace window. */
void cabinet_on_closed(session_t *s);
/* A snapshot of an arcade whose cabinet is here arrived: (re)arm its deadline timer. */
void cabinet_on_snapshot(hub_t *hub, long arcade_id, const json_t *snapshot);

/*
 * Checks a cabinet's API key against the stored hash of arcade_id's live
 * arcade (constant time; cabinet_key.c), as session_hooks_t wants it: 0 once
 * the query is sent, then cb(arg, 0 | SESSION_KEY_E*, errmsg) exactly once.
 * Negative (the pool refused): cb is never called. The key is copied.
 */
int cabinet_key_check(hub_t *hub, long arcade_id, const char *key, session_key_cb cb, void *arg);

/* Calls fn for every arcade whose cabinet this process holds (or is in its grace window). */
void cabinets_each_held(cabinets_t *c, void (*fn)(long arcade_id, void *arg), void *arg);

/*
 * The arcade's API key was rotated: every socket of that cabinet, in every
 * hub process, closes with 4001 (told through the bus channel rn:control).
 */
void cabinet_revoke(hub_t *hub, long arcade_id);
/* A message on rn:control from another process (or our own echo). */
void cabinet_on_control(hub_t *hub, const char *payload, size_t len);

#endif
