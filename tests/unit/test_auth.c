/*
 * test_auth: Firebase RS256 and dev HS256 token verification.
 *
 * The test makes its own RSA keys and self-signed certificates (Google's
 * kid -> PEM certificate JSON) and signs every token by hand, so that each
 * byte of header, payload and signature is under its control: libjwt is only
 * ever the thing under test, never the thing that makes the attack tokens.
 *
 * Most cases are rows of two tables: claims_cases (a good token with a claim
 * changed, which verifier, what it must answer) and header_cases (the good
 * claims under another header, algorithm or key). A new case is a new row.
 * What no row can say (tampered signatures, certificate documents,
 * configuration, minting, garbage, the unknown-kid hook) stays as code below.
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

/* ---- the verifiers the tables name ------------------------------------------ */

/* Each is an auth_t configured one way; built once in main(). */
typedef enum verifier {
    V_FB,     /* Firebase (project + kid1), no dev secret, default leeway */
    V_FB10,   /* the same with a configured 10 s leeway */
    V_BOTH,   /* Firebase and the dev secret */
    V_DEV,    /* the dev secret only: Firebase off */
    V_EMPTY,  /* Firebase and an empty dev secret (= no secret) */
    V_NOKEYS, /* a project, but no certificates loaded yet */
    V_COUNT
} verifier_t;

static auth_t *verifiers[V_COUNT];

static void verifiers_make(void)
{
    verifiers[V_FB] = make_auth(PROJECT, NULL, 0, certs1);
    verifiers[V_FB10] = make_auth(PROJECT, NULL, 10, certs1);
    verifiers[V_BOTH] = make_auth(PROJECT, DEV_SECRET, 0, certs1);
    verifiers[V_DEV] = make_auth(NULL, DEV_SECRET, 0, NULL);
    verifiers[V_EMPTY] = make_auth(PROJECT, "", 0, certs1);
    verifiers[V_NOKEYS] = make_auth(PROJECT, NULL, 0, NULL);
}

static void verifiers_free(void)
{
    for (int i = 0; i < V_COUNT; i++)
        auth_free(verifiers[i]);
}

/* What a case expects: reason NULL means accepted as uid (admin or not). */
typedef struct expect {
    const char *reason;
    const char *uid;
    bool admin;
} expect_t;

/* one-line initializer macros (clang-format would spread each over four lines) */
/* clang-format off */
#define OK(uid) {NULL, uid, false}
#define OK_ADMIN(uid) {NULL, uid, true}
#define FAILS(reason) {reason, NULL, false}
/* clang-format on */

static void expect(const auth_t *a, const char *tok, time_t now, const expect_t *want,
                   const char *what)
{
    if (want->reason)
        expect_fail(a, tok, now, want->reason, what);
    else
        expect_ok(a, tok, now, want->uid, want->admin, what);
}

/* ---- claims: one good token with one or two claims changed ------------------- */

/* One change to the good claims: delete, or set to a value. */
typedef struct claim_edit {
    const char *name; /* NULL: no change */
    enum { EDIT_DEL, EDIT_AT, EDIT_STR, EDIT_STRN, EDIT_JSON } kind;
    long long at;     /* EDIT_AT: NOW + at, an integer */
    const char *text; /* EDIT_STR, EDIT_STRN (len bytes, may hold NUL), EDIT_JSON (parsed) */
    size_t len;
} claim_edit_t;

/* clang-format off */
#define DEL(n) {n, EDIT_DEL, 0, NULL, 0}
#define AT(n, offset) {n, EDIT_AT, offset, NULL, 0}
#define STR(n, s) {n, EDIT_STR, 0, s, 0}
#define STRN(n, s) {n, EDIT_STRN, 0, s, sizeof(s) - 1}
#define JSON(n, s) {n, EDIT_JSON, 0, s, 0}
/* clang-format on */

/* How the token is signed: the claims it starts from follow (Firebase or dev). */
typedef enum claims_signer {
    FB_KEY1,      /* RS256, key1 under kid1, Firebase claims */
    DEV_SECRET_S, /* HS256 with DEV_SECRET, dev claims */
    DEV_OTHER,    /* HS256 with another secret, dev claims */
} claims_signer_t;

typedef struct claims_case {
    const char *what;
    verifier_t verifier;
    claims_signer_t signer;
    claim_edit_t edit[2];
    expect_t want;
} claims_case_t;

#define A16 "aaaaaaaaaaaaaaaa"
#define B16 "bbbbbbbbbbbbbbbb"
#define A129 A16 A16 A16 A16 A16 A16 A16 A16 "a"
#define B128 B16 B16 B16 B16 B16 B16 B16 B16

