/* firebase_keys: Google's signing keys, fetched and refreshed live (see firebase_keys.h). */
#include "firebase_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "https_get.h"
#include "log.h"

#define KEYS_MAX_BODY (256 * 1024) /* Google's document is ~4 KiB */
#define REFRESH_MIN_MS 1000
#define REFRESH_MAX_MS (24 * 3600 * 1000L)
#define REFRESH_DEFAULT_MS (3600 * 1000L) /* when the answer has no max-age */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define DEFAULT_REFETCH_MS 60000
#define DEFAULT_TIMEOUT_MS 10000

typedef struct waiter {
    struct waiter *next;
    firebase_keys_wait_cb cb;
    void *arg;
} waiter_t;

struct firebase_keys {
    uv_loop_t *loop;
    auth_t *auth;
    SSL_CTX *tls;
    char *url;
    int refetch_ms, timeout_ms;
    uv_timer_t timer;      /* the next scheduled fetch */
    https_get_t *fetch;    /* in flight, or NULL */
    waiter_t *waiters;     /* run when the fetch in flight ends */
    uint64_t loaded_at;    /* loop time of the keys in use; 0: none yet */
    uint64_t kid_fetch_at; /* loop time of the last unknown-kid fetch */
    bool kid_fetched;      /* kid_fetch_at is set */
    long backoff_ms;
    firebase_keys_stats_t stats;
};

static void keys_fetch(firebase_keys_t *k);

static void on_timer(uv_timer_t *t)
{
    keys_fetch(t->data);
}

static void schedule(firebase_keys_t *k, long ms)
{
    uv_timer_start(&k->timer, on_timer, (uint64_t)ms, 0);
}

static void run_waiters(firebase_keys_t *k)
{
    waiter_t *w = k->waiters;
    k->waiters = NULL;
    while (w) {
        waiter_t *next = w->next;
        w->cb(w->arg);
        free(w);
        w = next;
    }
}

/* A good document: the next refresh when its max-age runs out. */
static void keys_loaded(firebase_keys_t *k, long max_age)
{
    long ms = max_age < 0 ? REFRESH_DEFAULT_MS : max_age * 1000L;
    if (max_age > REFRESH_MAX_MS / 1000)
        ms = REFRESH_MAX_MS;
    if (ms < REFRESH_MIN_MS)
        ms = REFRESH_MIN_MS;
    bool first = k->loaded_at == 0;
    k->loaded_at = uv_now(k->loop) ? uv_now(k->loop) : 1;
    k->stats.fetches++;
    k->backoff_ms = BACKOFF_MIN_MS;
    log_event(first ? LOG_INFO : LOG_DEBUG, "firebase keys loaded",
              json_pack("{s:i, s:I}", "keys", (int)auth_key_count(k->auth), "refresh_in_s",
                        (json_int_t)(ms / 1000)));
    schedule(k, ms);
}

/* A failed fetch: the old keys stay; retry with a doubling backoff. */
static void keys_failed(firebase_keys_t *k, const char *why)
{
    long ms = k->backoff_ms;
    k->backoff_ms = k->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : k->backoff_ms * 2;
    k->stats.failures++;
    log_warn("firebase keys refresh failed",
             json_pack("{s:s, s:s, s:i, s:I}", "error", why, "url", k->url, "keys_kept",
                       (int)auth_key_count(k->auth), "retry_in_ms", (json_int_t)ms));
    schedule(k, ms);
}

static void on_fetched(void *arg, const https_response_t *res, const char *errmsg)
{
    firebase_keys_t *k = arg;
    char why[300];

    k->fetch = NULL;
    if (!res) {
        keys_failed(k, errmsg);
    } else if (res->status != 200) {
        snprintf(why, sizeof why, "HTTP status %d", res->status);
        keys_failed(k, why);
    } else if (auth_set_certs(k->auth, res->body, res->body_len, why, sizeof why) != 0) {
        keys_failed(k, why);
    } else {
        keys_loaded(k, res->max_age);
    }
    run_waiters(k);
}

static void keys_fetch(firebase_keys_t *k)
{
    char err[256];

    uv_timer_stop(&k->timer);
    if (k->fetch)
        return;
    k->fetch = https_get_start(k->loop, k->tls, k->url, KEYS_MAX_BODY, k->timeout_ms, on_fetched, k,
                               err, sizeof err);
    if (!k->fetch)
        keys_failed(k, err);
}

/* auth's hook: a kid we do not know. Refetch now, once per interval at most. */
static void on_unknown_kid(void *arg)
{
    firebase_keys_t *k = arg;
    uint64_t now = uv_now(k->loop);

    if (k->fetch || (k->kid_fetched && now - k->kid_fetch_at < (uint64_t)k->refetch_ms))
        return;
    k->kid_fetched = true;
    k->kid_fetch_at = now;
    k->stats.kid_refetches++;
    log_info("unknown kid: refetching the firebase keys", NULL);
    keys_fetch(k);
}

firebase_keys_t *firebase_keys_new(uv_loop_t *loop, auth_t *auth, const firebase_keys_config_t *cfg,
                                   char *err, size_t errlen)
{
    firebase_keys_t *k;

    if (https_url_check(cfg->url, err, errlen) != 0)
        return NULL;
    k = calloc(1, sizeof *k);
    if (!k || !(k->url = strdup(cfg->url))) {
        snprintf(err, errlen, "out of memory");
        free(k);
        return NULL;
    }
    k->tls = https_ctx_new(cfg->ca_file, err, errlen);
    if (!k->tls) {
        free(k->url);
        free(k);
        return NULL;
    }
    k->loop = loop;
    k->auth = auth;
    k->refetch_ms = cfg->refetch_interval_ms > 0 ? cfg->refetch_interval_ms : DEFAULT_REFETCH_MS;
    k->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    k->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &k->timer);
    k->timer.data = k;
    auth_set_unknown_kid_cb(auth, on_unknown_kid, k);
    uv_timer_start(&k->timer, on_timer, 0, 0);
    return k;
}

bool firebase_keys_ready(const firebase_keys_t *k)
{
    return k && k->loaded_at != 0;
}

void firebase_keys_get_stats(const firebase_keys_t *k, firebase_keys_stats_t *out)
{
    *out = k->stats;
    out->keys = auth_key_count(k->auth);
    out->age_s = k->loaded_at ? (double)(uv_now(k->loop) - k->loaded_at) / 1000.0 : -1;
}

int firebase_keys_wait(firebase_keys_t *k, firebase_keys_wait_cb cb, void *arg)
{
    waiter_t *w;

    if (!k || !k->fetch || !(w = malloc(sizeof *w)))
        return -1;
    w->cb = cb;
    w->arg = arg;
    w->next = k->waiters;
    k->waiters = w;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    firebase_keys_t *k = h->data;
    SSL_CTX_free(k->tls);
    free(k->url);
    free(k);
}

void firebase_keys_close(firebase_keys_t *k)
{
    if (!k)
        return;
    auth_set_unknown_kid_cb(k->auth, NULL, NULL);
    https_get_cancel(k->fetch);
    k->fetch = NULL;
    run_waiters(k);
    uv_close((uv_handle_t *)&k->timer, on_closed);
}
