/*
 * auth: bearer token verification (see auth.h for the rules).
 *
 * libjwt 1.10.2 is used for one thing only: checking the signature with a key
 * we chose. It trusts whatever `alg` the token names and, given a NULL or
 * empty key, accepts a token without checking anything. So the header is read
 * here first, the key is chosen from our own tables by (alg, kid), libjwt is
 * always handed that key, and the alg it decoded must equal the one pinned to
 * the key. The claims are read from our own strict parse of the payload
 * (duplicate keys rejected), never from libjwt's lenient one.
 */
#include "auth.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define AUTH_TOKEN_MAX 8192          /* bytes; Firebase ID tokens are ~1 KiB */
#define AUTH_CERTS_MAX (1024 * 1024) /* bytes of certificate JSON */
#define AUTH_KEYS_MAX 64             /* Google publishes 2 or 3 */
#define AUTH_KID_MAX 128             /* Google's kids are 40 hex digits */
#define AUTH_PROJECT_MAX 128
#define AUTH_RSA_MIN_BITS 2048
#define AUTH_LEEWAY_DEFAULT 60
#define AUTH_LEEWAY_MAX 3600
#define FIREBASE_ISS_PREFIX "https://securetoken.google.com/"

typedef struct auth_key {
    char *kid;
    char *pem; /* "BEGIN PUBLIC KEY" PEM, NUL-terminated, the form libjwt wants */
    size_t pem_len;
} auth_key_t;

struct auth {
    char *project;         /* NULL: Firebase tokens refused */
    char *issuer;          /* FIREBASE_ISS_PREFIX + project */
    unsigned char *secret; /* NULL: HS256 refused */
    size_t secret_len;
    int leeway_s;
    auth_key_t *keys;
    size_t nkeys;
    unsigned long keys_generation;      /* bumped by each auth_set_certs() that succeeds */
    auth_unknown_kid_cb on_unknown_kid; /* may refetch the keys */
    void *unknown_kid_arg;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void keys_free(auth_key_t *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(keys[i].kid);
        free(keys[i].pem);
    }
    free(keys);
}

/*
 * Extracts the public key of one PEM X.509 certificate as a SubjectPublicKeyInfo
 * PEM. Only RSA keys of at least AUTH_RSA_MIN_BITS: they are pinned to RS256.
 * Returns 0 and a malloc'd NUL-terminated PEM in *out, or -1.
 */
static int cert_to_pubkey_pem(const char *cert, size_t len, char **out, size_t *outlen, char *err,
                              size_t errlen)
{
    BIO *in = NULL, *mem = NULL;
    X509 *x509 = NULL;
    EVP_PKEY *pkey = NULL;
    char *data, *pem = NULL;
    long n;
    int rc = -1;

    in = BIO_new_mem_buf(cert, (int)len);
    if (in == NULL)
        goto oom;
    x509 = PEM_read_bio_X509(in, NULL, NULL, NULL);
    if (x509 == NULL) {
        set_err(err, errlen, "not a PEM X.509 certificate");
        goto done;
    }
    pkey = X509_get_pubkey(x509);
    if (pkey == NULL) {
        set_err(err, errlen, "certificate has no usable public key");
        goto done;
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        set_err(err, errlen, "certificate key is not RSA");
        goto done;
    }
    if (EVP_PKEY_get_bits(pkey) < AUTH_RSA_MIN_BITS) {
        set_err(err, errlen, "RSA key shorter than %d bits", AUTH_RSA_MIN_BITS);
        goto done;
    }
    mem = BIO_new(BIO_s_mem());
    if (mem == NULL || PEM_write_bio_PUBKEY(mem, pkey) != 1)
        goto oom;
    n = BIO_get_mem_data(mem, &data);
    if (n <= 0)
        goto oom;
    pem = malloc((size_t)n + 1);
    if (pem == NULL)
        goto oom;
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    *out = pem;
    *outlen = (size_t)n;
    rc = 0;
    goto done;

oom:
    set_err(err, errlen, "out of memory reading certificate");
done:
    /* Leave nothing on the thread's OpenSSL error queue for the next user. */
    ERR_clear_error();
    BIO_free(mem);
    EVP_PKEY_free(pkey);
    X509_free(x509);
    BIO_free(in);
    return rc;
}