static const claims_case_t claims_cases[] = {
    /* Firebase: the good token, and admin only as JSON true */
    {"good Firebase token", V_FB, FB_KEY1, {{0}}, OK("uid-alice")},
    {"Firebase token with admin: true",
     V_FB,
     FB_KEY1,
     {JSON("admin", "true")},
     OK_ADMIN("uid-alice")},
    {"admin: \"true\" (a string) is not admin",
     V_FB,
     FB_KEY1,
     {STR("admin", "true")},
     OK("uid-alice")},
    {"admin: 1 is not admin", V_FB, FB_KEY1, {JSON("admin", "1")}, OK("uid-alice")},
    /* Firebase: each claim that must be right */
    {"expired", V_FB, FB_KEY1, {AT("exp", -3600)}, FAILS("expired")},
    {"wrong aud", V_FB, FB_KEY1, {STR("aud", "other-project")}, FAILS("wrong_audience")},
    {"aud as an array", V_FB, FB_KEY1, {JSON("aud", "[\"" PROJECT "\"]")}, FAILS("wrong_audience")},
    /* jansson refuses "\u0000" unless asked (JSON_ALLOW_NUL): the payload is malformed. */
    {"aud with a NUL and a tail", V_FB, FB_KEY1, {STRN("aud", PROJECT "\0x")}, FAILS("malformed")},
    {"missing aud", V_FB, FB_KEY1, {DEL("aud")}, FAILS("missing_claim")},
    {"wrong iss",
     V_FB,
     FB_KEY1,
     {STR("iss", "https://securetoken.google.com/other-project")},
     FAILS("wrong_issuer")},
    {"Google accounts iss",
     V_FB,
     FB_KEY1,
     {STR("iss", "https://accounts.google.com")},
     FAILS("wrong_issuer")},
    {"future iat", V_FB, FB_KEY1, {AT("iat", 3600)}, FAILS("issued_in_future")},
    {"future auth_time", V_FB, FB_KEY1, {AT("auth_time", 3600)}, FAILS("auth_time_in_future")},
    {"missing auth_time", V_FB, FB_KEY1, {DEL("auth_time")}, FAILS("missing_claim")},
    {"missing exp", V_FB, FB_KEY1, {DEL("exp")}, FAILS("missing_claim")},
    {"exp as a string", V_FB, FB_KEY1, {STR("exp", "9999999999")}, FAILS("bad_claim")},
    {"future nbf", V_FB, FB_KEY1, {AT("nbf", 3600)}, FAILS("not_yet_valid")},
    /* Firebase: subjects */
    {"empty sub", V_FB, FB_KEY1, {STR("sub", "")}, FAILS("bad_subject")},
    {"129-byte sub", V_FB, FB_KEY1, {STR("sub", A129)}, FAILS("bad_subject")},
    {"128-byte sub accepted", V_FB, FB_KEY1, {STR("sub", B128)}, OK(B128)},
    {"numeric sub", V_FB, FB_KEY1, {JSON("sub", "42")}, FAILS("bad_subject")},
    {"sub with a NUL", V_FB, FB_KEY1, {STRN("sub", "ab\0cd")}, FAILS("malformed")},
    {"sub with a newline", V_FB, FB_KEY1, {STR("sub", "a\nb")}, FAILS("bad_subject")},
    {"missing sub", V_FB, FB_KEY1, {DEL("sub")}, FAILS("missing_claim")},
    /* Firebase: the leeway (60 s by default; a configured one replaces it) */
    {"exp 30 s ago accepted (leeway)", V_FB, FB_KEY1, {AT("exp", -30)}, OK("uid-alice")},
    {"exp 90 s ago refused", V_FB, FB_KEY1, {AT("exp", -90)}, FAILS("expired")},
    {"iat / auth_time 30 s ahead accepted (leeway)",
     V_FB,
     FB_KEY1,
     {AT("iat", 30), AT("auth_time", 30)},
     OK("uid-alice")},
    {"auth_time 90 s ahead refused",
     V_FB,
     FB_KEY1,
     {AT("auth_time", 90)},
     FAILS("auth_time_in_future")},
    {"exp 30 s ago refused with a 10 s leeway",
     V_FB10,
     FB_KEY1,
     {AT("exp", -30)},
     FAILS("expired")},
    /* HS256 dev tokens */
    {"good HS256 dev token with a secret", V_DEV, DEV_SECRET_S, {{0}}, OK("dev-bob")},
    {"HS256 dev token without a secret", V_FB, DEV_SECRET_S, {{0}}, FAILS("alg_not_allowed")},
    {"HS256 dev token with an empty secret",
     V_EMPTY,
     DEV_SECRET_S,
     {{0}},
     FAILS("alg_not_allowed")},
    {"HS256 with the wrong secret", V_DEV, DEV_OTHER, {{0}}, FAILS("bad_signature")},
    {"HS256 without exp", V_DEV, DEV_SECRET_S, {DEL("exp")}, FAILS("missing_claim")},
    {"HS256 without iat", V_DEV, DEV_SECRET_S, {DEL("iat")}, FAILS("missing_claim")},
    {"HS256 without sub", V_DEV, DEV_SECRET_S, {DEL("sub")}, FAILS("missing_claim")},
    {"expired HS256", V_DEV, DEV_SECRET_S, {AT("exp", -120)}, FAILS("expired")},
    {"HS256 admin", V_DEV, DEV_SECRET_S, {JSON("admin", "true")}, OK_ADMIN("dev-bob")},
};

