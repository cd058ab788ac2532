/*
 * test_auth: Firebase RS256 and dev HS256 token verification.
 *
 * The test makes its own RSA keys and self-signed certificates (Google's
 * kid -> PEM certificate JSON) and signs every token by hand, so that each
 * byte of header, payload and signature is under its control: libjwt is only
 * ever the thing under test, never the thing that makes the attack tokens.
 */
#include "auth.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define PROJECT "retronova-test"
#define ISSUER "https://securetoken.google.com/" PROJECT
#define DEV_SECRET "dev-secret-0123456789abcdef-0123456789"
#define NOW ((time_t)1700000000)


static void die(const char *what)
{
    fprintf(stderr, "fatal: %s\n", what);
    exit(2);
}

/* ---- keys and certificates ------------------------------------------------ */

static EVP_PKEY *rsa_key(unsigned bits)
{
    EVP_PKEY *k = EVP_RSA_gen(bits);
    if (k == NULL)
        die("EVP_RSA_gen");
    return k;
}

static char *bio_string(BIO *b)
{
    char *data, *s;
    long n = BIO_get_mem_data(b, &data);

    s = malloc((size_t)n + 1);
    if (s == NULL)
        die("malloc");
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

/* A self-signed X.509 certificate for k, as PEM. */
static char *cert_pem(EVP_PKEY *k)
{
    X509 *x = X509_new();
    X509_NAME *name;
    BIO *b = BIO_new(BIO_s_mem());
    char *s;

    if (x == NULL || b == NULL)
        die("X509_new");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"securetoken.system.gserviceaccount.com", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    if (X509_sign(x, k, EVP_sha256()) == 0 || PEM_write_bio_X509(b, x) != 1)
        die("X509_sign");
    s = bio_string(b);
    BIO_free(b);
    X509_free(x);
    return s;
}

/* The public key of k as "BEGIN PUBLIC KEY" PEM: what an attacker can get. */
static char *pubkey_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s;

    if (b == NULL || PEM_write_bio_PUBKEY(b, k) != 1)
        die("PEM_write_bio_PUBKEY");
    s = bio_string(b);
    BIO_free(b);
    return s;
}

/* {"kid": "<pem>", ...} for n (kid, pem) pairs. */
static char *certs_json(int n, const char *kid1, const char *pem1, const char *kid2,
                        const char *pem2)
{
    json_t *o = json_object();
    char *s;

    json_object_set_new(o, kid1, json_string(pem1));
    if (n > 1)
        json_object_set_new(o, kid2, json_string(pem2));
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        die("json_dumps");
    return s;
}

/* ---- token building ------------------------------------------------------- */

static char *b64url(const void *data, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *d = data;
    char *out = malloc(n * 4 / 3 + 4), *o = out;
    size_t i;

    if (out == NULL)
        die("malloc");
    for (i = 0; i + 2 < n; i += 3) {
        *o++ = tbl[d[i] >> 2];
        *o++ = tbl[(d[i] & 3) << 4 | d[i + 1] >> 4];
        *o++ = tbl[(d[i + 1] & 15) << 2 | d[i + 2] >> 6];
        *o++ = tbl[d[i + 2] & 63];
    }
    if (n - i == 1) {
        *o++ = tbl[d[i] >> 2];
        *o++ = tbl[(d[i] & 3) << 4];
    } else if (n - i == 2) {
        *o++ = tbl[d[i] >> 2];
        *o++ = tbl[(d[i] & 3) << 4 | d[i + 1] >> 4];
        *o++ = tbl[(d[i + 1] & 15) << 2];
    }
    *o = '\0';
    return out;
}

/* base64url(header) "." base64url(payload), malloc'd. */
static char *signing_input(const char *header, const char *payload)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    char *s = malloc(strlen(h) + strlen(p) + 2);

    if (s == NULL)
        die("malloc");
    sprintf(s, "%s.%s", h, p);
    free(h);
    free(p);
    return s;
}

static char *join3(const char *input, const char *sig)
{
    char *s = malloc(strlen(input) + strlen(sig) + 2);

    if (s == NULL)
        die("malloc");
    sprintf(s, "%s.%s", input, sig);
    return s;
}

/* RS256 signature (base64url) of input with k. */
static char *sig_rs256(EVP_PKEY *k, const char *input)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);

    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1)
        die("EVP_DigestSign");
    EVP_MD_CTX_free(ctx);
    return b64url(sig, siglen);
}

