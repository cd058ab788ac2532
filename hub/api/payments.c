/*
 * payments: the provider interface, the sandbox provider, the charge timeout,
 * the ticket books' sweep, and webhook signatures (see payments.h).
 */
#include "payments.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "hex.h"

#include "log.h"

#define SWEEP_FIRST_MS (10 * 1000)
#define SWEEP_EVERY_MS (60 * 60 * 1000)

/* ---- sandbox provider --------------------------------------------------- */

typedef struct sandbox sandbox_t;

typedef struct sandbox_charge {
    sandbox_t *sb;
    uv_timer_t timer; /* answers on the next loop turn; never started for tok_timeout */
    payment_status_t status;
    const char *message;
    char ref[48];
    payment_done_cb done;
    void *arg;
    struct sandbox_charge *prev, *next;
} sandbox_charge_t;

struct sandbox {
    uv_loop_t *loop;
    sandbox_charge_t *open; /* charges that have not answered */
    int handles;            /* timers not yet closed */
    bool closing;
};

static void *sandbox_open(uv_loop_t *loop)
{
    sandbox_t *sb = calloc(1, sizeof *sb);
    if (sb)
        sb->loop = loop;
    return sb;
}

static void sandbox_unlink(sandbox_charge_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->sb->open = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void sandbox_charge_closed(uv_handle_t *h)
{
    sandbox_charge_t *c = h->data;
    sandbox_t *sb = c->sb;
    free(c);
    if (--sb->handles == 0 && sb->closing)
        free(sb);
}

static void sandbox_answer(uv_timer_t *t)
{
    sandbox_charge_t *c = t->data;
    payment_result_t r = {c->status, c->status == PAYMENT_SUCCEEDED ? c->ref : NULL, c->message};
    sandbox_unlink(c);
    uv_close((uv_handle_t *)&c->timer, sandbox_charge_closed);
    c->done(c->arg, &r);
}

static void *sandbox_charge(void *ctx, const payment_charge_t *charge, payment_done_cb done,
                            void *arg)
{
    sandbox_t *sb = ctx;
    if (sb->closing || !charge->token)
        return NULL;
    sandbox_charge_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    *c = (sandbox_charge_t){.sb = sb, .done = done, .arg = arg};
    snprintf(c->ref, sizeof c->ref, "sbx_%lld", charge->purchase_id);
    bool answers = true;
    if (!strcmp(charge->token, "tok_ok")) {
        c->status = PAYMENT_SUCCEEDED;
    } else if (!strcmp(charge->token, "tok_declined")) {
        c->status = PAYMENT_DECLINED;
        c->message = "the card was declined (sandbox token tok_declined)";
    } else if (!strcmp(charge->token, "tok_timeout")) {
        answers = false; /* the provider never answers: the hub's timeout decides */
    } else {
        c->status = PAYMENT_INVALID;
        c->message = "unknown payment token (sandbox tokens: tok_ok, tok_declined, tok_timeout)";
    }
    uv_timer_init(sb->loop, &c->timer);
    c->timer.data = c;
    sb->handles++;
    c->next = sb->open;
    if (sb->open)
        sb->open->prev = c;
    sb->open = c;
    if (answers)
        uv_timer_start(&c->timer, sandbox_answer, 0, 0);
    return c;
}

static void sandbox_cancel(void *ctx, void *handle)
{
    (void)ctx;
    sandbox_charge_t *c = handle;
    sandbox_unlink(c);
    uv_close((uv_handle_t *)&c->timer, sandbox_charge_closed);
}

static void sandbox_close(void *ctx)
{
    sandbox_t *sb = ctx;
    sb->closing = true;
    while (sb->open)
        sandbox_cancel(sb, sb->open);
    if (sb->handles == 0)
        free(sb);
}

const payment_provider_t payment_sandbox = {
    .name = "sandbox",
    .open = sandbox_open,
    .charge = sandbox_charge,
    .cancel = sandbox_cancel,
    .close = sandbox_close,
};

const payment_provider_t *payment_provider_find(const char *name)
{
    static const payment_provider_t *const all[] = {&payment_sandbox};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(all[i]->name, name))
            return all[i];
    return NULL;
}

/* ---- the service: timeouts and the sweep ------------------------------- */

typedef struct pending {
    payments_t *owner;
    uv_timer_t timer; /* the payment timeout */
    void *handle;     /* the provider's */
    payment_done_cb cb;
    void *arg;
    struct pending *prev, *next;
} pending_t;

