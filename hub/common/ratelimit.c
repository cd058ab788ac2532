/*
 * ratelimit: shared token buckets in Redis, local fallback and a local
 * memory of refusals (see ratelimit.h).
 */
#include "ratelimit.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "log.h"

enum {
    RL_SWEEP_MS = 10000,     /* how often idle local entries are dropped */
    RL_MAX_ENTRIES = 200000, /* past this, new keys are not remembered locally */
    RL_INITIAL_BUCKETS = 256,
    RL_WARN_EVERY_MS = 60000,
    RL_REDIS_WAIT_MS = 1000, /* an answer later than this is not waited for: decided here */
    RL_LATE_TICK_MS = 250,
};

/*
 * KEYS: the buckets. ARGV[1]: tokens to take (-1 gives one back); then for
 * each key its size and refill period (ms). Returns {0, 0} when every bucket
 * had the tokens (all were taken), else {ms until the first refusing bucket
 * has them, its 1-based index} and nothing is taken. Redis's own clock, so
 * that every hub agrees.
 */
static const char script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local cost = tonumber(ARGV[1])\n"
    "local tok = {}\n"
    "for i = 1, #KEYS do\n"
    "  local burst, period = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])\n"
    "  local v = redis.call('HMGET', KEYS[i], 'tok', 'ts')\n"
    "  local n, ts = tonumber(v[1]) or burst, tonumber(v[2]) or now\n"
    "  if now > ts then n = math.min(burst, n + (now - ts) * burst / period) end\n"
    "  if n < cost then return {math.ceil((cost - n) * period / burst), i} end\n"
    "  tok[i] = n\n"
    "end\n"
    "for i = 1, #KEYS do\n"
    "  local burst, period = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])\n"
    "  redis.call('HSET', KEYS[i], 'tok', tostring(math.min(burst, tok[i] - cost)), 'ts',\n"
    "             string.format('%d', now))\n"
    "  redis.call('PEXPIRE', KEYS[i], period + 1000)\n"
    "end\n"
    "return {0, 0}\n";

typedef struct rl_spec {
    unsigned burst; /* 0: off */
    unsigned period_ms;
} rl_spec_t;

/* What this process knows of one bucket: its local twin and a remembered refusal. */
typedef struct rl_entry {
    struct rl_entry *next;
    uint32_t hash;
    limit_id_t limit;
    double tokens;
    uint64_t ts_ms;
    uint64_t blocked_until_ms;
    char key[];
} rl_entry_t;

struct ratelimit {
    uv_loop_t *loop;
    bus_t *bus;
    rl_spec_t spec[LIMIT_COUNT];
    rl_entry_t **buckets;
    size_t nbuckets, count;
    uv_timer_t sweep;
    char sha[41];
    uint64_t last_warn_ms; /* of the last "script failed" line (they are rate-limited too) */
    struct rl_call *head,
        *tail;       /* calls waiting on Redis, oldest first (its answers come in order) */
    uv_timer_t late; /* decides here the calls Redis is too slow to answer */
    int open_handles;
};

/* A take in flight to Redis. */
typedef struct rl_call {
    ratelimit_t *rl;
    ratelimit_cb cb; /* NULL for a refund */
    void *arg;
    int n;
    limit_id_t limits[RL_MAX_KEYS];
    char keys[RL_MAX_KEYS][RL_KEY_MAX];
    int argc;
    const char *argv[3 + RL_MAX_KEYS * 3 + 1];
    size_t lens[3 + RL_MAX_KEYS * 3 + 1];
    char text[RL_MAX_KEYS * 3 + 2][RL_KEY_MAX + 32]; /* the argv strings we own */
    int retried;                                     /* sent again with EVAL */
    struct rl_call *prev, *next;                     /* in the ratelimit's FIFO while linked */
    int linked;
    int decided; /* answered here (Redis too slow): its reply, when it comes, is dropped */
    uint64_t sent_ms;
} rl_call_t;

int ratelimit_parse(const char *spec, unsigned *burst, unsigned *period_ms)
{
    unsigned long n, s;
    char *end;

    *burst = *period_ms = 0;
    if (spec == NULL || strcmp(spec, "0") == 0 || *spec == '\0')
        return 0;
    n = strtoul(spec, &end, 10);
    if (end == spec || *end != '/' || n < 1 || n > 1000000)
        return -1;
    spec = end + 1;
    s = strtoul(spec, &end, 10);
    if (end == spec || *end != '\0' || s < 1 || s > 86400)
        return -1;
    *burst = (unsigned)n;
    *period_ms = (unsigned)(s * 1000);
    return 0;
}

/* ---- the local table ---- */