/* HS256 signature (base64url) of input with key. */
static char *sig_hs256(const void *key, size_t keylen, const char *input)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)input, strlen(input), mac,
             &maclen) == NULL)
        die("HMAC");
    return b64url(mac, maclen);
}

static char *tok_rs256(EVP_PKEY *k, const char *header, const char *payload)
{
    char *in = signing_input(header, payload), *sig = sig_rs256(k, in), *t = join3(in, sig);

    free(in);
    free(sig);
    return t;
}

static char *tok_hs256(const char *key, const char *header, const char *payload)
{
    char *in = signing_input(header, payload), *sig = sig_hs256(key, strlen(key), in);
    char *t = join3(in, sig);

    free(in);
    free(sig);
    return t;
}

/* Good Firebase claims at NOW; callers change one thing. */
static json_t *fb_claims(void)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "iss", ISSUER, "aud", PROJECT, "sub",
                     "uid-alice", "iat", (json_int_t)(NOW - 100), "exp", (json_int_t)(NOW + 3500),
                     "auth_time", (json_int_t)(NOW - 200), "email", "alice@example.com");
}

static json_t *dev_claims(void)
{
    return json_pack("{s:s, s:I, s:I}", "sub", "dev-bob", "iat", (json_int_t)(NOW - 10), "exp",
                     (json_int_t)(NOW + 600));
}

/* Dumps and frees claims. */
static char *dump(json_t *claims)
{
    char *s = json_dumps(claims, JSON_COMPACT);

    json_decref(claims);
    if (s == NULL)
        die("json_dumps");
    return s;
}

#define HDR_RS256_KID1 "{\"alg\":\"RS256\",\"kid\":\"kid1\",\"typ\":\"JWT\"}"
#define HDR_HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* A Firebase token signed by k under kid1 carrying claims (consumed). */
static char *fb_token(EVP_PKEY *k, json_t *claims)
{
    char *p = dump(claims), *t = tok_rs256(k, HDR_RS256_KID1, p);

    free(p);
    return t;
}

static char *dev_token(const char *secret, json_t *claims)
{
    char *p = dump(claims), *t = tok_hs256(secret, HDR_HS256, p);

    free(p);
    return t;
}

/* ---- expectations --------------------------------------------------------- */

static void expect_ok(const auth_t *a, const char *tok, time_t now, const char *uid, bool admin,
                      const char *what)
{
    auth_identity_t id;
    const char *why = "unset";
    int rc;

    memset(&id, 0x55, sizeof(id));
    rc = auth_verify(a, tok, now, &id, &why);
    if (rc == 0 && strcmp(id.uid, uid) == 0 && id.admin == admin) {
        check_passed++;
        return;
    }
    check_failed++;
    fprintf(stderr, "FAIL %s: rc=%d why=%s uid=%.*s admin=%d\n", what, rc, why ? why : "(null)",
            rc == 0 ? AUTH_UID_MAX : 0, id.uid, rc == 0 ? id.admin : -1);
}

static void expect_fail(const auth_t *a, const char *tok, time_t now, const char *reason,
                        const char *what)
{
    auth_identity_t id;
    const char *why = NULL;
    int rc = auth_verify(a, tok, now, &id, &why);

    if (rc == -1 && why != NULL && (reason == NULL || strcmp(why, reason) == 0)) {
        check_passed++;
        return;
    }
    check_failed++;
    fprintf(stderr, "FAIL %s: rc=%d why=%s (want %s)\n", what, rc, why ? why : "(null)",
            reason ? reason : "any reason");
}

/* ---- fixtures ------------------------------------------------------------- */

static EVP_PKEY *key1, *key2;
static char *cert1, *cert2, *pub1;
static char *certs1; /* {"kid1": cert1} */

static auth_t *make_auth(const char *project, const char *secret, int leeway, const char *certs)
{
    auth_config_t cfg = {.firebase_project = project, .hs256_secret = secret, .leeway_s = leeway};
    char err[256] = "";
    auth_t *a = auth_new(&cfg, err, sizeof(err));

    if (a == NULL) {
        fprintf(stderr, "auth_new: %s\n", err);
        die("auth_new");
    }
    if (certs != NULL && auth_set_certs(a, certs, strlen(certs), err, sizeof(err)) != 0) {
        fprintf(stderr, "auth_set_certs: %s\n", err);
        die("auth_set_certs");
    }
    return a;
}

/* ---- Firebase ------------------------------------------------------------- */

