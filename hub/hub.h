/*
 * hub: the process. Owns the libuv loop and everything that runs on it: the
 * PostgreSQL pool, the Redis bus, the token verifier and the lws server.
 * Handlers reach those through the accessors below; nothing else is global.
 *
 * Start-up: certificates (blocking, before the loop runs), then lws listens
 * (a port it cannot bind is fatal at once) and the bus starts connecting.
 * The migrations run off the loop thread, retried with backoff while
 * PostgreSQL is unreachable; the pool is created once they are applied, so
 * until then hub_pool() is NULL (pg_pool_query answers PG_EUNAVAILABLE) and
 * /readyz says what the hub waits for. SIGINT/SIGTERM drain: every socket is
 * closed with 4000, then the shutdown order of DESIGN.md.
 */
#ifndef RN_HUB_H
#define RN_HUB_H

#include <stdbool.h>
#include <stdio.h>
#include <uv.h>

typedef struct auth auth_t; /* auth.h */
#include "bus.h"
#include "config.h"
#include "pg_pool.h"

typedef struct hub hub_t;
typedef struct sessions sessions_t;
typedef struct fanout fanout_t;
typedef struct queues queues_t;
typedef struct cabinets cabinets_t;
typedef struct payments payments_t;
typedef struct ratelimit ratelimit_t;
typedef struct userstate userstate_t;
struct lws;
typedef struct duties duties_t;

/* Runs one hub process until it is stopped. Returns the process exit code. */
int hub_run(const hub_config_t *cfg);

uv_loop_t *hub_loop(hub_t *hub);
const hub_config_t *hub_config(const hub_t *hub);
pg_pool_t *hub_pool(hub_t *hub);
bus_t *hub_bus(hub_t *hub);
/* True while the bus's PostgreSQL path (pg_bus.h) listens: with Redis away, it carries the bus. */
bool hub_bus_fallback_listening(const hub_t *hub);
const auth_t *hub_auth(const hub_t *hub);
/* The live Firebase key fetcher; NULL unless keys come from a URL. */
struct firebase_keys;
struct firebase_keys *hub_firebase_keys(hub_t *hub);
sessions_t *hub_sessions(hub_t *hub);
fanout_t *hub_fanout(hub_t *hub);
queues_t *hub_queues(hub_t *hub);
cabinets_t *hub_cabinets(hub_t *hub);
payments_t *hub_payments(hub_t *hub);
/* The catch-up duties (duty.h): resyncs and held resumes retried until done. */
duties_t *hub_duties(hub_t *hub);
/* True once a drain has begun: refuse new sockets, fail readiness. */
bool hub_draining(const hub_t *hub);

/* Samples the gauges owned by the pool and the bus (for metrics and stats). */
struct metrics_gauges;
void hub_gauges(hub_t *hub, struct metrics_gauges *out);

/* The abuse limits (ratelimit.h) and the deleted users (userstate.h). */
ratelimit_t *hub_ratelimit(hub_t *hub);
userstate_t *hub_userstate(hub_t *hub);
/*
 * The client's address of a connection (clientip.h: the peer, or from
 * X-Forwarded-For behind a trusted proxy) into out (CLIENTIP_MAX bytes).
 * While its headers are still there (an HTTP request, a WebSocket at
 * ESTABLISHED). peer is the connection's own address when the caller has it
 * already (http.c keeps it per connection), NULL to read it from the socket.
 */
void hub_client_ip(hub_t *hub, struct lws *wsi, const char *peer, char *out);

/* Every process's gauges, published and read back each second (deploy.h). */
typedef struct deploy deploy_t;
deploy_t *hub_deploy(hub_t *hub);

/* Milliseconds of the loop's clock (uv_now). */
uint64_t hub_now_ms(hub_t *hub);

/*
 * `retronova-hub routes`: prints the REST routes this binary serves, in match
 * order (router_print_routes; debug routes marked in test builds). Needs no
 * hub running. 0, or -1 when writing to out failed.
 */
int hub_print_routes(FILE *out);

#endif
