/*
 * events_sweep: the private lane's safety net against a hub that dies
 * between a commit and its publish. An event is pushed by the process that
 * committed it, right after the commit; if that process is killed in between
 * (kill -9, a host lost: the scale test does both), nobody publishes it, and
 * a phone or cabinet connected to another hub would get it only at its next
 * resume. So every --unacked-sweep-ms each hub asks PostgreSQL, in one
 * query, for the events of its local users and cabinets that are still
 * unacked and were created in the window that just became that old (windows
 * follow each other: each event is looked at once), and delivers them as if
 * they had come from the bus (a socket drops the ids it was sent lately).
 * An event that was delivered but not acked yet is thus sent again at most
 * once, and only if its socket has seen many others since.
 *
 * Loop thread only. One query at a time; a failed one is simply retried at
 * the next tick.
 */
#ifndef RN_EVENTS_SWEEP_H
#define RN_EVENTS_SWEEP_H

#include "hub.h"

typedef struct events_sweep events_sweep_t;

/* Starts the periodic sweep (NULL when --unacked-sweep-ms is 0, or on failure). */
events_sweep_t *events_sweep_new(hub_t *hub);

/* Stops it; an answer still in flight is ignored. NULL is fine. */
void events_sweep_close(events_sweep_t *sw);

#endif
