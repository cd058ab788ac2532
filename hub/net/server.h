/*
 * server: the libwebsockets context on the hub's libuv loop (a foreign loop:
 * Debian's lws 4.1.6 cannot hand out its own). One vhost, one port, two
 * protocols: "http" (REST + static files, http.c) and "retronova.v1"
 * (WebSocket sessions, session.c).
 */
#ifndef RN_SERVER_H
#define RN_SERVER_H

#include <stdbool.h>

#include "hub.h"

typedef struct server server_t;

/*
 * Creates the context and starts listening. NULL on failure (logged), a
 * port that cannot be bound included: the hub must exit non-zero.
 */
server_t *server_new(hub_t *hub, const hub_config_t *cfg);

/*
 * Starts lws's teardown (asynchronous on a foreign loop): lws closes its
 * handles while the loop runs. Once uv_run() has returned, server_finish()
 * completes the teardown, runs the loop dry again and frees srv.
 */
void server_destroy(server_t *srv);
void server_finish(server_t *srv, uv_loop_t *loop);

#endif