static void claim_apply(json_t *claims, const claim_edit_t *e)
{
    json_t *v = NULL;
    switch (e->kind) {
    case EDIT_DEL:
        json_object_del(claims, e->name);
        return;
    case EDIT_AT:
        v = json_integer((json_int_t)(NOW + e->at));
        break;
    case EDIT_STR:
        v = json_string(e->text);
        break;
    case EDIT_STRN:
        v = json_stringn(e->text, e->len);
        break;
    case EDIT_JSON:
        v = json_loads(e->text, JSON_DECODE_ANY, NULL);
        break;
    }
    if (v == NULL || json_object_set_new(claims, e->name, v) != 0)
        die("claim edit");
}

static char *claims_token(const claims_case_t *c)
{
    json_t *claims = c->signer == FB_KEY1 ? fb_claims() : dev_claims();
    for (size_t i = 0; i < sizeof c->edit / sizeof c->edit[0]; i++)
        if (c->edit[i].name)
            claim_apply(claims, &c->edit[i]);
    switch (c->signer) {
    case FB_KEY1:
        return fb_token(key1, claims);
    case DEV_SECRET_S:
        return dev_token(DEV_SECRET, claims);
    case DEV_OTHER:
        return dev_token("another-secret", claims);
    }
    die("signer");
    return NULL;
}

static void test_claims_table(void)
{
    for (size_t i = 0; i < sizeof claims_cases / sizeof claims_cases[0]; i++) {
        const claims_case_t *c = &claims_cases[i];
        char *t = claims_token(c);
        expect(verifiers[c->verifier], t, NOW, &c->want, c->what);
        free(t);
    }
}

/* ---- headers, algorithms and keys: the good claims under another header ------ */

typedef enum header_signer {
    RS_KEY1,        /* RS256 with key1 (kid1's key) */
    RS_KEY2,        /* RS256 with key2 (another key) */
    HS_PUB1,        /* HS256 keyed with key1's public key PEM: key confusion */
    HS_CERT1,       /* HS256 keyed with kid1's certificate PEM: key confusion */
    HS_DEV_MINIMAL, /* HMAC-SHA256 with DEV_SECRET over the minimal dev claims DEV_MINIMAL */
    UNSIGNED,       /* an empty signature segment */
    NONE_RS_KEY1,   /* a real RS256 signature, whatever the header says */
} header_signer_t;

typedef struct header_case {
    const char *what;
    verifier_t verifier;
    header_signer_t signer;
    const char *header;
    expect_t want;
} header_case_t;

#define DEV_MINIMAL "{\"sub\":\"x\",\"iat\":1,\"exp\":2}"
#define HDR_NONE "{\"alg\":\"none\",\"typ\":\"JWT\"}"
#define HDR_NONE_KID1 "{\"alg\":\"none\",\"kid\":\"kid1\"}"
#define HDR_NONE_CAP "{\"alg\":\"None\"}"
#define HDR_HS256_KID1_JWT "{\"alg\":\"HS256\",\"kid\":\"kid1\",\"typ\":\"JWT\"}"