struct payments {
    hub_t *hub;
    const payment_provider_t *provider;
    void *ctx;
    uint64_t timeout_ms;
    uv_timer_t sweep;
    pending_t *open;
    int handles; /* our timers not yet closed, the sweep timer included */
    bool sweeping, closing;
};

static void maybe_free(payments_t *p)
{
    if (p->closing && p->handles == 0 && !p->sweeping)
        free(p);
}

static void pending_closed(uv_handle_t *h)
{
    pending_t *pd = h->data;
    payments_t *p = pd->owner;
    free(pd);
    p->handles--;
    maybe_free(p);
}

static void sweep_closed(uv_handle_t *h)
{
    payments_t *p = h->data;
    p->handles--;
    maybe_free(p);
}

/* Ends a pending charge: unlinks it, closes its timer, then tells the caller. */
static void pending_finish(pending_t *pd, const payment_result_t *r)
{
    payments_t *p = pd->owner;
    if (pd->prev)
        pd->prev->next = pd->next;
    else
        p->open = pd->next;
    if (pd->next)
        pd->next->prev = pd->prev;
    payment_done_cb cb = pd->cb;
    void *arg = pd->arg;
    uv_close((uv_handle_t *)&pd->timer, pending_closed);
    cb(arg, r);
}

static void on_provider_done(void *arg, const payment_result_t *r)
{
    pending_finish(arg, r);
}

static void on_timeout(uv_timer_t *t)
{
    pending_t *pd = t->data;
    payments_t *p = pd->owner;
    char message[128];
    p->provider->cancel(p->ctx, pd->handle);
    snprintf(message, sizeof message, "the payment provider did not answer within %" PRIu64 " ms",
             p->timeout_ms);
    payment_result_t r = {PAYMENT_TIMEOUT, NULL, message};
    pending_finish(pd, &r);
}

int payments_charge(payments_t *p, const payment_charge_t *charge, payment_done_cb cb, void *arg)
{
    if (!p || p->closing)
        return -1;
    pending_t *pd = calloc(1, sizeof *pd);
    if (!pd)
        return -1;
    *pd = (pending_t){.owner = p, .cb = cb, .arg = arg};
    pd->handle = p->provider->charge(p->ctx, charge, on_provider_done, pd);
    if (!pd->handle) {
        free(pd);
        return -1;
    }
    uv_timer_init(hub_loop(p->hub), &pd->timer);
    pd->timer.data = pd;
    p->handles++;
    uv_timer_start(&pd->timer, on_timeout, p->timeout_ms, 0);
    pd->next = p->open;
    if (p->open)
        p->open->prev = pd;
    p->open = pd;
    return 0;
}

static void on_swept(void *arg, int status, PGresult *res, const char *errmsg)
{
    payments_t *p = arg;
    p->sweeping = false;
    if (status == PG_OK && PQntuples(res) == 1)
        log_info("tickets sweep", json_pack("{s:s}", "result", PQgetvalue(res, 0, 0)));
    else if (!p->closing)
        log_warn("tickets sweep failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
    maybe_free(p);
}

/* Hourly: expired Idempotency-Keys and abandoned pending purchases (rn_tickets_sweep). */
static void on_sweep_timer(uv_timer_t *t)
{
    payments_t *p = t->data;
    if (p->sweeping)
        return;
    if (pg_pool_query(hub_pool(p->hub), "SELECT rn_tickets_sweep()::text", 0, NULL, on_swept, p) ==
        0)
        p->sweeping = true;
}

payments_t *payments_new(hub_t *hub)
{
    const hub_config_t *cfg = hub_config(hub);
    const payment_provider_t *provider = payment_provider_find(cfg->payment_provider);
    if (!provider) {
        log_error(
            "unknown payment provider",
            json_pack("{s:s}", "provider", cfg->payment_provider ? cfg->payment_provider : ""));
        return NULL;
    }
    payments_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->hub = hub;
    p->provider = provider;
    p->timeout_ms = (uint64_t)cfg->payment_timeout_ms;
    p->ctx = provider->open(hub_loop(hub));
    if (!p->ctx) {
        free(p);
        return NULL;
    }
    uv_timer_init(hub_loop(hub), &p->sweep);
    p->sweep.data = p;
    p->handles = 1;
    uv_timer_start(&p->sweep, on_sweep_timer, SWEEP_FIRST_MS, SWEEP_EVERY_MS);
    return p;
}

void payments_close(payments_t *p)
{
    if (!p)
        return;
    p->closing = true;
    while (p->open) {
        pending_t *pd = p->open;
        p->provider->cancel(p->ctx, pd->handle);
        payment_result_t r = {PAYMENT_CANCELLED, NULL, "the hub is shutting down"};
        pending_finish(pd, &r);
    }
    p->provider->close(p->ctx);
    p->ctx = NULL;
    uv_close((uv_handle_t *)&p->sweep, sweep_closed);
}

const char *payments_provider_name(const payments_t *p)
{
    return p->provider->name;
}

/* ---- webhook signatures ------------------------------------------------- */

#define SIG_BYTES 32

/* HMAC-SHA256(secret, "<t>.<body>") into out. 0, or -1. */
static int webhook_mac(const char *secret, const char *t, size_t tlen, const char *body, size_t len,
                       unsigned char out[SIG_BYTES])
{
    int rc = -1;
    size_t outlen = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)t, tlen) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
        EVP_MAC_update(ctx, (const unsigned char *)body, len) == 1 &&
        EVP_MAC_final(ctx, out, &outlen, SIG_BYTES) == 1 && outlen == SIG_BYTES)
        rc = 0;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

