/*
 * cabinet_lease: this process renews the leases of the cabinets it holds
 * (every --cabinet-lease-ms / 3) and sweeps, in every process, the arcades
 * whose lease ran out to offline (storage/sql/03_queue.sql).
 * That is how an arcade stops showing online when the hub holding its
 * cabinet dies without a goodbye.
 */
#ifndef RN_CABINET_LEASE_H
#define RN_CABINET_LEASE_H

#include "hub.h"

typedef struct cabinet_lease cabinet_lease_t;

/* Starts the timer. NULL on allocation failure. */
cabinet_lease_t *cabinet_lease_new(hub_t *hub);
/*
 * Renews now (the pool is back after an outage: our leases went stale
 * meanwhile and must be fresh before another hub's sweep sees them).
 */
void cabinet_lease_renew(cabinet_lease_t *l);
/* Stops it; frees itself in the close callback. */
void cabinet_lease_close(cabinet_lease_t *l);

#endif