static void test_firebase(void)
{
    auth_t *fb = make_auth(PROJECT, NULL, 0, certs1);
    json_t *c;
    char *t;
    char sub129[130], sub128[129];

    t = fb_token(key1, fb_claims());
    expect_ok(fb, t, NOW, "uid-alice", false, "good Firebase token");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "admin", json_true());
    t = fb_token(key1, c);
    expect_ok(fb, t, NOW, "uid-alice", true, "Firebase token with admin: true");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "admin", json_string("true"));
    t = fb_token(key1, c);
    expect_ok(fb, t, NOW, "uid-alice", false, "admin: \"true\" (a string) is not admin");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "admin", json_integer(1));
    t = fb_token(key1, c);
    expect_ok(fb, t, NOW, "uid-alice", false, "admin: 1 is not admin");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 3600));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "expired", "expired");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "aud", json_string("other-project"));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "wrong_audience", "wrong aud");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "aud", json_pack("[s]", PROJECT));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "wrong_audience", "aud as an array");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "aud", json_stringn(PROJECT "\0x", sizeof(PROJECT) + 1));
    t = fb_token(key1, c);
    /* jansson refuses "\u0000" unless asked (JSON_ALLOW_NUL): the payload is malformed. */
    expect_fail(fb, t, NOW, "malformed", "aud with a NUL and a tail");
    free(t);

    c = fb_claims();
    json_object_del(c, "aud");
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "missing_claim", "missing aud");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "iss", json_string("https://securetoken.google.com/other-project"));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "wrong_issuer", "wrong iss");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "iss", json_string("https://accounts.google.com"));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "wrong_issuer", "Google accounts iss");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "iat", json_integer(NOW + 3600));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "issued_in_future", "future iat");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "auth_time", json_integer(NOW + 3600));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "auth_time_in_future", "future auth_time");
    free(t);

    c = fb_claims();
    json_object_del(c, "auth_time");
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "missing_claim", "missing auth_time");
    free(t);

    c = fb_claims();
    json_object_del(c, "exp");
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "missing_claim", "missing exp");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "exp", json_string("9999999999"));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "bad_claim", "exp as a string");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "nbf", json_integer(NOW + 3600));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "not_yet_valid", "future nbf");
    free(t);

    /* Subjects. */
    c = fb_claims();
    json_object_set_new(c, "sub", json_string(""));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "bad_subject", "empty sub");
    free(t);

    memset(sub129, 'a', 129);
    sub129[129] = '\0';
    c = fb_claims();
    json_object_set_new(c, "sub", json_string(sub129));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "bad_subject", "129-byte sub");
    free(t);

    memset(sub128, 'b', 128);
    sub128[128] = '\0';
    c = fb_claims();
    json_object_set_new(c, "sub", json_string(sub128));
    t = fb_token(key1, c);
    expect_ok(fb, t, NOW, sub128, false, "128-byte sub accepted");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "sub", json_integer(42));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "bad_subject", "numeric sub");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "sub", json_stringn("ab\0cd", 5));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "malformed", "sub with a NUL");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "sub", json_string("a\nb"));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "bad_subject", "sub with a newline");
    free(t);

    c = fb_claims();
    json_object_del(c, "sub");
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "missing_claim", "missing sub");
    free(t);

    /* Leeway (60 s by default). */
    c = fb_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 30));
    t = fb_token(key1, c);
    expect_ok(fb, t, NOW, "uid-alice", false, "exp 30 s ago accepted (leeway)");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 90));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "expired", "exp 90 s ago refused");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "iat", json_integer(NOW + 30));
    json_object_set_new(c, "auth_time", json_integer(NOW + 30));
    t = fb_token(key1, c);
    expect_ok(fb, t, NOW, "uid-alice", false, "iat / auth_time 30 s ahead accepted (leeway)");
    free(t);

    c = fb_claims();
    json_object_set_new(c, "auth_time", json_integer(NOW + 90));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "auth_time_in_future", "auth_time 90 s ahead refused");
    free(t);

    auth_free(fb);

    /* A configured leeway replaces the default. */
    fb = make_auth(PROJECT, NULL, 10, certs1);
    c = fb_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 30));
    t = fb_token(key1, c);
    expect_fail(fb, t, NOW, "expired", "exp 30 s ago refused with a 10 s leeway");
    free(t);
    auth_free(fb);
}

/* ---- algorithms, keys, signatures ----------------------------------------- */

