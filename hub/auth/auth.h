/*
 * auth: verifies the bearer tokens of phones and admins.
 *
 * Firebase ID tokens: RS256 only, the `kid` must name a key of the current
 * certificate document (Google's format: a JSON object kid -> PEM X.509
 * certificate; read from a file, or fetched live by firebase_keys.c),
 * aud = project id, iss = https://securetoken.google.com/<project>, sub
 * non-empty and at most 128 bytes, exp in the future, iat and auth_time in
 * the past, all with the configured leeway (default 60 s).
 *
 * HS256 tokens only when a dev secret is configured; they need sub, iat and
 * exp. `alg: none` is never accepted, nor a token whose alg is not the one
 * pinned to the key that verified it (this stops RS256 -> HS256 confusion with
 * the public key as the secret). The admin role is the claim "admin": true.
 *
 * libjwt 1.10 verifies signatures only; every claim is checked here.
 */
#ifndef RN_AUTH_H
#define RN_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define AUTH_UID_MAX 128

typedef struct auth auth_t;

typedef struct auth_config {
    const char *firebase_project;    /* NULL: Firebase tokens are refused */
    const char *firebase_certs_path; /* kid -> PEM certificate JSON file; NULL: none */
    const char *hs256_secret;        /* NULL or "": HS256 tokens are refused */
    int leeway_s;                    /* default 60 when 0 */
} auth_config_t;

typedef struct auth_identity {
    char uid[AUTH_UID_MAX + 1];
    bool admin;
} auth_identity_t;

/* Reads the certificates. NULL with a message in err when they cannot be used. */
auth_t *auth_new(const auth_config_t *cfg, char *err, size_t errlen);
void auth_free(auth_t *auth);

/*
 * Replaces the Firebase keys from a certificate JSON document (the same format
 * as the file). 0, or -1 with a message in err (the old keys are kept).
 */
int auth_set_certs(auth_t *auth, const char *json, size_t len, char *err, size_t errlen);

/* How many Firebase keys are loaded. */
size_t auth_key_count(const auth_t *auth);

/*
 * Called (on the verifying thread, the loop) whenever a Firebase token names
 * a kid that no loaded key has, before auth_verify() refuses it with
 * "unknown_kid": the keys may have rotated (firebase_keys refetches). NULL
 * clears it.
 */
typedef void (*auth_unknown_kid_cb)(void *arg);
void auth_set_unknown_kid_cb(auth_t *auth, auth_unknown_kid_cb cb, void *arg);

/*
 * Verifies token at time now. Returns 0 and fills out, or -1 with *why set to
 * a short static reason ("expired", "bad_signature", "wrong_audience", ...).
 */
int auth_verify(const auth_t *auth, const char *token, time_t now, auth_identity_t *out,
                const char **why);

/*
 * How long a token auth_verify_until() accepted stays accepted, so that a
 * caller holding the same bytes (a keep-alive connection sending its token
 * with every request) need not verify it again: until its exp (plus the
 * leeway), and while the keys are the ones it was verified with (each
 * auth_set_certs() that succeeds replaces them). Every other check gives the
 * same answer for the same bytes later (signature, issuer, audience, subject;
 * iat, auth_time and nbf were already in the past).
 */
typedef struct auth_validity {
    long long until;    /* refused from this time on (exp + leeway) */
    unsigned long keys; /* the key set it was verified with */
} auth_validity_t;

/* auth_verify(), and on success how long its answer holds (valid may be NULL). */
int auth_verify_until(const auth_t *auth, const char *token, time_t now, auth_identity_t *out,
                      auth_validity_t *valid, const char **why);
/* true while an answer of auth_verify_until() holds at now. */
bool auth_still_valid(const auth_t *auth, const auth_validity_t *valid, time_t now);

/*
 * Mints an HS256 dev token for uid (claims sub, iat, exp = now + ttl_s, and
 * admin when asked). Returns a malloc'd string the caller frees, or NULL.
 */
char *auth_mint_hs256(const char *secret, const char *uid, bool admin, time_t now, int ttl_s);

#endif
