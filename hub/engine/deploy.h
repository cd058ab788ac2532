/*
 * deploy: one view of every hub process of a deployment (issue 10 item 7).
 *
 * Each second (hub.c's stats tick) every process writes its gauges into the
 * Redis hash rn:gauges (field: "host:pid", value: JSON with the wall-clock
 * time it was written) and reads the whole hash back. A field older than
 * DEPLOY_STALE_MS is ignored (a process that died disappears within a few
 * seconds) and, past DEPLOY_DROP_MS, deleted by whoever reads it; the hash
 * itself expires when no process writes any more. Processes compare
 * wall clocks, so hosts must keep them in sync (NTP) to within a second.
 *
 * A process's gauges: {id, pid, worker, started_at_ms, at_ms, connections:
 * {pending, player, admin, cabinet}, messages_per_s, commit_ack_p99_ms}.
 * While Redis is away the deployment is this process alone.
 *
 * Loop thread only. Ownership: the deploy_t is the hub's (deploy_close).
 */
#ifndef RN_DEPLOY_H
#define RN_DEPLOY_H

#include <jansson.h>

#include "bus.h"

#define DEPLOY_KEY "rn:gauges"
#define DEPLOY_STALE_MS 3500 /* older gauges are a process that is gone */
#define DEPLOY_DROP_MS 10000 /* and are deleted from the hash */

typedef struct deploy deploy_t;

/* NULL on allocation failure. */
deploy_t *deploy_new(void);

/*
 * Once a second: stats is this process's metrics_stats_json() (borrowed);
 * publishes its gauges on bus (NULL or down: kept local) and reads the
 * others' back for the next deploy_json().
 */
void deploy_tick(deploy_t *d, bus_t *bus, const json_t *stats);

/*
 * The deployment: {"processes": [gauges, ...], "total": {"processes": N,
 * "connections": {...}, "messages_per_s": x}}. New reference.
 */
json_t *deploy_json(const deploy_t *d);

/* Player sockets over every live process (this one's alone when Redis is away). */
long deploy_players_online(const deploy_t *d);
/* Live processes seen (1 at least). */
long deploy_processes(const deploy_t *d);

/* Frees it (now, or when its Redis reply comes back). NULL is ignored. */
void deploy_close(deploy_t *d);

#endif
