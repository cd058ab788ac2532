/*
 * redis_slot: Redis Cluster's key -> slot function and its slot map, for the
 * cluster bus (bus_cluster.c).
 *
 * A key (or a sharded pub/sub channel) lives in slot CRC16(key) % 16384,
 * where CRC16 is the XMODEM variant and only the part between the first '{'
 * and the next '}' counts when that part is not empty (a "hash tag": keys
 * that must meet in one Lua script share one). The map says which master
 * serves each slot; it is read from CLUSTER SLOTS.
 *
 * Pure functions, no allocation: safe on any thread.
 */
#ifndef RN_REDIS_SLOT_H
#define RN_REDIS_SLOT_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>

#define REDIS_SLOTS 16384
#define REDIS_MAP_MAX_NODES 64 /* masters; a larger cluster is refused */

struct redisReply;

/* CRC16/XMODEM (poly 0x1021, init 0) of len bytes: Redis Cluster's key hash. */
uint16_t redis_crc16(const char *buf, size_t len);

/* The slot of a key, honouring a {hash tag}. */
unsigned redis_slot(const char *key, size_t len);

typedef struct redis_addr {
    char host[INET6_ADDRSTRLEN]; /* numeric, as the cluster announces it */
    int port;
} redis_addr_t;

typedef struct redis_slot_map {
    int nnodes;
    redis_addr_t node[REDIS_MAP_MAX_NODES]; /* the masters */
    int16_t owner[REDIS_SLOTS];             /* index into node, -1: no master serves it */
    int complete;                           /* 1 when every slot has a master */
} redis_slot_map_t;

/*
 * Reads a CLUSTER SLOTS reply into map (overwritten). A master announced
 * with an empty address ("") is the node that was asked: asked_host names
 * it. Returns 0, or -1 with a static reason in *err on a reply that is not
 * a slot table (then map is unspecified). An incomplete table is not an
 * error: map->complete says so.
 */
int redis_slot_map_parse(redis_slot_map_t *map, const struct redisReply *reply,
                         const char *asked_host, const char **err);

/* The index of host:port in map, or -1. */
int redis_slot_map_find(const redis_slot_map_t *map, const char *host, int port);

/*
 * Parses the target of a MOVED or ASK error ("MOVED 3999 127.0.0.1:6381",
 * "ASK 3999 [::1]:6381" or ":6381" for the node that answered). Returns 1
 * for MOVED, 2 for ASK, 0 for any other error text; fills slot and addr
 * (an empty host means "the node that answered").
 */
int redis_redirect_parse(const char *err, size_t len, unsigned *slot, redis_addr_t *addr);

#endif
