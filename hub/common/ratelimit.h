/*
 * ratelimit: the abuse limits. Token buckets keyed by (limit, key) -- a
 * client IP, a uid -- with ONE budget for every hub process: the buckets live
 * in Redis and a Lua script (EVALSHA, EVAL when Redis lost it) refills and
 * takes tokens atomically, with Redis's clock, on the bus's command link
 * (pipelined, never blocking). Keys expire (PEXPIRE) once their bucket would
 * be full again, so Redis does not grow.
 *
 * Cost: a refusal is remembered here until the bucket has a token again, so
 * a flood from one key is refused at once, without a Redis round trip. While
 * Redis cannot answer (link down, reply lost or later than a second, error)
 * this process decides alone with local buckets of the same size: N processes
 * then allow up to N budgets, but every one of them still limits.
 *
 * A limit's setting is "N/S": a bucket of N tokens, refilled at N per S
 * seconds (so N back-to-back, then one every S/N seconds). "0" turns it off.
 * Loop thread only.
 */
#ifndef RN_RATELIMIT_H
#define RN_RATELIMIT_H

#include <stddef.h>
#include <uv.h>

#include "bus.h"
#include "metrics.h"

typedef struct ratelimit ratelimit_t;

/* One bucket: which limit, and whose (a client IP, a uid). key is borrowed for the call. */
typedef struct rl_key {
    limit_id_t limit;
    const char *key;
} rl_key_t;

#define RL_MAX_KEYS 4
#define RL_KEY_MAX 160 /* longer keys are cut: a uid is at most 128 bytes */

/* The answer to ratelimit_take(): allowed, or refused for retry_after_ms. */
typedef void (*ratelimit_cb)(void *arg, int allowed, unsigned retry_after_ms);

/* Parses "N/S" (or "0": off) into a bucket size and a refill period. 0 or -1. */
int ratelimit_parse(const char *spec, unsigned *burst, unsigned *period_ms);

/*
 * specs[i] is limit i's setting (NULL or "0": off). bus may be NULL (local
 * buckets only). NULL with a message in err for a malformed setting.
 */
ratelimit_t *ratelimit_new(uv_loop_t *loop, bus_t *bus, const char *const specs[LIMIT_COUNT],
                           char *err, size_t errlen);
/* Closes its timer; frees itself in the close callback. Close the bus first. */
void ratelimit_close(ratelimit_t *rl);

/* 1 when limit is turned on. */
int ratelimit_enabled(const ratelimit_t *rl, limit_id_t limit);

/*
 * Takes one token from each of the n (<= RL_MAX_KEYS) buckets, all or none.
 * cb is called exactly once: at once when the answer is known here (a
 * remembered refusal, limits off, Redis unavailable), otherwise when Redis
 * answers. Every decision is counted in /metrics.
 */
void ratelimit_take(ratelimit_t *rl, const rl_key_t *keys, int n, ratelimit_cb cb, void *arg);

/* Gives one token back (e.g. the right cabinet key after a reserved attempt). */
void ratelimit_refund(ratelimit_t *rl, limit_id_t limit, const char *key);

#endif
