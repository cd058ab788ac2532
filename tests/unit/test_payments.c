/*
 * test_payments: the sandbox provider on a real libuv loop (answers arrive
 * later, never on the caller's stack; tok_timeout never answers; cancel and
 * close leave nothing behind) and webhook signatures (HMAC-SHA256 over
 * "<t>.<body>", tolerance, rotation, malformed headers).
 */
#include "payments.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

typedef struct outcome {
    int calls;
    payment_status_t status;
    char ref[64];
    bool during_charge;
} outcome_t;

static bool in_charge;

static void on_done(void *arg, const payment_result_t *r)
{
    outcome_t *o = arg;
    o->calls++;
    o->status = r->status;
    o->during_charge = in_charge;
    snprintf(o->ref, sizeof o->ref, "%s", r->provider_ref ? r->provider_ref : "");
}

static void *charge(void *ctx, const char *token, long long id, outcome_t *o)
{
    payment_charge_t c = {
        .purchase_id = id, .amount_cents = 500, .currency = "EUR", .token = token};
    in_charge = true;
    void *h = payment_sandbox.charge(ctx, &c, on_done, o);
    in_charge = false;
    return h;
}

static void test_sandbox(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    CHECK(payment_provider_find("sandbox") == &payment_sandbox, "found by name");
    CHECK(payment_provider_find("stripe") == NULL, "unknown provider");
    void *ctx = payment_sandbox.open(&loop);
    outcome_t ok = {0}, declined = {0}, invalid = {0}, silent = {0}, cancelled = {0};
    CHECK(charge(ctx, "tok_ok", 7, &ok) != NULL, "tok_ok starts");
    CHECK(charge(ctx, "tok_declined", 8, &declined) != NULL, "tok_declined starts");
    CHECK(charge(ctx, "tok_bogus", 9, &invalid) != NULL, "unknown token starts");
    CHECK(charge(ctx, "tok_timeout", 10, &silent) != NULL, "tok_timeout starts");
    void *h = charge(ctx, "tok_ok", 11, &cancelled);
    CHECK(ok.calls == 0, "no answer on the caller's stack");
    payment_sandbox.cancel(ctx, h);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(ok.calls == 1 && ok.status == PAYMENT_SUCCEEDED && !strcmp(ok.ref, "sbx_7"),
          "tok_ok succeeds with a provider ref");
    CHECK(!ok.during_charge, "answered from the loop");
    CHECK(declined.calls == 1 && declined.status == PAYMENT_DECLINED, "tok_declined is declined");
    CHECK(invalid.calls == 1 && invalid.status == PAYMENT_INVALID, "unknown token is invalid");
    CHECK(silent.calls == 0, "tok_timeout never answers");
    CHECK(cancelled.calls == 0, "a cancelled charge never answers");
    payment_sandbox.close(ctx); /* cancels tok_timeout */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(silent.calls == 0, "closing does not answer either");
    CHECK(uv_loop_close(&loop) == 0, "every handle closed");
}

static void test_webhook_signature(void)
{
    const char *secret = "whsec_test", *body = "{\"id\":\"evt_1\",\"type\":\"payment.succeeded\"}";
    size_t len = strlen(body);
    long long now = 1763700000;
    char hdr[256], two[512];
    char why[80];

    payments_webhook_sign(secret, now, body, len, hdr, sizeof hdr);
    CHECK(!strncmp(hdr, "t=1763700000,v1=", 16) && strlen(hdr) == 16 + 64, "header shape");
    CHECK(payments_webhook_verify(secret, hdr, body, len, now, why, sizeof why) == 0 && !why[0],
          "valid");
    CHECK(payments_webhook_verify(secret, hdr, body, len, now + 300, why, sizeof why) == 0,
          "300 s old: ok");
    CHECK(payments_webhook_verify(secret, hdr, body, len, now + 301, why, sizeof why) != 0 &&
              strstr(why, "tolerance"),
          "301 s old: stale");
    CHECK(payments_webhook_verify(secret, hdr, body, len, now - 301, why, sizeof why) != 0,
          "from the future");
    CHECK(payments_webhook_verify("other", hdr, body, len, now, why, sizeof why) != 0 &&
              strstr(why, "no signature"),
          "wrong secret");
    CHECK(payments_webhook_verify(secret, hdr, body, len - 1, now, why, sizeof why) != 0,
          "body changed");
    CHECK(payments_webhook_verify("", hdr, body, len, now, why, sizeof why) != 0,
          "no secret: never valid");

    /* Rotation: an old v1 first, the good one second; spaces tolerated. */
    snprintf(two, sizeof two, "t=%lld, v1=%064d, %s", now, 0, strchr(hdr, ',') + 1);
    CHECK(payments_webhook_verify(secret, two, body, len, now, why, sizeof why) == 0,
          "second v1 matches");

    static const char *const bad[] = {
        "",
        "v1=00",
        "t=,v1=00",
        "t=12x,v1=00",
        "t=1763700000",
        "t=1763700000,v1=zz",
        "t=1763700000,t=1763700000,v1=00",
        "t=99999999999999999999,v1=00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(payments_webhook_verify(secret, bad[i], body, len, now, why, sizeof why) != 0 &&
                  why[0],
              "malformed header refused");
    /* A v1 of the right length but upper-case hex is the same bytes. */
    for (char *p = strstr(hdr, "v1=") + 3; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    CHECK(payments_webhook_verify(secret, hdr, body, len, now, why, sizeof why) == 0,
          "hex case-insensitive");
}

int main(void)
{
    test_sandbox();
    test_webhook_signature();
    return check_report();
}
