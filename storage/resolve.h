/*
 * resolve: a host name -> its addresses, off the loop thread (uv_getaddrinfo
 * runs getaddrinfo in libuv's thread pool), for the PostgreSQL pool and the
 * Redis bus, which resolve again before every (re)connect so that a failover
 * that moves a name is followed. libpq and hiredis are then given the
 * numeric address and never look a name up themselves on the loop.
 *
 * Loop thread only. A request is owned by this module: the caller keeps the
 * pointer only to cancel it, and must not touch it after its callback ran.
 */
#ifndef RN_RESOLVE_H
#define RN_RESOLVE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define RESOLVE_MAX_ADDRS 8
#define RESOLVE_ADDR_LEN INET6_ADDRSTRLEN

typedef struct resolve_result {
    int n;                                          /* 1..RESOLVE_MAX_ADDRS */
    char addr[RESOLVE_MAX_ADDRS][RESOLVE_ADDR_LEN]; /* numeric, in getaddrinfo's order */
} resolve_result_t;

/*
 * Called once on the loop thread, unless the request was cancelled: status 0
 * and res (borrowed for the call, at least one address), or a negative libuv
 * error (UV_EAI_NONAME for a name that does not exist) and res NULL.
 */
typedef void (*resolve_cb)(void *arg, int status, const resolve_result_t *res);

typedef struct resolve_req resolve_req_t;

/* True when host is an IPv4 or IPv6 literal: nothing to resolve. */
bool resolve_is_literal(const char *host);

/*
 * Starts resolving host (TCP addresses, IPv4 and IPv6). Returns the request,
 * or NULL (out of memory, or libuv refused: *err set to the libuv error) in
 * which case cb is never called.
 */
resolve_req_t *resolve_start(uv_loop_t *loop, const char *host, resolve_cb cb, void *arg, int *err);

/*
 * Cancels req: its callback will not be called. Its memory is released when
 * libuv finishes with it (at once if the lookup had not started), so the
 * loop must run before uv_loop_close(). NULL is ignored.
 */
void resolve_cancel(resolve_req_t *req);

/*
 * Writes the addresses as one comma-separated list ("10.0.0.5,fd00::5").
 * Returns 0, or -1 when buf is too small.
 */
int resolve_join(const resolve_result_t *res, char *buf, size_t len);

#endif
