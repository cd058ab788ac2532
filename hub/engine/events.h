/*
 * events: private events, from commit to device.
 *
 * A transaction that changes what a player or a cabinet must know writes rows
 * to user_events and returns them (see db_call.h), each as
 *
 *   {"id": 42, "uid": "demo-alice" | "arcade_id": 3, "kind": "balance",
 *    "payload": {...}, "at_ms": 1763700000123}
 *
 * events_publish() sends each on Redis (rn:user:<uid> or rn:cabinet:<id>) so
 * that whichever hub process holds the device's socket pushes it; when Redis
 * is down the committing process delivers to its own sockets directly. The
 * device sees {"type": kind, "event_id": id, ...payload} and acks it with
 * {"type":"ack","event_id":id}; `resume {since}` replays the unacked ones.
 *
 * events_publish_admin() sends a live event to every admin dashboard.
 * events_publish() also mirrors some private events there (a reservation's
 * status, a score, a promo credit: PROTOCOL.md, admin_event), once per
 * reservation and status even when both players of a duo get them.
 */
#ifndef RN_EVENTS_H
#define RN_EVENTS_H

#include <jansson.h>
#include <stddef.h>

#include "envelope.h"
#include "hub.h"
#include "session.h"

#define EVENTS_CHANNEL_MAX 160
#define EVENTS_ADMIN_CHANNEL "rn:admin"

/* Publishes an array of committed user_events rows (borrowed). NULL or [] is fine. */
void events_publish(hub_t *hub, const json_t *events);

/* Publishes one event (borrowed) to the admin stream: {"type":"admin_event", ...}. */
void events_publish_admin(hub_t *hub, const json_t *event);

/* Channel names: rn:user:<uid>, rn:cabinet:<arcade id>. */
void events_user_channel(const char *uid, char *out, size_t outlen);
void events_cabinet_channel(long arcade_id, char *out, size_t outlen);

/*
 * A session authenticated as kind: it joins its private channel (and an
 * admin, the admin stream). Nonzero on allocation failure (session_hooks_t).
 */
int events_session_join(session_t *s, conn_kind_t kind);

/* A bus message on a private or admin channel: pushed to the local members. */
void events_on_bus_message(hub_t *hub, const char *channel, const char *payload, size_t len);
/* The bus came back: re-push every unacked event to the devices connected here. */
void events_resync(hub_t *hub);
/* channel's subscription was just confirmed: re-push its members' unacked events. */
void events_resync_channel(hub_t *hub, const char *channel);

/* {"type":"resume","since":N}: ok, then every unacked event after N in order, then live. */
void events_on_resume(session_t *s, const envelope_t *env);
/*
 * Like a resume without a request: pushes s's unacked events after since, in
 * order, holding live ones until they are sent (a cabinet, on connect).
 */
void events_replay(session_t *s, int64_t since);

/* {"type":"ack","event_id":N}: marks it delivered; observes commit -> ack latency. */
void events_on_ack(session_t *s, const envelope_t *env);

#endif