static void test_keys_and_algs(void)
{
    auth_t *fb = make_auth(PROJECT, NULL, 0, certs1);
    auth_t *both = make_auth(PROJECT, DEV_SECRET, 0, certs1);
    char *p = dump(fb_claims()), *p2, *in, *sig, *t, *t2;
    const auth_t *each[2] = {fb, both};

    /* Signed by another key under kid1. */
    t = tok_rs256(key2, HDR_RS256_KID1, p);
    expect_fail(fb, t, NOW, "bad_signature", "RS256 signed by the wrong key");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS256\",\"kid\":\"kid9\",\"typ\":\"JWT\"}", p);
    expect_fail(fb, t, NOW, "unknown_kid", "unknown kid");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", p);
    expect_fail(fb, t, NOW, "missing_kid", "missing kid");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS256\",\"kid\":7}", p);
    expect_fail(fb, t, NOW, "malformed", "numeric kid");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS256\",\"kid\":\"kid1\"}", p);
    expect_ok(fb, t, NOW, "uid-alice", false, "RS256 without typ accepted");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS256\",\"kid\":\"kid1\",\"typ\":\"JOSE+JSON\"}", p);
    expect_fail(fb, t, NOW, "malformed", "typ other than JWT");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS256\",\"kid\":\"kid1\",\"crit\":[\"exp\"],\"exp\":1}", p);
    expect_fail(fb, t, NOW, "malformed", "crit header");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS256\",\"kid\":\"kid9\",\"kid\":\"kid1\"}", p);
    expect_fail(fb, t, NOW, "malformed", "duplicate kid in header");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"HS256\",\"alg\":\"RS256\",\"kid\":\"kid1\"}", p);
    expect_fail(both, t, NOW, "malformed", "duplicate alg in header");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"RS384\",\"kid\":\"kid1\"}", p);
    expect_fail(fb, t, NOW, "alg_not_allowed", "RS384");
    free(t);

    t = tok_rs256(key1, "{\"alg\":\"rs256\",\"kid\":\"kid1\"}", p);
    expect_fail(fb, t, NOW, "alg_not_allowed", "lower-case rs256");
    free(t);

    t = tok_rs256(key1, "{\"kid\":\"kid1\"}", p);
    expect_fail(fb, t, NOW, "malformed", "no alg");
    free(t);

    /* Duplicate claims in the payload: signed, yet refused. */
    p2 = malloc(strlen(p) + 32);
    sprintf(p2, "{\"sub\":\"mallory\",%s", p + 1);
    t = tok_rs256(key1, HDR_RS256_KID1, p2);
    expect_fail(fb, t, NOW, "malformed", "duplicate sub in payload");
    free(t);
    free(p2);

    /* alg none, with an empty signature and with a real one. */
    for (int i = 0; i < 2; i++) {
        const auth_t *a = each[i];

        in = signing_input("{\"alg\":\"none\",\"typ\":\"JWT\"}", p);
        t = join3(in, "");
        expect_fail(a, t, NOW, "alg_not_allowed", "alg none, empty signature");
        free(t);
        sig = sig_rs256(key1, in);
        t = join3(in, sig);
        expect_fail(a, t, NOW, "alg_not_allowed", "alg none, with a signature");
        free(t);
        free(sig);
        free(in);

        in = signing_input("{\"alg\":\"none\",\"kid\":\"kid1\"}", p);
        t = join3(in, "");
        expect_fail(a, t, NOW, "alg_not_allowed", "alg none with kid1");
        free(t);
        free(in);

        in = signing_input("{\"alg\":\"None\"}", p);
        t = join3(in, "");
        expect_fail(a, t, NOW, "alg_not_allowed", "alg None");
        free(t);
        free(in);
    }

    /* Key confusion: HS256 with the RSA public key (SPKI PEM or certificate PEM) as secret. */
    t = tok_hs256(pub1, "{\"alg\":\"HS256\",\"kid\":\"kid1\",\"typ\":\"JWT\"}", p);
    expect_fail(fb, t, NOW, "alg_not_allowed", "HS256 with public PEM, no dev secret");
    expect_fail(both, t, NOW, "bad_signature", "HS256 with public PEM, dev secret set");
    free(t);
    t = tok_hs256(pub1, HDR_HS256, p);
    expect_fail(fb, t, NOW, "alg_not_allowed", "HS256 (no kid) with public PEM, no secret");
    expect_fail(both, t, NOW, "bad_signature", "HS256 (no kid) with public PEM, secret set");
    free(t);
    t = tok_hs256(cert1, "{\"alg\":\"HS256\",\"kid\":\"kid1\"}", p);
    expect_fail(fb, t, NOW, "alg_not_allowed", "HS256 with certificate PEM, no dev secret");
    expect_fail(both, t, NOW, "bad_signature", "HS256 with certificate PEM, dev secret set");
    free(t);

    /* Tampered payload: a valid signature of another payload. */
    t = tok_rs256(key1, HDR_RS256_KID1, p);
    {
        json_t *c = fb_claims();
        char *evil, *evil_in, *dot2 = strrchr(t, '.');

        json_object_set_new(c, "admin", json_true());
        evil = dump(c);
        evil_in = signing_input(HDR_RS256_KID1, evil);
        t2 = join3(evil_in, dot2 + 1);
        expect_fail(fb, t2, NOW, "bad_signature", "tampered payload");
        free(t2);
        free(evil_in);
        free(evil);
    }
    /* One flipped signature character. */
    t2 = strdup(t);
    {
        char *last = t2 + strlen(t2) - 3;
        *last = *last == 'A' ? 'B' : 'A';
    }
    expect_fail(fb, t2, NOW, "bad_signature", "flipped signature char");
    free(t2);
    /* Signature truncated, dropped, or with a stray '=' padding. */
    t2 = strdup(t);
    strrchr(t2, '.')[1] = '\0';
    expect_fail(fb, t2, NOW, "malformed", "empty signature");
    free(t2);
    t2 = malloc(strlen(t) + 2);
    sprintf(t2, "%s=", t);
    expect_fail(fb, t2, NOW, "malformed", "padded signature");
    free(t2);
    free(t);

    /* RS256 tokens when no project is configured: Firebase off. */
    {
        auth_t *dev = make_auth(NULL, DEV_SECRET, 0, NULL);

        t = tok_rs256(key1, HDR_RS256_KID1, p);
        expect_fail(dev, t, NOW, "alg_not_allowed", "RS256 with Firebase not configured");
        free(t);
        auth_free(dev);
    }

    /* Project set but no certificates loaded yet. */
    {
        auth_t *nokeys = make_auth(PROJECT, NULL, 0, NULL);

        t = tok_rs256(key1, HDR_RS256_KID1, p);
        expect_fail(nokeys, t, NOW, "unknown_kid", "RS256 with no keys loaded");
        free(t);
        auth_free(nokeys);
    }

    free(p);
    auth_free(both);
    auth_free(fb);
}

