/*
 * payments: taking money for tickets, behind a provider interface.
 *
 * A provider is a table of functions (payment_provider_t) that starts a
 * charge and later calls back with its outcome, on the hub's loop, never
 * blocking it. The built-in `sandbox` provider answers by payment token:
 *
 *   tok_ok        succeeds              tok_declined  declined (402)
 *   tok_timeout   never answers         anything else invalid token (402)
 *
 * payments_t is the hub's payment service: it owns the configured provider,
 * bounds every charge by payment-timeout-ms with a uv timer (the charge is
 * then abandoned and reported PAYMENT_TIMEOUT), and runs the hourly sweep of
 * the ticket books (expired Idempotency-Keys, purchases left pending by a
 * process that died: rn_tickets_sweep()).
 *
 * No card data ever passes through here: the client gives a token made by the
 * provider's own SDK, and the token is forgotten when the charge ends.
 *
 * Webhooks: payments_webhook_verify() checks a `Retronova-Signature` header
 * "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>" (several
 * v1 entries allowed, for secret rotation), in constant time.
 */
#ifndef RN_PAYMENTS_H
#define RN_PAYMENTS_H

#include <stddef.h>
#include <uv.h>

#include "hub.h"

typedef enum payment_status {
    PAYMENT_SUCCEEDED = 0,
    PAYMENT_DECLINED,  /* the provider refused the payment method */
    PAYMENT_INVALID,   /* the provider does not know the token */
    PAYMENT_TIMEOUT,   /* no answer within payment-timeout-ms: abandoned */
    PAYMENT_CANCELLED, /* the hub is shutting down */
} payment_status_t;

/* One charge. Borrowed by charge(): copy what must outlive the call. */
typedef struct payment_charge {
    long long purchase_id; /* our reference, and the provider's idempotency key */
    int amount_cents;
    const char *currency; /* ISO 4217, e.g. "EUR" */
    const char *token;    /* the client's payment token; never stored */
} payment_charge_t;

/* An outcome; its strings are borrowed for the callback. */
typedef struct payment_result {
    payment_status_t status;
    const char *provider_ref; /* the provider's payment id, on success */
    const char *message;      /* for the client, on failure */
} payment_result_t;

typedef void (*payment_done_cb)(void *arg, const payment_result_t *result);

typedef struct payment_provider {
    const char *name; /* stored with each purchase */
    /* Makes the provider's context on loop; NULL on failure. */
    void *(*open)(uv_loop_t *loop);
    /*
     * Starts a charge. Returns a handle, then calls done exactly once, later
     * (never on this stack), unless cancel(handle) runs first. NULL: the
     * charge did not start and done is never called.
     */
    void *(*charge)(void *ctx, const payment_charge_t *charge, payment_done_cb done, void *arg);
    /* Abandons a charge that has not called back: its done is never called. */
    void (*cancel)(void *ctx, void *handle);
    /* Cancels every open charge; ctx frees itself once its handles closed. */
    void (*close)(void *ctx);
} payment_provider_t;

extern const payment_provider_t payment_sandbox;

/* The provider of that name, or NULL. */
const payment_provider_t *payment_provider_find(const char *name);

typedef struct payments payments_t;

/*
 * The payment service of hub with the configured provider and timeout, the
 * sweep timer started. NULL on failure (unknown provider, out of memory).
 */
payments_t *payments_new(hub_t *hub);

/*
 * Shutdown: every open charge calls back with PAYMENT_CANCELLED (before this
 * returns), timers stop; frees itself once its handles are closed. Call it
 * before the pool closes; the pointer is dead on return.
 */
void payments_close(payments_t *p);

/* The provider's name, to record with a purchase. */
const char *payments_provider_name(const payments_t *p);

/*
 * Charges through the provider, bounded by the payment timeout. Returns 0 and
 * calls cb exactly once later (never on this stack); or -1 (provider refused
 * to start, closing, out of memory) and never calls cb.
 */
int payments_charge(payments_t *p, const payment_charge_t *charge, payment_done_cb cb, void *arg);

#define PAYMENT_WEBHOOK_TOLERANCE_S 300

/*
 * Checks a webhook's signature header against secret over "<t>.<body>",
 * with |now - t| <= PAYMENT_WEBHOOK_TOLERANCE_S. 0 when it holds (err set
 * to ""); -1 with a short reason in err (malformed header, stale timestamp,
 * no matching signature). err may be NULL.
 */
int payments_webhook_verify(const char *secret, const char *header, const char *body, size_t len,
                            long long now, char *err, size_t errlen);

/*
 * Writes the header value payments_webhook_verify() accepts for body at time
 * t into out ("t=...,v1=..."); for tests and for the sandbox tooling.
 */
void payments_webhook_sign(const char *secret, long long t, const char *body, size_t len, char *out,
                           size_t outlen);

#endif