int auth_set_certs(auth_t *auth, const char *json, size_t len, char *err, size_t errlen)
{
    json_t *root = NULL, *val;
    json_error_t jerr;
    const char *kid;
    auth_key_t *keys = NULL;
    size_t n = 0, cap;
    char why[128];

    if (auth == NULL || json == NULL) {
        set_err(err, errlen, "no certificate document");
        return -1;
    }
    if (len > AUTH_CERTS_MAX) {
        set_err(err, errlen, "certificate document larger than %d bytes", AUTH_CERTS_MAX);
        return -1;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        set_err(err, errlen, "certificate JSON: %s (line %d)", jerr.text, jerr.line);
        goto fail;
    }
    if (!json_is_object(root)) {
        set_err(err, errlen, "certificate JSON is not an object kid -> PEM");
        goto fail;
    }
    cap = json_object_size(root);
    if (cap == 0 || cap > AUTH_KEYS_MAX) {
        set_err(err, errlen, "certificate JSON holds %zu keys (want 1..%d)", cap, AUTH_KEYS_MAX);
        goto fail;
    }
    keys = calloc(cap, sizeof(*keys));
    if (keys == NULL) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    json_object_foreach (root, kid, val) {
        size_t kidlen = strlen(kid); /* jansson refuses keys holding NUL */

        if (kidlen == 0 || kidlen > AUTH_KID_MAX) {
            set_err(err, errlen, "certificate kid empty or longer than %d", AUTH_KID_MAX);
            goto fail;
        }
        if (!json_is_string(val)) {
            set_err(err, errlen, "certificate for kid %s is not a string", kid);
            goto fail;
        }
        keys[n].kid = strdup(kid);
        if (keys[n].kid == NULL) {
            set_err(err, errlen, "out of memory");
            goto fail;
        }
        if (cert_to_pubkey_pem(json_string_value(val), json_string_length(val), &keys[n].pem,
                               &keys[n].pem_len, why, sizeof(why)) != 0) {
            set_err(err, errlen, "certificate for kid %s: %s", kid, why);
            n++; /* free its kid too */
            goto fail;
        }
        n++;
    }
    json_decref(root);
    keys_free(auth->keys, auth->nkeys);
    auth->keys = keys;
    auth->nkeys = n;
    auth->keys_generation++;
    return 0;

fail:
    keys_free(keys, n);
    json_decref(root);
    return -1;
}