/* ---- key rotation and certificate documents ------------------------------- */

static void test_certs(void)
{
    auth_t *fb = make_auth(PROJECT, NULL, 0, certs1);
    char err[256];
    char *two = certs_json(2, "kid1", cert1, "kid2", cert2);
    char *only2 = certs_json(1, "kid2", cert2, NULL, NULL);
    char *t1 = fb_token(key1, fb_claims()), *t2, *p = dump(fb_claims()), *s;
    EVP_PKEY *small, *ec;
    char *small_cert, *ec_cert;

    t2 = tok_rs256(key2, "{\"alg\":\"RS256\",\"kid\":\"kid2\"}", p);
    expect_fail(fb, t2, NOW, "unknown_kid", "kid2 before rotation");

    CHECK(auth_set_certs(fb, two, strlen(two), err, sizeof(err)) == 0, "two keys load");
    expect_ok(fb, t1, NOW, "uid-alice", false, "kid1 after loading two keys");
    expect_ok(fb, t2, NOW, "uid-alice", false, "kid2 after loading two keys");
    s = tok_rs256(key2, HDR_RS256_KID1, p);
    expect_fail(fb, s, NOW, "bad_signature", "key2 signature under kid1");
    free(s);

    CHECK(auth_set_certs(fb, only2, strlen(only2), err, sizeof(err)) == 0, "rotation loads");
    expect_fail(fb, t1, NOW, "unknown_kid", "kid1 gone after rotation");
    expect_ok(fb, t2, NOW, "uid-alice", false, "kid2 after rotation");

    /* Bad documents: refused with a message, old keys kept. */
    small = rsa_key(1024);
    small_cert = cert_pem(small);
    ec = EVP_EC_gen("P-256");
    if (ec == NULL)
        die("EVP_EC_gen");
    ec_cert = cert_pem(ec);
    {
        char *dup = malloc(2 * strlen(only2) + 8);
        char *small_doc = certs_json(1, "kid3", small_cert, NULL, NULL);
        char *ec_doc = certs_json(1, "kid3", ec_cert, NULL, NULL);
        char *mixed = certs_json(2, "kid1", cert1, "kid3", "not a certificate");
        char *pubdoc = certs_json(1, "kid1", pub1, NULL, NULL);
        const char *bad[] = {"",
                             "{",
                             "[]",
                             "\"x\"",
                             "{}",
                             "{\"kid1\": 5}",
                             "{\"kid1\": null}",
                             "{\"kid1\": \"not a pem\"}",
                             "{\"\": \"x\"}",
                             "{\"kid1\": \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END "
                             "CERTIFICATE-----\\n\"}",
                             dup,
                             small_doc,
                             ec_doc,
                             mixed,
                             pubdoc};

        /* The same kid twice: {"kid2": ..., "kid2": ...}. */
        sprintf(dup, "%.*s,%s", (int)strlen(only2) - 1, only2, only2 + 1);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            err[0] = '\0';
            if (auth_set_certs(fb, bad[i], strlen(bad[i]), err, sizeof(err)) == -1 &&
                err[0] != '\0') {
                check_passed++;
            } else {
                check_failed++;
                fprintf(stderr, "FAIL bad certificate document %zu accepted\n", i);
            }
        }
        CHECK(auth_set_certs(fb, NULL, 0, err, sizeof(err)) == -1, "NULL document refused");
        expect_ok(fb, t2, NOW, "uid-alice", false, "old keys kept after refused documents");
        expect_fail(fb, t1, NOW, "unknown_kid", "kid1 still absent after refused 'mixed'");
        free(pubdoc);
        free(mixed);
        free(ec_doc);
        free(small_doc);
        free(dup);
    }
    free(ec_cert);
    free(small_cert);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(small);

    free(p);
    free(t2);
    free(t1);
    free(only2);
    free(two);
    auth_free(fb);
}

