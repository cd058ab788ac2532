/*
 * events_expire: the retention of the private inbox (user_events). Every
 * --events-expire-sweep-ms each hub deletes the events acked more than
 * --events-keep-hours ago, in batches (rn_events_expire, storage/sql/
 * 01_common.sql: at most EXPIRE_BATCH rows a call, one sweeper at a time over
 * every hub). A batch that comes back full is followed by the next one as
 * soon as it answers, one query in flight at a time, until a batch is not
 * full: the sweep never holds more than one pool connection and never a
 * long statement. Unacked events are never deleted.
 *
 * Each batch starts where the previous one stopped (the created_at of the
 * newest row it deleted), so the old unacked rows in front are read once,
 * not once per batch; the cursor is kept from one sweep to the next, and
 * every EXPIRE_RESTART_SWEEPS-th sweep starts again from the oldest row, to
 * take the old events acked since (a phone back after a long time).
 *
 * /metrics: rn_events_expired_total. One log line per sweep that deleted
 * something ("events expired": events, batches, ms). Loop thread only; a
 * failed batch ends its sweep, the next tick tries again.
 */
#ifndef RN_EVENTS_EXPIRE_H
#define RN_EVENTS_EXPIRE_H

#include "hub.h"

typedef struct events_expire events_expire_t;

/* Starts the periodic sweep. NULL when --events-keep-hours is 0 (keep forever) or on failure. */
events_expire_t *events_expire_new(hub_t *hub);

/* Stops it; a batch still in flight is answered and nothing follows it. NULL is fine. */
void events_expire_close(events_expire_t *ex);

#endif