/* Reads a whole file of at most AUTH_CERTS_MAX bytes. Blocking: start-up only. */
static char *read_file(const char *path, size_t *lenp, char *err, size_t errlen)
{
    FILE *f;
    char *buf;
    size_t len;

    f = fopen(path, "rb");
    if (f == NULL) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(AUTH_CERTS_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    len = fread(buf, 1, AUTH_CERTS_MAX + 1, f);
    if (ferror(f) || len > AUTH_CERTS_MAX) {
        set_err(err, errlen, "%s: %s", path,
                ferror(f) ? "read error" : "larger than the certificate size cap");
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    *lenp = len;
    return buf;
}

auth_t *auth_new(const auth_config_t *cfg, char *err, size_t errlen)
{
    auth_t *auth;
    bool firebase;
    size_t plen = 0;

    if (cfg == NULL) {
        set_err(err, errlen, "no auth configuration");
        return NULL;
    }
    firebase = cfg->firebase_project != NULL && cfg->firebase_project[0] != '\0';
    if (firebase) {
        plen = strlen(cfg->firebase_project);
        if (plen > AUTH_PROJECT_MAX || strchr(cfg->firebase_project, '/') != NULL) {
            set_err(err, errlen, "firebase project id is not a project id");
            return NULL;
        }
    } else if (cfg->firebase_certs_path != NULL) {
        /* Keys without a project could never verify a token: a config mistake. */
        set_err(err, errlen, "firebase certificates configured without a firebase project");
        return NULL;
    }
    if (cfg->leeway_s < 0 || cfg->leeway_s > AUTH_LEEWAY_MAX) {
        set_err(err, errlen, "auth leeway must be 0..%d s", AUTH_LEEWAY_MAX);
        return NULL;
    }

    auth = calloc(1, sizeof(*auth));
    if (auth == NULL)
        goto oom;
    auth->leeway_s = cfg->leeway_s ? cfg->leeway_s : AUTH_LEEWAY_DEFAULT;
    if (firebase) {
        auth->project = strdup(cfg->firebase_project);
        auth->issuer = malloc(sizeof(FIREBASE_ISS_PREFIX) + plen);
        if (auth->project == NULL || auth->issuer == NULL)
            goto oom;
        memcpy(auth->issuer, FIREBASE_ISS_PREFIX, sizeof(FIREBASE_ISS_PREFIX) - 1);
        memcpy(auth->issuer + sizeof(FIREBASE_ISS_PREFIX) - 1, cfg->firebase_project, plen + 1);
    }
    if (cfg->hs256_secret != NULL && cfg->hs256_secret[0] != '\0') {
        auth->secret_len = strlen(cfg->hs256_secret);
        if (auth->secret_len > INT_MAX) {
            set_err(err, errlen, "HS256 secret too long");
            goto fail;
        }
        auth->secret = (unsigned char *)strdup(cfg->hs256_secret);
        if (auth->secret == NULL)
            goto oom;
    }
    if (firebase && cfg->firebase_certs_path != NULL) {
        size_t len;
        char *doc = read_file(cfg->firebase_certs_path, &len, err, errlen);
        int rc;

        if (doc == NULL)
            goto fail;
        rc = auth_set_certs(auth, doc, len, err, errlen);
        free(doc);
        if (rc != 0)
            goto fail;
    }
    return auth;

oom:
    set_err(err, errlen, "out of memory");
fail:
    auth_free(auth);
    return NULL;
}

size_t auth_key_count(const auth_t *auth)
{
    return auth ? auth->nkeys : 0;
}

void auth_set_unknown_kid_cb(auth_t *auth, auth_unknown_kid_cb cb, void *arg)
{
    auth->on_unknown_kid = cb;
    auth->unknown_kid_arg = arg;
}

void auth_free(auth_t *auth)
{
    if (auth == NULL)
        return;
    if (auth->secret != NULL) {
        OPENSSL_cleanse(auth->secret, auth->secret_len);
        free(auth->secret);
    }
    keys_free(auth->keys, auth->nkeys);
    free(auth->issuer);
    free(auth->project);
    free(auth);
}

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/*
 * Strict base64url as JWS uses it: no padding, no other characters, unused
 * trailing bits zero (one text per byte string). Writes at most n * 3 / 4
 * bytes to out (NULL: only validate). Returns 0 and *outlen, or -1.
 */
static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;

    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (out != NULL)
                out[o] = (unsigned char)(acc >> bits);
            o++;
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0)
        return -1;
    *outlen = o;
    return 0;
}

