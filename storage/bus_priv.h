/*
 * bus_priv.h: what bus.c shares with bus_cluster.c, and nothing else may
 * include. The bus struct, its channel table and the few helpers both modes
 * use; bus.h is the public contract.
 */
#ifndef RN_BUS_PRIV_H
#define RN_BUS_PRIV_H

#include "bus.h"
#include "redis_link.h"
#include "resolve.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <sys/un.h>

enum {
    BUS_DEFAULT_CONNECT_TIMEOUT_MS = 2000,
    BUS_DEFAULT_BACKOFF_MIN_MS = 100,
    BUS_DEFAULT_BACKOFF_MAX_MS = 800, /* back within 1 s of Redis (issue 8) */
    BUS_DEFAULT_PING_INTERVAL_MS = 1000,
    BUS_INITIAL_BUCKETS = 64,
    BUS_MAX_SEEDS = 16, /* redis-cluster:// seed nodes */
};

/* Single Redis: one of the bus's two links (bus.c). */
typedef struct bus_link {
    bus_t *bus;
    redis_link_t *rl;     /* NULL between a loss and the next attempt */
    int ready;            /* rl is ready and (sub) the resubscribe confirmed */
    size_t resub_pending; /* sub: confirmations still due for the resubscribe */
} bus_link_t;

/* One channel with interest > 0. Entries with no interest are removed at once. */
typedef struct bus_chan {
    struct bus_chan *next;
    uint32_t hash;
    unsigned interest;
    int subscribed; /* SUBSCRIBE sent on the current sub link, no UNSUBSCRIBE since */
    int node;       /* cluster: the master SSUBSCRIBE went to (-1: none yet) */
    int confirmed;  /* cluster: and it confirmed */
    size_t len;
    char name[];
} bus_chan_t;

/* One redis-cluster:// seed: an address, or a name to resolve first. */
typedef struct bus_seed {
    char host[INET6_ADDRSTRLEN];
    char name[256];
    int port;
} bus_seed_t;

struct bus_cluster;

struct bus {
    uv_loop_t *loop;
    bus_message_cb on_message;
    bus_link_cb on_link;
    bus_subscribed_cb on_subscribed;
    void *arg;
    bus_fallback_cb fallback;
    void *fallback_arg;
    bool fallback_copies; /* bus_set_fallback_copies */

    int connect_timeout_ms;
    int backoff_min_ms;
    int backoff_max_ms;
    int ping_interval_ms;
    int backoff_ms; /* delay before the next reconnect */

    int is_unix;
    char host[INET6_ADDRSTRLEN]; /* the address the links connect to */
    int port;
    char name[256];           /* the URL's host when it is a name: resolve it first */
    resolve_req_t *resolving; /* a resolution of name in flight */
    unsigned pick;            /* which of name's addresses; moves on after a failure */
    char addrs[RESOLVE_MAX_ADDRS * (RESOLVE_ADDR_LEN + 1)]; /* name's last addresses */
    int resolve_failing; /* the failure was logged; log the recovery */
    bus_log_cb log;
    void *log_arg;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

    bus_seed_t seeds[BUS_MAX_SEEDS]; /* cluster mode when nseeds > 0 */
    int nseeds;
    struct bus_cluster *cl;

    bus_link_t sub;
    bus_link_t cmd;
    uv_timer_t link_timer;  /* resolve + connect + resubscribe deadline; bus_fail_soon */
    uv_timer_t retry_timer; /* the next attempt, after the backoff */
    int open_handles;       /* timers still to close after bus_close() */

    bus_chan_t **buckets; /* chained hash table, power-of-two size */
    size_t nbuckets;
    size_t nchans;

    int up;
    int ever_up;
    int closing;
    unsigned long reconnects;
};

bus_chan_t *bus_chan_find(const bus_t *bus, const char *name, size_t len);
/* Logs one line through the configured log callback (printf format). */
void bus_log(bus_t *bus, int warn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Hands a message Redis cannot take to the fallback; returns -1 (bus_publish's "not Redis"). */
int bus_publish_fallback(bus_t *bus, const char *channel, const char *payload, size_t len);
/* Every link is back and every channel subscribed: up, on_link(1). No-op when up already. */
void bus_went_up(bus_t *bus);
/* A link was lost: down, on_link(0) if it was up. */
void bus_went_down(bus_t *bus);
/* The next reconnect delay: jittered between half and all of the backoff, which then doubles. */
uint64_t bus_next_backoff(bus_t *bus);
/*
 * A redis_link (redis_link_new's contract) to host:port, or to the unix
 * socket path when it is not NULL, with the bus's connect timeout and ping
 * interval: every link of either mode is made here.
 */
redis_link_t *bus_redis_link(bus_t *bus, const char *host, int port, const char *path,
                             redis_link_state_cb on_state, redis_link_reply_cb on_push, void *arg);

#endif