static char *write_temp(const char *content)
{
    char *path = strdup("/tmp/test_auth_certs_XXXXXX");
    int fd = mkstemp(path);
    size_t len = strlen(content);

    if (fd < 0 || write(fd, content, len) != (ssize_t)len)
        die("mkstemp/write");
    close(fd);
    return path;
}

static void test_config(void)
{
    char err[256];
    char *good = write_temp(certs1), *bad = write_temp("{\"kid1\": \"nope\"");
    auth_config_t cfg = {.firebase_project = PROJECT, .firebase_certs_path = good};
    auth_t *a;
    char *t = fb_token(key1, fb_claims());

    a = auth_new(&cfg, err, sizeof(err));
    CHECK(a != NULL, "auth_new reads a certificate file");
    if (a != NULL)
        expect_ok(a, t, NOW, "uid-alice", false, "token verifies with keys from the file");
    auth_free(a);

    cfg.firebase_certs_path = bad;
    err[0] = '\0';
    a = auth_new(&cfg, err, sizeof(err));
    CHECK(a == NULL && err[0] != '\0', "auth_new refuses a malformed certificate file");
    auth_free(a);

    cfg.firebase_certs_path = "/nonexistent/certs.json";
    err[0] = '\0';
    a = auth_new(&cfg, err, sizeof(err));
    CHECK(a == NULL && err[0] != '\0', "auth_new refuses a missing certificate file");

    cfg.firebase_project = NULL;
    cfg.firebase_certs_path = good;
    err[0] = '\0';
    a = auth_new(&cfg, err, sizeof(err));
    CHECK(a == NULL && err[0] != '\0', "certificates without a project refused");

    cfg.firebase_project = PROJECT;
    cfg.leeway_s = -1;
    a = auth_new(&cfg, err, sizeof(err));
    CHECK(a == NULL, "negative leeway refused");

    CHECK(auth_new(NULL, err, sizeof(err)) == NULL, "NULL config refused");
    auth_free(NULL);

    /* Everything off: every token refused. */
    {
        auth_config_t off = {0};
        char *d = dev_token(DEV_SECRET, dev_claims());

        a = auth_new(&off, err, sizeof(err));
        CHECK(a != NULL, "auth_new with nothing configured");
        expect_fail(a, t, NOW, "alg_not_allowed", "RS256 with nothing configured");
        expect_fail(a, d, NOW, "alg_not_allowed", "HS256 with nothing configured");
        auth_free(a);
        free(d);
    }

    free(t);
    unlink(good);
    unlink(bad);
    free(good);
    free(bad);
}

/* ---- HS256 dev tokens ----------------------------------------------------- */

