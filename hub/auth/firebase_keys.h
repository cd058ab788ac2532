/*
 * firebase_keys: keeps the Firebase signing keys of auth.c current by
 * fetching Google's x509 key document (kid -> PEM certificate) over HTTPS
 * (https_get.c), on the loop, never blocking it.
 *
 * - The first fetch starts at once; until one succeeds no Firebase token
 *   verifies and firebase_keys_ready() is false (/readyz answers 503).
 * - After a good document the next refresh is due after its
 *   Cache-Control max-age (1 s .. 24 h; 1 h when absent).
 * - A failed refresh (no answer, TLS, HTTP status, oversized or bad
 *   document) keeps the old keys and retries with a doubling backoff
 *   (1 s .. 60 s), each failure logged.
 * - A token naming an unknown kid (auth's hook) refetches at once, at most
 *   once per refetch interval: rotated keys are picked up without waiting for
 *   the max-age, and garbage kids cannot make the hub hammer Google.
 *
 * Loop thread only. Owns its HTTPS context; borrows auth for its life.
 */
#ifndef RN_FIREBASE_KEYS_H
#define RN_FIREBASE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "auth.h"

#define FIREBASE_KEYS_URL                                                                          \
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"

typedef struct firebase_keys firebase_keys_t;

typedef struct firebase_keys_config {
    const char *url;         /* https:// URL of the key document */
    const char *ca_file;     /* CAs to trust for it; NULL: the system's */
    int refetch_interval_ms; /* unknown kid: one refetch per interval at most (default 60000) */
    int timeout_ms;          /* one fetch, connect to last byte (default 10000) */
} firebase_keys_config_t;

typedef struct firebase_keys_stats {
    double age_s;                /* since the keys in use were fetched; -1: never */
    size_t keys;                 /* keys in use */
    unsigned long fetches;       /* fetches that brought a good document */
    unsigned long failures;      /* fetches that failed (old keys kept) */
    unsigned long kid_refetches; /* fetches started by an unknown kid */
} firebase_keys_stats_t;

/*
 * Installs the unknown-kid hook on auth and starts the first fetch. NULL with
 * a message in err (bad URL, unreadable CA file).
 */
firebase_keys_t *firebase_keys_new(uv_loop_t *loop, auth_t *auth, const firebase_keys_config_t *cfg,
                                   char *err, size_t errlen);

/* True once a key document has been loaded. */
bool firebase_keys_ready(const firebase_keys_t *keys);

void firebase_keys_get_stats(const firebase_keys_t *keys, firebase_keys_stats_t *out);

/*
 * When a fetch is in flight (an unknown kid has just started one), registers
 * cb to run once when it ends, whatever its outcome, and returns 0: verify
 * again then. Returns -1 when none is (refuse the token now); cb never runs.
 * On firebase_keys_close() pending callbacks run (verifying then fails).
 */
typedef void (*firebase_keys_wait_cb)(void *arg);
int firebase_keys_wait(firebase_keys_t *keys, firebase_keys_wait_cb cb, void *arg);

/*
 * Cancels the fetch, runs the waiting callbacks, removes the hook from auth,
 * and frees itself once its timer is closed (run the loop). NULL is ignored.
 */
void firebase_keys_close(firebase_keys_t *keys);

#endif
