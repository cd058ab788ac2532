/*
 * bus_cluster: the bus (bus.h) over a Redis Cluster, with Redis 7's sharded
 * pub/sub. bus.c calls these when the URL is redis-cluster://; nothing else
 * may (they take bus_priv.h's struct).
 *
 * The topology is read with CLUSTER SLOTS from any seed or known master,
 * at start, every few seconds, and at once after anything that says it
 * changed: a MOVED or ASK reply, a 'sunsubscribe' push (the server drops a
 * sharded subscription when its slot moves away), a link lost. Each master
 * gets one command link (opened when the map names it: SPUBLISH, keyed
 * commands, and its health check) and, once one of our channels lives in
 * its slots, one push link carrying SSUBSCRIBE / SUNSUBSCRIBE and the
 * 'smessage' pushes. A channel lives on the master owning
 * CRC16(channel) % 16384 (a {hash tag} counts alone).
 *
 * The bus is up when the map covers every slot, every master's command link
 * answers, and every channel with interest is confirmed on its owner: the
 * whole cluster, not just some shards. A lost link takes the bus down
 * (on_link(0)) and brings a refresh of the map (with backoff); when the
 * failed master's replica has been promoted and every channel subscribed
 * again on it, on_link(1) says "catch up". While a channel's shard is
 * unreachable its publishes go to the fallback (bus_set_fallback); the
 * other shards keep carrying theirs.
 *
 * Loop thread only.
 */
#ifndef RN_BUS_CLUSTER_H
#define RN_BUS_CLUSTER_H

#include "bus_priv.h"

/* Starts reading the topology from bus->seeds. 0, or -1 out of memory. */
int bus_cluster_start(bus_t *bus);

/* c's interest went 1: SSUBSCRIBE on its owner (now, or once the link is up). */
void bus_cluster_subscribe(bus_t *bus, bus_chan_t *c);
/* c's interest went 0 and it is about to be freed: SUNSUBSCRIBE where it was. */
void bus_cluster_unsubscribe(bus_t *bus, bus_chan_t *c);

/* bus_publish() in cluster mode: SPUBLISH on the owner, following MOVED/ASK. */
int bus_cluster_publish(bus_t *bus, const char *channel, const char *payload, size_t len);

/* bus_command() in cluster mode: routed by argv[key]'s slot (any master if key < 0). */
int bus_cluster_command(bus_t *bus, int key, int argc, const char **argv, const size_t *lens,
                        bus_reply_cb cb, void *arg);

/* Frees every link (waiting commands get NULL), cancels timers; the memory goes later. */
void bus_cluster_close(bus_t *bus);

#endif
