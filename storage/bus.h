/*
 * bus: Redis pub/sub between hub processes (storage/redis_link.h on our
 * libuv loop).
 *
 * Two links: one for SUBSCRIBE, one for PUBLISH and commands. Each has a
 * connect timeout and a PING health check, and both are rebuilt from a
 * backoff timer after any loss of either; subscriptions are restored on the
 * new link. Interest is counted per channel: the first bus_subscribe() sends
 * SUBSCRIBE, the last bus_unsubscribe() sends UNSUBSCRIBE.
 *
 * The link callback fires with up=1 when both links are connected and all
 * channels are subscribed again: messages may have been missed, so callers
 * resynchronise from PostgreSQL then. It fires with up=0 when the link is lost.
 *
 * Redis Cluster (a redis-cluster:// URL, storage/bus_cluster.h): the same
 * contract over Redis 7's sharded pub/sub. Each channel lives on the master
 * owning its slot (SSUBSCRIBE / SPUBLISH there); "up" means the WHOLE
 * cluster: every slot has a master, every master answers, every channel is
 * confirmed on its owner. Losing any master takes the bus down (on_link(0));
 * on_link(1) comes once its replica is promoted and every channel
 * re-subscribed. Meanwhile the other shards keep carrying their channels,
 * and publishes to the unreachable shard's channels go to the fallback. A
 * channel whose slot moves while the bus is up is re-subscribed on its new
 * owner and gets the subscribed callback (catch that channel up).
 */
#ifndef RN_BUS_H
#define RN_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct bus bus_t;

/* A message on a subscribed channel. channel and payload are borrowed for the call. */
typedef void (*bus_message_cb)(void *arg, const char *channel, const char *payload, size_t len);
/* The link went up (1: resynchronise now) or down (0). */
typedef void (*bus_link_cb)(void *arg, int up);

/*
 * Optional: the rare events an operator wants to see (a host name that does
 * not resolve, or resolves to new addresses). One line, borrowed; warn is 1
 * for a problem, 0 for information. It gets bus_new's arg.
 */
typedef void (*bus_log_cb)(void *arg, int warn, const char *msg);

typedef struct bus_config {
    const char *url;        /* redis://HOST:PORT[/db] or unix:/path/to/socket; a host name is
                               resolved off the loop before every connect. Or
                               redis-cluster://HOST:PORT[,HOST:PORT...]: seed nodes of a Redis
                               Cluster (any one that answers gives the topology) */
    int connect_timeout_ms; /* default 2000 */
    int backoff_min_ms;     /* default 100 */
    int backoff_max_ms;     /* default 800; each wait is jittered between half and all */
    int ping_interval_ms;   /* health check on every link, default 1000 */
    bus_log_cb log;         /* optional */
} bus_config_t;

/*
 * Starts connecting. NULL on a bad URL, with the reason in err (errlen bytes;
 * err may be NULL).
 */
bus_t *bus_new(uv_loop_t *loop, const bus_config_t *cfg, bus_message_cb on_message,
               bus_link_cb on_link, void *arg, char *err, size_t errlen);

/*
 * A channel's own SUBSCRIBE was confirmed (not one restored after a
 * reconnect: on_link covers those). Messages published before it may have
 * been missed, so callers catch that channel up from PostgreSQL.
 */
typedef void (*bus_subscribed_cb)(void *arg, const char *channel);
/* Sets (or clears, with NULL) the subscribed callback; it gets bus_new's arg. */
void bus_set_subscribed_cb(bus_t *bus, bus_subscribed_cb cb);

/* Adds one unit of interest in channel. 0, or -1 on allocation failure. */
int bus_subscribe(bus_t *bus, const char *channel);
/* Removes one unit of interest; unknown channels are ignored. */
int bus_unsubscribe(bus_t *bus, const char *channel);

/*
 * Publishes (payload copied). 0 if handed to Redis, -1 if the link is down
 * (then the message went to the fallback, if one is set; the caller still
 * delivers to its own process, as the fallback does not echo).
 */
int bus_publish(bus_t *bus, const char *channel, const char *payload, size_t len);

/*
 * A second path for what Redis cannot carry (storage/pg_bus.h): called by
 * bus_publish() with its arguments (borrowed) whenever the message could not
 * be handed to Redis (copy false). In cluster mode also later, from the loop,
 * for a message a master refused or was lost before confirming (bus_publish()
 * had returned 0 for it). Its return value is ignored. NULL clears it.
 */
typedef int (*bus_fallback_cb)(void *arg, const char *channel, const char *payload, size_t len,
                               bool copy);
void bus_set_fallback(bus_t *bus, bus_fallback_cb cb, void *arg);
/*
 * While on, every message handed to Redis also goes to the fallback, with
 * copy true: another process has lost Redis and hears the bus only there.
 * Off by default.
 */
void bus_set_fallback_copies(bus_t *bus, bool on);

/*
 * A message that came by the fallback path: handed to the message callback
 * as if Redis had carried it, when this process has interest in channel
 * (Redis would not have sent it otherwise). Loop thread.
 */
void bus_deliver(bus_t *bus, const char *channel, const char *payload, size_t len);
/*
 * The fallback path lost a message on channel (too big for it): the
 * subscribed callback runs for it, so the caller catches that channel up
 * from PostgreSQL, when this process has interest in it.
 */
void bus_deliver_gap(bus_t *bus, const char *channel);

/*
 * A reply to bus_command(): borrowed for the call (copy what you keep), or
 * NULL when the link was lost before it came (also from inside bus_close()).
 */
struct redisReply;
typedef void (*bus_reply_cb)(void *arg, struct redisReply *reply);

/*
 * Sends one command (argv copied) on the command link, pipelined behind
 * whatever is in flight there. key is the index in argv of the key that
 * routes it in a Redis Cluster (the master owning its slot; a MOVED or ASK
 * reply is followed there), or -1 for a keyless command (any master).
 * Several keys of one command must share a slot: give them one {hash tag}.
 * Single Redis ignores key. 0: cb will be called exactly once, never before
 * bus_command() returns. -1 (link not ready, out of memory, key >= argc): cb
 * is never called. Loop thread only.
 */
int bus_command(bus_t *bus, int key, int argc, const char **argv, const size_t *lens,
                bus_reply_cb cb, void *arg);

/* 1 while both links are connected (cluster: the whole cluster is, see above). */
int bus_is_up(const bus_t *bus);
/* How many times a lost link has been re-established. */
unsigned long bus_reconnects(const bus_t *bus);
/* 1 once the bus has been up (a later down is a loss, not a start). */
int bus_ever_up(const bus_t *bus);

/* Stops timers, closes both links; frees itself once its handles are closed. */
void bus_close(bus_t *bus);

#endif
