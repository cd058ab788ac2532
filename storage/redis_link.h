/*
 * redis_link: one RESP connection to one Redis node, the only Redis client
 * of the hub: the single-instance bus (bus.c) and the cluster bus
 * (bus_cluster.c) both run on it. hiredis's reply reader on a non-blocking
 * socket of our own, watched by one uv_poll_t, instead of hiredis's async
 * layer: hiredis 0.14 knows SUBSCRIBE but not Redis 7's sharded SSUBSCRIBE,
 * and its async context asserts on the 'smessage' pushes that follow one;
 * and it toggles the poll mask around every command (two epoll_ctl calls
 * each way in libuv), where we keep it still (see redis_link.c).
 *
 * A link is connecting, then ready (its own first PING was answered within
 * timeout_ms), then lost. It checks its own health: a PING every ping_ms, and
 * a PING unanswered for three intervals is a loss. Once lost it stays lost:
 * free it and make a new one.
 *
 * Two kinds. A command link answers each redis_link_command() in order.
 * A push link (on_push set: pub/sub, plain or sharded) hands every reply to
 * on_push ("subscribe", "message", "ssubscribe", "smessage", ... arrays, and
 * error replies) once it is ready; redis_link_command() callbacks are not
 * used there and must be NULL. Commands queued before the link is ready go
 * out behind its first PING, so their replies come after it.
 *
 * Commands queued in one loop turn are written together at the end of that
 * turn (before the loop waits for events again), in as few write(2) calls as
 * the socket allows.
 *
 * Loop thread only. host must be a numeric address: nothing is resolved.
 */
#ifndef RN_REDIS_LINK_H
#define RN_REDIS_LINK_H

#include <stddef.h>
#include <uv.h>

struct redisReply;
typedef struct redis_link redis_link_t;

/* A reply, borrowed for the call; NULL when the link was lost or freed before it came. */
typedef void (*redis_link_reply_cb)(void *arg, struct redisReply *reply);
/*
 * The link became ready (up 1) or was lost (up 0: a connect error, a
 * timeout, a disconnect, a protocol error). Called once each at most, never
 * from redis_link_new(), redis_link_command() or redis_link_free().
 */
typedef void (*redis_link_state_cb)(void *arg, redis_link_t *link, int up);

typedef struct redis_link_config {
    const char *host; /* a numeric address */
    int port;
    const char *path; /* or a unix socket: then host and port are not used */
    int timeout_ms;   /* connect + first round trip */
    int ping_ms;      /* health check interval */
    redis_link_state_cb on_state;
    redis_link_reply_cb on_push; /* NULL: a command link */
    void *arg;                   /* for on_state and on_push */
} redis_link_config_t;

/* Starts connecting. NULL when the socket cannot even be made (nothing is called back). */
redis_link_t *redis_link_new(uv_loop_t *loop, const redis_link_config_t *cfg);

/*
 * Queues one command (argv copied), written as soon as the socket takes it.
 * 0: cb (which may be NULL: the reply is dropped) is called exactly once,
 * never before this returns. -1 (lost, out of memory): cb is never called.
 */
int redis_link_command(redis_link_t *link, int argc, const char **argv, const size_t *lens,
                       redis_link_reply_cb cb, void *arg);

/* 1 once ready and until lost. */
int redis_link_ready(const redis_link_t *link);

/*
 * Closes the socket; callbacks still waiting get NULL now (they may not
 * free this link again). Safe from inside any of this link's callbacks;
 * the memory goes once libuv has closed its handles. NULL is ignored.
 */
void redis_link_free(redis_link_t *link);

#endif