static uint32_t rl_hash(limit_id_t limit, const char *key)
{
    uint32_t h = 2166136261u ^ (uint32_t)limit; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static rl_entry_t *rl_find(ratelimit_t *rl, limit_id_t limit, const char *key, int add)
{
    uint32_t h = rl_hash(limit, key);
    rl_entry_t *e;
    size_t len;

    for (e = rl->buckets[h & (rl->nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && e->limit == limit && strcmp(e->key, key) == 0)
            return e;
    if (!add || rl->count >= RL_MAX_ENTRIES)
        return NULL;
    if (rl->count >= rl->nbuckets) {
        size_t n = rl->nbuckets * 2;
        rl_entry_t **b = calloc(n, sizeof(*b));
        if (b != NULL) {
            for (size_t i = 0; i < rl->nbuckets; i++)
                for (rl_entry_t *c = rl->buckets[i], *next; c != NULL; c = next) {
                    next = c->next;
                    c->next = b[c->hash & (n - 1)];
                    b[c->hash & (n - 1)] = c;
                }
            free(rl->buckets);
            rl->buckets = b;
            rl->nbuckets = n;
        }
    }
    len = strlen(key);
    if ((e = calloc(1, sizeof(*e) + len + 1)) == NULL)
        return NULL;
    e->hash = h;
    e->limit = limit;
    e->tokens = rl->spec[limit].burst;
    e->ts_ms = uv_now(rl->loop);
    memcpy(e->key, key, len + 1);
    e->next = rl->buckets[h & (rl->nbuckets - 1)];
    rl->buckets[h & (rl->nbuckets - 1)] = e;
    rl->count++;
    return e;
}

/* Brings a local bucket up to now. */
static void rl_refill(ratelimit_t *rl, rl_entry_t *e, uint64_t now)
{
    const rl_spec_t *s = &rl->spec[e->limit];

    if (now > e->ts_ms) {
        e->tokens += (double)(now - e->ts_ms) * s->burst / s->period_ms;
        if (e->tokens > s->burst)
            e->tokens = s->burst;
    }
    e->ts_ms = now;
}

/* Drops the entries that say nothing any more: a full bucket and no refusal to remember. */
static void rl_on_sweep(uv_timer_t *t)
{
    ratelimit_t *rl = t->data;
    uint64_t now = uv_now(rl->loop);

    for (size_t i = 0; i < rl->nbuckets; i++)
        for (rl_entry_t **p = &rl->buckets[i]; *p != NULL;) {
            rl_entry_t *e = *p;
            rl_refill(rl, e, now);
            if (e->blocked_until_ms <= now && e->tokens >= rl->spec[e->limit].burst) {
                *p = e->next;
                free(e);
                rl->count--;
            } else {
                p = &e->next;
            }
        }
}

static void rl_count(const rl_key_t *keys, int n, int refused_at)
{
    for (int i = 0; i < n; i++)
        if (refused_at < 0 || i == refused_at)
            metrics_limit(keys[i].limit, refused_at < 0);
}

/* This process's decision alone, all or none. */
static void rl_decide_locally(ratelimit_t *rl, const rl_key_t *keys, int n, ratelimit_cb cb,
                              void *arg)
{
    uint64_t now = uv_now(rl->loop);
    rl_entry_t *e[RL_MAX_KEYS];

    metrics_limit_local();
    for (int i = 0; i < n; i++) {
        e[i] = rl_find(rl, keys[i].limit, keys[i].key, 1);
        if (e[i] == NULL)
            continue; /* table full or no memory: not limited here */
        rl_refill(rl, e[i], now);
        if (e[i]->tokens < 1) {
            const rl_spec_t *s = &rl->spec[keys[i].limit];
            rl_count(keys, n, i);
            cb(arg, 0, (unsigned)((1 - e[i]->tokens) * s->period_ms / s->burst) + 1);
            return;
        }
    }
    for (int i = 0; i < n; i++)
        if (e[i] != NULL)
            e[i]->tokens -= 1;
    rl_count(keys, n, -1);
    cb(arg, 1, 0);
}

/* ---- Redis ---- */

static void rl_call_keys(const rl_call_t *call, rl_key_t *keys)
{
    for (int i = 0; i < call->n; i++) {
        keys[i].limit = call->limits[i];
        keys[i].key = call->keys[i];
    }
}

static void rl_link(ratelimit_t *rl, rl_call_t *call)
{
    call->linked = 1;
    call->sent_ms = uv_now(rl->loop);
    call->next = NULL;
    call->prev = rl->tail;
    if (rl->tail)
        rl->tail->next = call;
    else
        rl->head = call;
    rl->tail = call;
}

static void rl_unlink(ratelimit_t *rl, rl_call_t *call)
{
    if (!call->linked)
        return;
    call->linked = 0;
    if (call->prev)
        call->prev->next = call->next;
    else
        rl->head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    else
        rl->tail = call->prev;
}

/*
 * A Redis that stopped answering (frozen, a dead path) is found by the bus
 * only after a few missed pings: meanwhile no request waits longer than
 * RL_REDIS_WAIT_MS for its limit.
 */
static void rl_on_late(uv_timer_t *t)
{
    ratelimit_t *rl = t->data;
    uint64_t now = uv_now(rl->loop);

    while (rl->head && rl->head->sent_ms + RL_REDIS_WAIT_MS <= now) {
        rl_call_t *call = rl->head;
        ratelimit_cb cb = call->cb;
        rl_key_t keys[RL_MAX_KEYS];
        rl_unlink(rl, call);
        call->decided = 1;
        call->cb = NULL;
        if (cb) {
            rl_call_keys(call, keys);
            rl_decide_locally(rl, keys, call->n, cb, call->arg);
        }
    }
}

static void rl_on_reply(void *arg, redisReply *reply)
{
    rl_call_t *call = arg;
    ratelimit_t *rl = call->rl;
    rl_key_t keys[RL_MAX_KEYS];

    rl_unlink(rl, call);
    rl_call_keys(call, keys);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !call->retried && !call->decided &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* Redis restarted or flushed its scripts: send the text once. */
        call->retried = 1;
        call->argv[0] = "EVAL";
        call->lens[0] = 4;
        call->argv[1] = script;
        call->lens[1] = sizeof script - 1;
        if (bus_command(rl->bus, 3, call->argc, call->argv, call->lens, rl_on_reply, call) == 0) {
            rl_link(rl, call);
            return;
        }
        reply = NULL;
    }
    if (call->cb == NULL) {
        /* a refund, or decided already: nothing waits for it */
    } else if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
               reply->element[0]->type != REDIS_REPLY_INTEGER ||
               reply->element[1]->type != REDIS_REPLY_INTEGER) {
        uint64_t now = uv_now(rl->loop);
        if (reply != NULL && now - rl->last_warn_ms >= RL_WARN_EVERY_MS) {
            /* e.g. a Redis Cluster refusing keys of several slots: once a minute, not per call */
            rl->last_warn_ms = now;
            log_warn("rate limit script failed: deciding locally",
                     json_pack("{s:s}", "error",
                               reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply"));
        }
        rl_decide_locally(rl, keys, call->n, call->cb, call->arg);
    } else if (reply->element[0]->integer <= 0) {
        rl_count(keys, call->n, -1);
        call->cb(call->arg, 1, 0);
    } else {
        long long wait = reply->element[0]->integer, i = reply->element[1]->integer - 1;
        if (i < 0 || i >= call->n)
            i = 0;
        rl_entry_t *e = rl_find(rl, keys[i].limit, keys[i].key, 1);
        if (e != NULL) /* refused here, without Redis, until then */
            e->blocked_until_ms = uv_now(rl->loop) + (uint64_t)wait;
        rl_count(keys, call->n, (int)i);
        call->cb(call->arg, 0, wait > 86400000 ? 86400000u : (unsigned)wait);
    }
    free(call);
}

static void rl_arg(rl_call_t *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rl_arg(rl_call_t *call, const char *fmt, ...)
{
    int slot = call->argc - 2; /* argv[0..1] are the verb and the script */
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(call->text[slot], sizeof call->text[slot], fmt, ap);
    va_end(ap);
    if (len >= (int)sizeof call->text[slot])
        len = (int)sizeof call->text[slot] - 1;
    call->argv[call->argc] = call->text[slot];
    call->lens[call->argc++] = (size_t)(len < 0 ? 0 : len);
}

/* Sends the script for these buckets. 0, or -1 when Redis cannot be asked now. */
static int rl_send(ratelimit_t *rl, const rl_key_t *keys, int n, int cost, ratelimit_cb cb,
                   void *arg)
{
    rl_call_t *call;

    if (rl->bus == NULL || !bus_is_up(rl->bus) || (call = calloc(1, sizeof(*call))) == NULL)
        return -1;
    call->rl = rl;
    call->cb = cb;
    call->arg = arg;
    call->n = n;
    call->argv[0] = "EVALSHA";
    call->lens[0] = 7;
    call->argv[1] = rl->sha;
    call->lens[1] = 40;
    call->argc = 2;
    rl_arg(call, "%d", n);
    for (int i = 0; i < n; i++) {
        call->limits[i] = keys[i].limit;
        snprintf(call->keys[i], sizeof call->keys[i], "%s", keys[i].key);
        /* One {hash tag} for every bucket: a script's keys must share a Redis Cluster slot. */
        rl_arg(call, "rn:{rl}:%s:%s", metrics_limit_name(keys[i].limit), call->keys[i]);
    }
    rl_arg(call, "%d", cost);
    for (int i = 0; i < n; i++) {
        rl_arg(call, "%u", rl->spec[keys[i].limit].burst);
        rl_arg(call, "%u", rl->spec[keys[i].limit].period_ms);
    }
    if (bus_command(rl->bus, 3, call->argc, call->argv, call->lens, rl_on_reply, call) != 0) {
        free(call);
        return -1;
    }
    rl_link(rl, call);
    return 0;
}

/* ---- public ---- */

void ratelimit_take(ratelimit_t *rl, const rl_key_t *keys, int n, ratelimit_cb cb, void *arg)
{
    rl_key_t on[RL_MAX_KEYS];
    char cut[RL_MAX_KEYS][RL_KEY_MAX];
    int m = 0;
    uint64_t now = uv_now(rl->loop);

    for (int i = 0; i < n && i < RL_MAX_KEYS; i++) {
        if (rl->spec[keys[i].limit].burst == 0)
            continue;
        snprintf(cut[m], sizeof cut[m], "%s", keys[i].key);
        on[m].limit = keys[i].limit;
        on[m].key = cut[m];
        m++;
    }
    for (int i = 0; i < m; i++) {
        rl_entry_t *e = rl_find(rl, on[i].limit, on[i].key, 0);
        if (e != NULL && e->blocked_until_ms > now) {
            rl_count(on, m, i);
            cb(arg, 0, (unsigned)(e->blocked_until_ms - now));
            return;
        }
    }
    if (m == 0) {
        cb(arg, 1, 0);
        return;
    }
    if (rl_send(rl, on, m, 1, cb, arg) != 0)
        rl_decide_locally(rl, on, m, cb, arg);
}

void ratelimit_refund(ratelimit_t *rl, limit_id_t limit, const char *key)
{
    rl_key_t k = {limit, key};
    char cut[RL_KEY_MAX];
    rl_entry_t *e;

    if (rl->spec[limit].burst == 0)
        return;
    snprintf(cut, sizeof cut, "%s", key);
    k.key = cut;
    if ((e = rl_find(rl, limit, cut, 0)) != NULL) {
        e->blocked_until_ms = 0;
        e->tokens = e->tokens + 1 > rl->spec[limit].burst ? rl->spec[limit].burst : e->tokens + 1;
    }
    rl_send(rl, &k, 1, -1, NULL, NULL); /* Redis down: its bucket expires anyway */
}

int ratelimit_enabled(const ratelimit_t *rl, limit_id_t limit)
{
    return rl->spec[limit].burst > 0;
}

ratelimit_t *ratelimit_new(uv_loop_t *loop, bus_t *bus, const char *const specs[LIMIT_COUNT],
                           char *err, size_t errlen)
{
    unsigned char md[20];
    unsigned mdlen = 0;
    ratelimit_t *rl = calloc(1, sizeof(*rl));

    if (rl == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (int i = 0; i < LIMIT_COUNT; i++)
        if (ratelimit_parse(specs[i], &rl->spec[i].burst, &rl->spec[i].period_ms) != 0) {
            snprintf(err, errlen, "limit %s: \"%s\" is not N/SECONDS (or 0 for off)",
                     metrics_limit_name((limit_id_t)i), specs[i]);
            free(rl);
            return NULL;
        }
    rl->nbuckets = RL_INITIAL_BUCKETS;
    if ((rl->buckets = calloc(rl->nbuckets, sizeof(*rl->buckets))) == NULL ||
        EVP_Digest(script, sizeof script - 1, md, &mdlen, EVP_sha1(), NULL) != 1) {
        snprintf(err, errlen, "out of memory");
        free(rl->buckets);
        free(rl);
        return NULL;
    }
    hex_encode(md, sizeof md, rl->sha);
    rl->loop = loop;
    rl->bus = bus;
    uv_timer_init(loop, &rl->sweep);
    rl->sweep.data = rl;
    uv_timer_start(&rl->sweep, rl_on_sweep, RL_SWEEP_MS, RL_SWEEP_MS);
    uv_unref((uv_handle_t *)&rl->sweep);
    uv_timer_init(loop, &rl->late);
    rl->late.data = rl;
    uv_timer_start(&rl->late, rl_on_late, RL_LATE_TICK_MS, RL_LATE_TICK_MS);
    uv_unref((uv_handle_t *)&rl->late);
    rl->open_handles = 2;
    return rl;
}

static void rl_on_closed(uv_handle_t *h)
{
    ratelimit_t *rl = h->data;

    if (--rl->open_handles > 0)
        return;
    for (size_t i = 0; i < rl->nbuckets; i++)
        for (rl_entry_t *e = rl->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    free(rl->buckets);
    free(rl);
}

void ratelimit_close(ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    uv_close((uv_handle_t *)&rl->sweep, rl_on_closed);
    uv_close((uv_handle_t *)&rl->late, rl_on_closed);
}