static int webhook_verify(const char *secret, const char *header, const char *body, size_t len,
                          long long now, const char **why)
{
    const char *t = NULL;
    size_t tlen = 0;
    unsigned char want[SIG_BYTES], got[SIG_BYTES];
    int nsigs = 0, matched = 0;

    *why = "malformed signature header";
    if (!secret || !*secret || !header)
        return -1;
    /* First pass: the timestamp (exactly one, all digits). */
    for (const char *p = header; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p + strcspn(p, ",");
        if (end - p > 2 && !strncmp(p, "t=", 2)) {
            if (t)
                return -1;
            t = p + 2;
            tlen = (size_t)(end - t);
            while (tlen && t[tlen - 1] == ' ')
                tlen--;
        }
        p = end;
    }
    if (!t || tlen == 0 || tlen > 12)
        return -1;
    long long ts = 0;
    for (size_t i = 0; i < tlen; i++) {
        if (!isdigit((unsigned char)t[i]))
            return -1;
        ts = ts * 10 + (t[i] - '0');
    }
    if (ts < now - PAYMENT_WEBHOOK_TOLERANCE_S || ts > now + PAYMENT_WEBHOOK_TOLERANCE_S) {
        *why = "signature timestamp outside the tolerance";
        return -1;
    }
    if (webhook_mac(secret, t, tlen, body, len, want) != 0) {
        *why = "cannot compute the signature";
        return -1;
    }
    /* Second pass: every v1 entry, each compared in constant time. */
    for (const char *p = header; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p + strcspn(p, ",");
        size_t n = (size_t)(end - p);
        while (n && p[n - 1] == ' ')
            n--;
        if (n > 3 && !strncmp(p, "v1=", 3) && n - 3 == 2 * SIG_BYTES &&
            hex_decode(p + 3, SIG_BYTES, got) == 0) {
            nsigs++;
            matched |= CRYPTO_memcmp(got, want, SIG_BYTES) == 0;
        }
        p = end;
    }
    OPENSSL_cleanse(want, sizeof want);
    if (!nsigs)
        return -1;
    if (!matched) {
        *why = "no signature matches";
        return -1;
    }
    *why = NULL;
    return 0;
}

int payments_webhook_verify(const char *secret, const char *header, const char *body, size_t len,
                            long long now, char *err, size_t errlen)
{
    const char *why = NULL;
    int rc = webhook_verify(secret, header, body, len, now, &why);
    if (err && errlen)
        snprintf(err, errlen, "%s", rc == 0 || !why ? "" : why);
    return rc;
}

void payments_webhook_sign(const char *secret, long long t, const char *body, size_t len, char *out,
                           size_t outlen)
{
    char ts[24];
    unsigned char mac[SIG_BYTES];
    int n = snprintf(ts, sizeof ts, "%lld", t);
    if (outlen)
        out[0] = '\0';
    if (n <= 0 || webhook_mac(secret, ts, (size_t)n, body, len, mac) != 0)
        return;
    char hex[2 * SIG_BYTES + 1];
    hex_encode(mac, SIG_BYTES, hex);
    snprintf(out, outlen, "t=%s,v1=%s", ts, hex);
}