static void test_dev(void)
{
    auth_t *dev = make_auth(NULL, DEV_SECRET, 0, NULL);
    auth_t *fb = make_auth(PROJECT, NULL, 0, certs1);
    auth_t *empty = make_auth(PROJECT, "", 0, certs1);
    json_t *c;
    char *t;

    t = dev_token(DEV_SECRET, dev_claims());
    expect_ok(dev, t, NOW, "dev-bob", false, "good HS256 dev token with a secret");
    expect_fail(fb, t, NOW, "alg_not_allowed", "HS256 dev token without a secret");
    expect_fail(empty, t, NOW, "alg_not_allowed", "HS256 dev token with an empty secret");
    free(t);

    t = dev_token("another-secret", dev_claims());
    expect_fail(dev, t, NOW, "bad_signature", "HS256 with the wrong secret");
    free(t);

    t = tok_hs256(DEV_SECRET, "{\"alg\":\"HS384\"}", "{\"sub\":\"x\",\"iat\":1,\"exp\":2}");
    expect_fail(dev, t, NOW, "alg_not_allowed", "HS384");
    free(t);

    c = dev_claims();
    json_object_del(c, "exp");
    t = dev_token(DEV_SECRET, c);
    expect_fail(dev, t, NOW, "missing_claim", "HS256 without exp");
    free(t);

    c = dev_claims();
    json_object_del(c, "iat");
    t = dev_token(DEV_SECRET, c);
    expect_fail(dev, t, NOW, "missing_claim", "HS256 without iat");
    free(t);

    c = dev_claims();
    json_object_del(c, "sub");
    t = dev_token(DEV_SECRET, c);
    expect_fail(dev, t, NOW, "missing_claim", "HS256 without sub");
    free(t);

    c = dev_claims();
    json_object_set_new(c, "exp", json_integer(NOW - 120));
    t = dev_token(DEV_SECRET, c);
    expect_fail(dev, t, NOW, "expired", "expired HS256");
    free(t);

    c = dev_claims();
    json_object_set_new(c, "admin", json_true());
    t = dev_token(DEV_SECRET, c);
    expect_ok(dev, t, NOW, "dev-bob", true, "HS256 admin");
    free(t);

    /* Minted tokens. */
    t = auth_mint_hs256(DEV_SECRET, "minted-user", false, NOW, 300);
    CHECK(t != NULL, "auth_mint_hs256");
    if (t != NULL) {
        expect_ok(dev, t, NOW, "minted-user", false, "minted token verifies");
        expect_ok(dev, t, NOW + 299, "minted-user", false, "minted token near its end");
        expect_fail(dev, t, NOW + 300 + 61, "expired", "minted token after ttl + leeway");
        expect_fail(fb, t, NOW, "alg_not_allowed", "minted token without a secret");
        free(t);
    }
    t = auth_mint_hs256(DEV_SECRET, "minted-admin", true, NOW, 300);
    CHECK(t != NULL, "auth_mint_hs256 admin");
    if (t != NULL) {
        expect_ok(dev, t, NOW, "minted-admin", true, "minted admin token verifies");
        free(t);
    }
    t = auth_mint_hs256("other-secret", "minted-user", false, NOW, 300);
    if (t != NULL) {
        expect_fail(dev, t, NOW, "bad_signature", "minted with another secret");
        free(t);
    }
    CHECK(auth_mint_hs256("", "u", false, NOW, 300) == NULL, "mint with empty secret refused");
    CHECK(auth_mint_hs256(NULL, "u", false, NOW, 300) == NULL, "mint with NULL secret refused");
    CHECK(auth_mint_hs256(DEV_SECRET, "", false, NOW, 300) == NULL, "mint with empty uid refused");
    CHECK(auth_mint_hs256(DEV_SECRET, "u", false, NOW, 0) == NULL, "mint with ttl 0 refused");
    {
        char longuid[200];

        memset(longuid, 'u', 129);
        longuid[129] = '\0';
        CHECK(auth_mint_hs256(DEV_SECRET, longuid, false, NOW, 300) == NULL,
              "mint with 129-byte uid refused");
    }

    auth_free(empty);
    auth_free(fb);
    auth_free(dev);
}

/* ---- garbage -------------------------------------------------------------- */

