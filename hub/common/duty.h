/*
 * duty: work that must eventually succeed, such as a catch-up from
 * PostgreSQL after the bus or the database was away (issue 8).
 *
 * A duty is named by a key ("events:rn:user:alice", "queue:rn:arcade:3"). It
 * is remembered until one attempt succeeded: an attempt that cannot start or
 * that fails is retried from one backoff timer (100 ms doubling to 1 s, with
 * jitter), and at once when duties_kick() says a dependency came back (the
 * pool's first connection, the bus link). Wanting a duty already known
 * coalesces: one pending attempt per key, never a storm; a want that arrives
 * while an attempt is in flight runs one more attempt after it (what the
 * first read may have missed). Waiting is logged once when the first duty
 * starts to wait ("catch-up waiting") and once when the last one waiting has
 * completed ("catch-up done", with how many and how long), and counted in
 * /metrics (rn_catchup_total, rn_catchup_pending).
 *
 * Loop thread only. The duties own their keys; an arg given to duty_want()
 * is owned by the duty from then on and released with free_arg (also when
 * the want is coalesced into a duty already known: that one keeps its own).
 */
#ifndef RN_DUTY_H
#define RN_DUTY_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

/* The hub (hub.h) is only handed through to the run callbacks. */
typedef struct hub hub_t;
typedef struct duties duties_t;

typedef struct duty duty_t;

/*
 * Starts one attempt. Returns 0 once started: duty_done(d, ...) is then
 * called exactly once, now or later. Returns negative when it cannot start
 * now (it is retried, and duty_done must not be called).
 */
typedef int (*duty_run_cb)(hub_t *hub, duty_t *d, void *arg);

/* A set of duties on loop; hub is handed to the run callbacks. NULL on allocation failure. */
duties_t *duties_new(uv_loop_t *loop, hub_t *hub);
/*
 * Stops retrying: every duty not in flight is dropped now; those in flight
 * are dropped at their duty_done. The set frees itself once its timer is
 * closed and nothing is in flight; run the loop to let it finish.
 */
void duties_close(duties_t *ds);

/*
 * Wants the duty key done by run(hub, d, arg). Returns 0 when a new duty
 * was created (and its first attempt started), 1 when coalesced into the
 * duty already pending, -1 on allocation failure or when ds is NULL or
 * closing (arg released).
 */
int duty_want(duties_t *ds, const char *key, duty_run_cb run, void *arg, void (*free_arg)(void *));

/* Ends an attempt. ok: the duty is done (unless wanted again meanwhile); why: a reason or NULL. */
void duty_done(duty_t *d, bool ok, const char *why);

/* The key of d, borrowed while the attempt runs. */
const char *duty_key(const duty_t *d);

/* A dependency is back: every waiting duty is attempted now. */
void duties_kick(duties_t *ds);

/* Duties pending now (waiting or in flight). */
size_t duties_pending(const duties_t *ds);

#endif