/* Decodes one base64url segment holding a JSON object. NULL when it is not one. */
static json_t *segment_json(const char *seg, size_t n)
{
    unsigned char *buf;
    size_t len;
    json_t *obj;

    if (n == 0)
        return NULL;
    buf = malloc(n * 3 / 4 + 1);
    if (buf == NULL)
        return NULL;
    if (b64url_decode(seg, n, buf, &len) != 0) {
        free(buf);
        return NULL;
    }
    obj = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    if (obj != NULL && !json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* A subject we are willing to use as a uid: 1..AUTH_UID_MAX bytes, no controls. */
static bool subject_ok(const char *s, size_t len)
{
    if (len == 0 || len > AUTH_UID_MAX || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Is j a JSON string equal to s, byte for byte (a "\u0000" inside never matches)? */
static bool json_str_eq(json_t *j, const char *s)
{
    return json_is_string(j) && json_string_length(j) == strlen(s) &&
           memcmp(json_string_value(j), s, json_string_length(j)) == 0;
}

/* A NumericDate claim. NULL when present and an integer; else the reason. */
static const char *claim_time(json_t *claims, const char *name, long long *v)
{
    json_t *j = json_object_get(claims, name);

    if (j == NULL)
        return "missing_claim";
    if (!json_is_integer(j))
        return "bad_claim";
    *v = (long long)json_integer_value(j);
    return NULL;
}

/*
 * Checks a verified token's claims at now. NULL when acceptable (and *expires
 * is its exp), else the reason.
 */
static const char *check_claims(const auth_t *auth, json_t *claims, bool firebase, time_t now,
                                auth_identity_t *out, long long *expires)
{
    long long exp, iat, auth_time, nbf;
    long long lo = (long long)now - auth->leeway_s, hi = (long long)now + auth->leeway_s;
    const char *why;
    json_t *j;

    if (firebase) {
        j = json_object_get(claims, "aud");
        if (j == NULL)
            return "missing_claim";
        if (!json_str_eq(j, auth->project))
            return "wrong_audience";
        j = json_object_get(claims, "iss");
        if (j == NULL)
            return "missing_claim";
        if (!json_str_eq(j, auth->issuer))
            return "wrong_issuer";
    }
    if ((why = claim_time(claims, "exp", &exp)) != NULL ||
        (why = claim_time(claims, "iat", &iat)) != NULL)
        return why;
    if (exp <= lo)
        return "expired";
    if (iat > hi)
        return "issued_in_future";
    if (firebase) {
        if ((why = claim_time(claims, "auth_time", &auth_time)) != NULL)
            return why;
        if (auth_time > hi)
            return "auth_time_in_future";
    }
    /* Firebase sends no nbf; honour it when someone does (RFC 7519 4.1.5). */
    if (json_object_get(claims, "nbf") != NULL) {
        if ((why = claim_time(claims, "nbf", &nbf)) != NULL)
            return why;
        if (nbf > hi)
            return "not_yet_valid";
    }
    j = json_object_get(claims, "sub");
    if (j == NULL)
        return "missing_claim";
    if (!json_is_string(j) || !subject_ok(json_string_value(j), json_string_length(j)))
        return "bad_subject";

    memset(out, 0, sizeof(*out));
    memcpy(out->uid, json_string_value(j), json_string_length(j));
    out->admin = json_is_true(json_object_get(claims, "admin"));
    *expires = exp;
    return NULL;
}

int auth_verify(const auth_t *auth, const char *token, time_t now, auth_identity_t *out,
                const char **why)
{
    return auth_verify_until(auth, token, now, out, NULL, why);
}

bool auth_still_valid(const auth_t *auth, const auth_validity_t *valid, time_t now)
{
    return auth && valid && (long long)now < valid->until && valid->keys == auth->keys_generation;
}

int auth_verify_until(const auth_t *auth, const char *token, time_t now, auth_identity_t *out,
                      auth_validity_t *valid, const char **why)
{
    const char *reason = "malformed", *dot1, *dot2, *alg, *typ;
    long long exp = 0;
    const unsigned char *key = NULL;
    size_t len, key_len = 0, siglen;
    json_t *hdr = NULL, *claims = NULL, *kid;
    jwt_t *jwt = NULL;
    jwt_alg_t pinned;
    bool firebase = false;
    int rc;

    if (auth == NULL || token == NULL || out == NULL)
        goto fail;
    len = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (len == 0 || len > AUTH_TOKEN_MAX)
        goto fail;

    /* Exactly three segments; all of them non-empty (alg none is never allowed). */
    dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        goto fail;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        goto fail;
    hdr = segment_json(token, (size_t)(dot1 - token));
    claims = segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (hdr == NULL || claims == NULL)
        goto fail;

    alg = json_string_value(json_object_get(hdr, "alg"));
    if (alg == NULL)
        goto fail;
    /* We understand no JWS extensions, so a critical one must fail (RFC 7515 4.1.11). */
    if (json_object_get(hdr, "crit") != NULL)
        goto fail;
    /* libjwt refuses a typ other than JWT; say so here rather than as a bad signature. */
    if (json_object_get(hdr, "typ") != NULL) {
        typ = json_string_value(json_object_get(hdr, "typ"));
        if (typ == NULL || strcasecmp(typ, "JWT") != 0)
            goto fail;
    }

    /* The key comes from (alg, kid) and our tables only; each key has one alg. */
    if (strcmp(alg, "RS256") == 0 && auth->project != NULL) {
        kid = json_object_get(hdr, "kid");
        if (kid == NULL) {
            reason = "missing_kid";
            goto fail;
        }
        if (!json_is_string(kid))
            goto fail;
        reason = "unknown_kid";
        for (size_t i = 0; i < auth->nkeys; i++) {
            if (json_str_eq(kid, auth->keys[i].kid)) {
                key = (const unsigned char *)auth->keys[i].pem;
                key_len = auth->keys[i].pem_len;
                break;
            }
        }
        if (key == NULL) {
            if (auth->on_unknown_kid != NULL)
                auth->on_unknown_kid(auth->unknown_kid_arg);
            goto fail;
        }
        pinned = JWT_ALG_RS256;
        firebase = true;
    } else if (strcmp(alg, "HS256") == 0 && auth->secret != NULL) {
        key = auth->secret;
        key_len = auth->secret_len;
        pinned = JWT_ALG_HS256;
    } else {
        reason = "alg_not_allowed";
        goto fail;
    }

    reason = "malformed";
    if (b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token), NULL, &siglen) != 0 ||
        siglen == 0)
        goto fail;

    /* Never reached with key == NULL or key_len == 0: libjwt would skip the check. */
    if (key == NULL || key_len == 0 || key_len > INT_MAX) {
        reason = "internal";
        goto fail;
    }
    rc = jwt_decode(&jwt, token, key, (int)key_len);
    if (rc != 0) {
        jwt = NULL;
        reason = rc == ENOMEM ? "internal" : "bad_signature";
        goto fail;
    }
    if (jwt_get_alg(jwt) != pinned) {
        reason = "alg_not_allowed";
        goto fail;
    }

    reason = check_claims(auth, claims, firebase, now, out, &exp);
    if (reason != NULL)
        goto fail;
    if (valid != NULL) {
        /* refused once exp <= now - leeway (check_claims); exp is far from LLONG_MAX there */
        valid->until = exp > LLONG_MAX - auth->leeway_s ? LLONG_MAX : exp + auth->leeway_s;
        valid->keys = auth->keys_generation;
    }

    jwt_free(jwt);
    json_decref(claims);
    json_decref(hdr);
    ERR_clear_error();
    if (why != NULL)
        *why = NULL;
    return 0;

fail:
    if (jwt != NULL)
        jwt_free(jwt);
    json_decref(claims);
    json_decref(hdr);
    ERR_clear_error();
    if (why != NULL)
        *why = reason;
    return -1;
}

char *auth_mint_hs256(const char *secret, const char *uid, bool admin, time_t now, int ttl_s)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    size_t slen;

    if (secret == NULL || uid == NULL || ttl_s <= 0 || now < 0 ||
        (long long)now > (long long)LONG_MAX - ttl_s)
        return NULL;
    slen = strlen(secret);
    if (slen == 0 || slen > INT_MAX || !subject_ok(uid, strlen(uid)))
        return NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_add_grant(jwt, "sub", uid) != 0 || jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
        jwt_add_grant_int(jwt, "exp", (long)now + ttl_s) != 0)
        goto done;
    if (admin && jwt_add_grant_bool(jwt, "admin", 1) != 0)
        goto done;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)slen) != 0)
        goto done;
    /* libjwt 1.10 has no jwt_free_str: its strings come from malloc, free() them. */
    token = jwt_encode_str(jwt);
done:
    jwt_free(jwt);
    ERR_clear_error();
    return token;
}