static void test_garbage(void)
{
    auth_t *both = make_auth(PROJECT, DEV_SECRET, 0, certs1);
    auth_identity_t id;
    const char *why;
    static const char *const junk[] = {
        "",
        "a",
        "a.b",
        "a.b.c",
        "...",
        "..",
        ".",
        "a..c",
        "Bearer x.y.z",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "eyJhbGciOiJIUzI1NiJ9.e30.x",
        "eyJhbGciOiJIUzI1NiJ9.e30.xx.yy",
        "e30.e30.AAAA",
        "W10.e30.AAAA",
        "bnVsbA.e30.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.W10.AAAA",
        "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e30.AA+/",
        " eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
        "\xff\xfe.\x80.\x01",
    };
    size_t big = 1 << 20;
    char *huge = malloc(big + 1);
    char *p = dump(fb_claims()), *in, *t;

    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        why = NULL;
        if (auth_verify(both, junk[i], NOW, &id, &why) == -1 && why != NULL) {
            check_passed++;
        } else {
            check_failed++;
            fprintf(stderr, "FAIL junk token %zu accepted\n", i);
        }
    }

    if (huge == NULL)
        die("malloc");
    memset(huge, 'a', big);
    huge[big] = '\0';
    expect_fail(both, huge, NOW, "malformed", "1 MiB of 'a'");
    huge[1000] = '.';
    huge[2000] = '.';
    expect_fail(both, huge, NOW, "malformed", "1 MiB with two dots");
    free(huge);

    /* A real, validly signed token just over the 8 KiB cap. */
    {
        json_t *c = fb_claims();
        char pad[7000];

        memset(pad, 'p', sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = '\0';
        json_object_set_new(c, "padding", json_string(pad));
        t = fb_token(key1, c);
        CHECK(strlen(t) > 8192, "big token is over the cap");
        expect_fail(both, t, NOW, "malformed", "token over 8 KiB refused");
        free(t);
    }

    /* header.payload of a real token, the signature segment dropped. */
    in = signing_input(HDR_RS256_KID1, p);
    expect_fail(both, in, NOW, "malformed", "two segments only");
    free(in);

    CHECK(auth_verify(both, NULL, NOW, &id, &why) == -1, "NULL token refused");
    CHECK(auth_verify(NULL, "a.b.c", NOW, &id, &why) == -1, "NULL auth refused");
    t = fb_token(key1, fb_claims());
    CHECK(auth_verify(both, t, NOW, &id, NULL) == 0, "why may be NULL");
    free(t);

    free(p);
    auth_free(both);
}

/* ---- the unknown-kid hook (firebase_keys.c refetches from it) ---- */

static int unknown_kid_calls;

static void on_unknown_kid(void *arg)
{
    CHECK(arg == &unknown_kid_calls, "the hook gets its argument");
    unknown_kid_calls++;
}

static void test_unknown_kid_hook(void)
{
    auth_t *fb = make_auth(PROJECT, DEV_SECRET, 0, certs1);
    char *p = dump(fb_claims());
    char *known = fb_token(key1, fb_claims());
    char *unknown = tok_rs256(key2, "{\"alg\":\"RS256\",\"kid\":\"kid2\"}", p);
    char *forged = tok_rs256(key2, HDR_RS256_KID1, p);
    char *dev = dev_token(DEV_SECRET, dev_claims());
    char *two = certs_json(2, "kid1", cert1, "kid2", cert2);
    char err[256];

    CHECK(auth_key_count(fb) == 1, "one key loaded");
    expect_fail(fb, unknown, NOW, "unknown_kid", "kid2 unknown without a hook");
    auth_set_unknown_kid_cb(fb, on_unknown_kid, &unknown_kid_calls);
    expect_fail(fb, unknown, NOW, "unknown_kid", "kid2 unknown");
    CHECK(unknown_kid_calls == 1, "an unknown kid calls the hook once");
    expect_ok(fb, known, NOW, "uid-alice", false, "a known kid");
    expect_fail(fb, forged, NOW, "bad_signature", "a known kid, forged");
    expect_ok(fb, dev, NOW, "dev-bob", false, "an HS256 dev token");
    CHECK(unknown_kid_calls == 1, "known kids and HS256 tokens never call it");
    /* What firebase_keys does from the hook: load the rotated document. */
    CHECK(auth_set_certs(fb, two, strlen(two), err, sizeof err) == 0 && auth_key_count(fb) == 2,
          "rotated document loads");
    expect_ok(fb, unknown, NOW, "uid-alice", false, "kid2 after the refetch");
    auth_set_unknown_kid_cb(fb, NULL, NULL);
    free(two);
    free(dev);
    free(forged);
    free(unknown);
    free(known);
    free(p);
    auth_free(fb);
}

int main(void)
{
    key1 = rsa_key(2048);
    key2 = rsa_key(2048);
    cert1 = cert_pem(key1);
    cert2 = cert_pem(key2);
    pub1 = pubkey_pem(key1);
    certs1 = certs_json(1, "kid1", cert1, NULL, NULL);

    test_firebase();
    test_keys_and_algs();
    test_certs();
    test_config();
    test_dev();
    test_garbage();
    test_unknown_kid_hook();

    free(certs1);
    free(pub1);
    free(cert2);
    free(cert1);
    EVP_PKEY_free(key2);
    EVP_PKEY_free(key1);

    return check_report();
}
