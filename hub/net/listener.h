/*
 * listener: the listening socket of a --workers process. Debian's lws 4.1.6
 * (LWS_MAX_SMP 1) never sets SO_REUSEPORT on its own listener, so N
 * processes cannot share a port through it. Each worker binds its own
 * SO_REUSEPORT socket here instead (the kernel spreads new connections over
 * the workers that are alive), accepts on the loop and hands every accepted
 * socket to the lws vhost, which then serves it exactly as one it accepted.
 *
 * Loop thread only. The address must be a literal IPv4 or IPv6 address.
 */
#ifndef RN_LISTENER_H
#define RN_LISTENER_H

#include <uv.h>

struct lws_vhost;
typedef struct listener listener_t;

/*
 * Binds addr:port with SO_REUSEADDR + SO_REUSEPORT and listens (the kernel
 * queues connections from then on). Returns NULL (with err filled) when the
 * address is not a literal or the bind or listen fails.
 */
listener_t *listener_new(uv_loop_t *loop, const char *addr, int port, char *err, size_t errlen);

/* Starts accepting, handing each connection to vhost. */
void listener_start(listener_t *l, struct lws_vhost *vhost);

/* Stops accepting and closes the socket; the memory goes in the handle's close callback. */
void listener_close(listener_t *l);

#endif