static const header_case_t header_cases[] = {
    {"RS256 signed by the wrong key", V_FB, RS_KEY2, HDR_RS256_KID1, FAILS("bad_signature")},
    {"unknown kid", V_FB, RS_KEY1, "{\"alg\":\"RS256\",\"kid\":\"kid9\",\"typ\":\"JWT\"}",
     FAILS("unknown_kid")},
    {"missing kid", V_FB, RS_KEY1, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", FAILS("missing_kid")},
    {"numeric kid", V_FB, RS_KEY1, "{\"alg\":\"RS256\",\"kid\":7}", FAILS("malformed")},
    {"RS256 without typ accepted", V_FB, RS_KEY1, "{\"alg\":\"RS256\",\"kid\":\"kid1\"}",
     OK("uid-alice")},
    {"typ other than JWT", V_FB, RS_KEY1,
     "{\"alg\":\"RS256\",\"kid\":\"kid1\",\"typ\":\"JOSE+JSON\"}", FAILS("malformed")},
    {"crit header", V_FB, RS_KEY1,
     "{\"alg\":\"RS256\",\"kid\":\"kid1\",\"crit\":[\"exp\"],\"exp\":1}", FAILS("malformed")},
    {"duplicate kid in header", V_FB, RS_KEY1,
     "{\"alg\":\"RS256\",\"kid\":\"kid9\",\"kid\":\"kid1\"}", FAILS("malformed")},
    {"duplicate alg in header", V_BOTH, RS_KEY1,
     "{\"alg\":\"HS256\",\"alg\":\"RS256\",\"kid\":\"kid1\"}", FAILS("malformed")},
    {"RS384", V_FB, RS_KEY1, "{\"alg\":\"RS384\",\"kid\":\"kid1\"}", FAILS("alg_not_allowed")},
    {"lower-case rs256", V_FB, RS_KEY1, "{\"alg\":\"rs256\",\"kid\":\"kid1\"}",
     FAILS("alg_not_allowed")},
    {"no alg", V_FB, RS_KEY1, "{\"kid\":\"kid1\"}", FAILS("malformed")},
    /* alg none, with an empty signature and with a real one, with and without a secret */
    {"alg none, empty signature", V_FB, UNSIGNED, HDR_NONE, FAILS("alg_not_allowed")},
    {"alg none, with a signature", V_FB, NONE_RS_KEY1, HDR_NONE, FAILS("alg_not_allowed")},
    {"alg none with kid1", V_FB, UNSIGNED, HDR_NONE_KID1, FAILS("alg_not_allowed")},
    {"alg None", V_FB, UNSIGNED, HDR_NONE_CAP, FAILS("alg_not_allowed")},
    {"alg none, empty signature (dev secret set)", V_BOTH, UNSIGNED, HDR_NONE,
     FAILS("alg_not_allowed")},
    {"alg none, with a signature (dev secret set)", V_BOTH, NONE_RS_KEY1, HDR_NONE,
     FAILS("alg_not_allowed")},
    {"alg none with kid1 (dev secret set)", V_BOTH, UNSIGNED, HDR_NONE_KID1,
     FAILS("alg_not_allowed")},
    {"alg None (dev secret set)", V_BOTH, UNSIGNED, HDR_NONE_CAP, FAILS("alg_not_allowed")},
    /* key confusion: HS256 keyed with the RSA public key (SPKI or certificate PEM) */
    {"HS256 with public PEM, no dev secret", V_FB, HS_PUB1, HDR_HS256_KID1_JWT,
     FAILS("alg_not_allowed")},
    {"HS256 with public PEM, dev secret set", V_BOTH, HS_PUB1, HDR_HS256_KID1_JWT,
     FAILS("bad_signature")},
    {"HS256 (no kid) with public PEM, no secret", V_FB, HS_PUB1, HDR_HS256,
     FAILS("alg_not_allowed")},
    {"HS256 (no kid) with public PEM, secret set", V_BOTH, HS_PUB1, HDR_HS256,
     FAILS("bad_signature")},
    {"HS256 with certificate PEM, no dev secret", V_FB, HS_CERT1,
     "{\"alg\":\"HS256\",\"kid\":\"kid1\"}", FAILS("alg_not_allowed")},
    {"HS256 with certificate PEM, dev secret set", V_BOTH, HS_CERT1,
     "{\"alg\":\"HS256\",\"kid\":\"kid1\"}", FAILS("bad_signature")},
    /* RS256 where Firebase is off, or has no keys yet */
    {"RS256 with Firebase not configured", V_DEV, RS_KEY1, HDR_RS256_KID1,
     FAILS("alg_not_allowed")},
    {"RS256 with no keys loaded", V_NOKEYS, RS_KEY1, HDR_RS256_KID1, FAILS("unknown_kid")},
    {"HS384", V_DEV, HS_DEV_MINIMAL, "{\"alg\":\"HS384\"}", FAILS("alg_not_allowed")},
};

static char *header_token(const header_case_t *c, const char *payload)
{
    char *in, *sig, *t;
    switch (c->signer) {
    case RS_KEY1:
        return tok_rs256(key1, c->header, payload);
    case RS_KEY2:
        return tok_rs256(key2, c->header, payload);
    case HS_PUB1:
        return tok_hs256(pub1, c->header, payload);
    case HS_CERT1:
        return tok_hs256(cert1, c->header, payload);
    case HS_DEV_MINIMAL:
        return tok_hs256(DEV_SECRET, c->header, DEV_MINIMAL);
    case UNSIGNED:
        in = signing_input(c->header, payload);
        t = join3(in, "");
        free(in);
        return t;
    case NONE_RS_KEY1:
        in = signing_input(c->header, payload);
        sig = sig_rs256(key1, in);
        t = join3(in, sig);
        free(sig);
        free(in);
        return t;
    }
    die("signer");
    return NULL;
}

static void test_header_table(void)
{
    char *p = dump(fb_claims());
    for (size_t i = 0; i < sizeof header_cases / sizeof header_cases[0]; i++) {
        const header_case_t *c = &header_cases[i];
        char *t = header_token(c, p);
        expect(verifiers[c->verifier], t, NOW, &c->want, c->what);
        free(t);
    }
    free(p);
}

/* ---- signatures and payloads that no table row describes ---------------------- */

static void test_tampering(void)
{
    const auth_t *fb = verifiers[V_FB];
    char *p = dump(fb_claims()), *p2, *t, *t2;

    /* Duplicate claims in the payload: signed, yet refused. */
    p2 = malloc(strlen(p) + 32);
    sprintf(p2, "{\"sub\":\"mallory\",%s", p + 1);
    t = tok_rs256(key1, HDR_RS256_KID1, p2);
    expect_fail(fb, t, NOW, "malformed", "duplicate sub in payload");
    free(t);
    free(p2);

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

    free(p);
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

/* ---- minted HS256 dev tokens ------------------------------------------------- */

static void test_minted(void)
{
    const auth_t *dev = verifiers[V_DEV], *fb = verifiers[V_FB];
    char *t;

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

/*
 * auth_verify_until: how long an accepted token stays accepted without being
 * verified again (http.c keeps it per connection): to exp + leeway, and only
 * while the keys it was verified with are loaded.
 */
static void test_validity(void)
{
    auth_t *fb = make_auth(PROJECT, DEV_SECRET, 10, certs1);
    auth_identity_t id;
    auth_validity_t v;
    const char *why = NULL;
    char *dev = dev_token(DEV_SECRET, dev_claims()); /* exp NOW + 600 */
    char *t1 = fb_token(key1, fb_claims());          /* exp NOW + 3500 */

    CHECK(auth_verify_until(fb, dev, NOW, &id, &v, &why) == 0 && strcmp(id.uid, "dev-bob") == 0,
          "dev token verified with its validity");
    CHECK(v.until == (long long)NOW + 600 + 10, "valid until exp + leeway");
    CHECK(auth_still_valid(fb, &v, NOW + 609), "still valid just before exp + leeway");
    CHECK(!auth_still_valid(fb, &v, NOW + 610), "not at exp + leeway");
    expect_fail(fb, dev, NOW + 610, "expired", "and verify refuses it then too");
    CHECK(!auth_still_valid(fb, NULL, NOW), "no validity: not valid");

    memset(&v, 0, sizeof v);
    CHECK(auth_verify_until(fb, t1, NOW, &id, &v, &why) == 0, "Firebase token verified");
    CHECK(auth_still_valid(fb, &v, NOW + 100), "valid while its keys are loaded");
    CHECK(auth_set_certs(fb, certs1, strlen(certs1), NULL, 0) == 0, "the same keys again");
    CHECK(!auth_still_valid(fb, &v, NOW + 100), "not once the keys were replaced");
    CHECK(auth_verify_until(fb, t1, NOW, &id, &v, &why) == 0 && auth_still_valid(fb, &v, NOW),
          "verified again: valid again");
    CHECK(auth_set_certs(fb, "{", 1, NULL, 0) != 0 && auth_still_valid(fb, &v, NOW),
          "a refused document changes no keys");

    why = NULL;
    v.until = 12345;
    CHECK(auth_verify_until(fb, dev, NOW + 610, &id, &v, &why) == -1 && why != NULL &&
              v.until == 12345,
          "a refused token leaves the validity alone");
    free(t1);
    free(dev);
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

    verifiers_make();
    test_claims_table();
    test_header_table();
    test_tampering();
    test_certs();
    test_config();
    test_minted();
    test_garbage();
    test_unknown_kid_hook();
    test_validity();
    verifiers_free();

    free(certs1);
    free(pub1);
    free(cert2);
    free(cert1);
    EVP_PKEY_free(key2);
    EVP_PKEY_free(key1);

    return check_report();
}
