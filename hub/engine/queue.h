/*
 * queue: the public lane. Each arcade's queue as this process last saw it:
 * the newest snapshot (with its queue_version v), encoded once, and the
 * sessions subscribed to it.
 *
 * Every committed change of an arcade's queue yields a full snapshot (the SQL
 * function returns it as "arcade"); it is published on rn:arcade:<id> and
 * every process keeps the one with the highest v. A snapshot supersedes all
 * older ones, so a lost or reordered message only delays a view: it is never
 * wrong. A subscriber gets the current snapshot, then each newer one,
 * conflated: a slow reader gets the newest, never a backlog.
 *
 * Snapshot: {"type":"queue","arcade_id":1,"v":17,"status":"idle",
 *   "called":{...}|null,"playing":{...}|null,"waiting":[{...,"position":1,"eta_s":240}]}
 */
#ifndef RN_QUEUE_H
#define RN_QUEUE_H

#include <jansson.h>

#include "envelope.h"
#include "hub.h"
#include "session.h"

typedef struct queues queues_t;

queues_t *queues_new(hub_t *hub);
void queues_free(queues_t *q);

/*
 * Called with every snapshot that became an arcade's newest here (borrowed
 * for the call), after its subscribers got it: the cabinet re-arms its
 * deadline timer (cabinet_on_snapshot). Installed by hub.c.
 */
typedef void (*queue_snapshot_cb)(hub_t *hub, long arcade_id, const json_t *snapshot);
void queues_set_snapshot_hook(queues_t *q, queue_snapshot_cb cb);

/* A snapshot committed by this process: publish it and apply it here (a reference is kept). */
void queue_publish(hub_t *hub, json_t *snapshot);
/* A snapshot from the bus (rn:arcade:<id>). */
void queue_on_bus_message(hub_t *hub, const char *channel, const char *payload, size_t len);
/* The bus came back: reload every arcade someone here watches from PostgreSQL. */
void queue_resync(hub_t *hub);
/* A channel's subscription was just confirmed: reload its arcade (rn:arcade:<id>). */
void queue_resync_channel(hub_t *hub, const char *channel);

/* {"type":"subscribe","ch":"arcade:3"} and unsubscribe. */
void queue_on_subscribe(session_t *s, const envelope_t *env);
void queue_on_unsubscribe(session_t *s, const envelope_t *env);

/* The newest snapshot of an arcade known here (borrowed), or NULL. */
const json_t *queue_snapshot(hub_t *hub, long arcade_id);

#endif
