/*
 * api_tickets: the player's side of the ticket books: profile (register, me),
 * offers, purchases, balance and history, promo codes, and the payment
 * provider's signed webhooks.
 *
 * Each handler checks the shape of what it was given (400) and runs one SQL
 * function of storage/sql/02_tickets.sql (profiles: 04_social.sql) through db_call(), which
 * answers and publishes the committed `balance` events (db_call.h). The caller is
 * always the token's uid: no route takes another user's id.
 *
 * A purchase is two transactions around the payment (see 02_tickets.sql):
 *
 *   rn_purchase_begin   Idempotency-Key claimed, purchase 'pending'
 *        |                 (an error or a replayed answer ends here)
 *   payments_charge     the provider, bounded by payment-timeout-ms
 *        |
 *   rn_purchase_settle  succeeded + ledger + balance + event, or failed + 402;
 *                       the answer is stored for the key, then sent
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "db_call.h"
#include "events.h"
#include "guard.h"
#include "http.h"
#include "log.h"
#include "payments.h"
#include "ratelimit.h"

#define TOKEN_MAX 256      /* a payment token */
#define FIELD_MAX 256      /* a profile field */
#define SIGNATURE_MAX 1024 /* the Retronova-Signature header */

/* ---- shared helpers (api_admin.c has its own copies of the two small ones) */

/*
 * A string member of body: *out is its value, or NULL when absent or null and
 * optional. -1 after answering 400 (wrong type, too long, missing).
 */
static int body_string(http_req_t *req, const json_t *body, const char *name, bool required,
                       const char **out)
{
    const json_t *v = json_object_get(body, name);
    *out = NULL;
    if ((!v || json_is_null(v)) && !required)
        return 0;
    if (!json_is_string(v) || json_string_length(v) > FIELD_MAX) {
        http_respond_error(req, 400, "bad_request", "%s must be a string of at most %d bytes", name,
                           FIELD_MAX);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* ---- auth ------------------------------------------------------------- */

/* POST /api/v1/auth/register {pseudo, first_name, last_name, phone?} */
static void post_register(http_req_t *req)
{
    json_t *body = http_req_json(req);
    const char *pseudo, *first, *last, *phone;
    if (!body || body_string(req, body, "pseudo", true, &pseudo) ||
        body_string(req, body, "first_name", true, &first) ||
        body_string(req, body, "last_name", true, &last) ||
        body_string(req, body, "phone", false, &phone))
        return;
    const char *params[] = {db_caller_uid(req),
                            http_req_identity(req)->admin ? "true" : "false",
                            pseudo,
                            first,
                            last,
                            phone};
    db_call(req, "SELECT rn_register($1, $2::boolean, $3, $4, $5, $6)", 6, params, NULL, NULL);
}

static void get_me(http_req_t *req)
{
    const char *params[] = {db_caller_uid(req)};
    db_call(req, "SELECT rn_me($1)", 1, params, NULL, NULL);
}

/* ---- tickets ---------------------------------------------------------- */

#define BALANCE_RECENT "10" /* ledger rows shown with the balance */

static void get_offers(http_req_t *req)
{
    db_call(req, "SELECT rn_offers()", 0, NULL, NULL, NULL);
}

/* GET /api/v1/tickets/balance: the balance and the newest ledger rows. */
static void get_balance(http_req_t *req)
{
    const char *params[] = {db_caller_uid(req), BALANCE_RECENT};
    db_call(req, "SELECT rn_balance_recent($1, $2::integer)", 2, params, NULL, NULL);
}

static void get_purchase_history(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {db_caller_uid(req), limit, cursor};
    db_call(req, "SELECT rn_purchase_history($1, $2::integer, $3::bigint)", 3, params, NULL, NULL);
}

/* Settles a purchase: rn_purchase_settle, then the stored answer goes out. */
static void settle(http_req_t *req, long long purchase_id, const payment_result_t *r)
{
    static const char *const codes[] = {
        [PAYMENT_SUCCEEDED] = NULL,
        [PAYMENT_DECLINED] = "payment_declined",
        [PAYMENT_INVALID] = "payment_invalid",
        [PAYMENT_TIMEOUT] = "payment_timeout",
        [PAYMENT_CANCELLED] = "payment_unavailable",
    };
    char id[HTTP_NUM_TEXT];
    snprintf(id, sizeof id, "%lld", purchase_id);
    bool ok = r->status == PAYMENT_SUCCEEDED;
    const char *message = ok ? NULL : r->message ? r->message : "the payment failed";
    const char *params[] = {id, ok ? "true" : "false", ok ? r->provider_ref : NULL,
                            codes[r->status], message};
    db_call(req, "SELECT rn_purchase_settle($1::bigint, $2::boolean, $3, $4, $5)", 5, params, NULL,
            NULL);
}

typedef struct charge_call {
    http_req_t *req;
    long long purchase_id;
} charge_call_t;

static void on_charged(void *arg, const payment_result_t *r)
{
    charge_call_t *call = arg;
    http_req_t *req = call->req;
    long long purchase_id = call->purchase_id;
    free(call);
    if (r->status == PAYMENT_CANCELLED) {
        /* shutting down: the pool is about to close; a webhook or the sweep settles it */
        http_respond_error(req, 503, "unavailable",
                           "the hub is restarting; purchase %lld is pending, retry with the same "
                           "Idempotency-Key later",
                           purchase_id);
        return;
    }
    settle(req, purchase_id, r);
}

/* rn_purchase_begin answered: charge now, or that was the final answer. */
static void on_purchase_begun(http_req_t *req, json_t *result, void *arg)
{
    (void)arg;
    json_t *charge = json_object_get(result, "charge");
    if (!json_is_object(charge)) {
        db_respond(req, result);
        return;
    }
    long long purchase_id = json_integer_value(json_object_get(charge, "purchase_id"));
    payment_charge_t c = {
        .purchase_id = purchase_id,
        .amount_cents = (int)json_integer_value(json_object_get(charge, "amount_cents")),
        .currency = json_string_value(json_object_get(charge, "currency")),
        /* the parsed body lives as long as req */
        .token = json_string_value(json_object_get(http_req_json(req), "payment_token")),
    };
    charge_call_t *call = malloc(sizeof *call);
    if (call) {
        *call = (charge_call_t){req, purchase_id};
        if (payments_charge(hub_payments(http_req_hub(req)), &c, on_charged, call) == 0)
            return;
        free(call);
    }
    payment_result_t failed = {PAYMENT_CANCELLED, NULL, "the payment could not be started"};
    settle(req, purchase_id, &failed);
}

/* POST /api/v1/tickets/purchase {offer_id, payment_token}, Idempotency-Key optional. */
static void post_purchase(http_req_t *req)
{
    json_t *body = http_req_json(req);
    if (!body)
        return;
    json_t *offer = json_object_get(body, "offer_id");
    const char *token = json_string_value(json_object_get(body, "payment_token"));
    if (!json_is_integer(offer) || json_integer_value(offer) < 1) {
        http_respond_error(req, 400, "bad_request", "offer_id must be a positive integer");
        return;
    }
    if (!token || !*token || strlen(token) >= TOKEN_MAX) {
        http_respond_error(req, 400, "bad_request",
                           "payment_token must be the token of the payment provider's SDK");
        return;
    }
    char hash[65], offer_id[HTTP_NUM_TEXT];
    http_req_hash(req, hash);
    snprintf(offer_id, sizeof offer_id, "%" JSON_INTEGER_FORMAT, json_integer_value(offer));
    const char *params[] = {db_caller_uid(req), http_req_idempotency_key(req), hash, offer_id,
                            payments_provider_name(hub_payments(http_req_hub(req)))};
    db_call(req, "SELECT rn_purchase_begin($1, $2, $3, $4::bigint, $5)", 5, params,
            on_purchase_begun, NULL);
}

/* ---- promo codes ------------------------------------------------------- */

/* db_result_cb: a code that worked gives back the token its attempt took. */
static void on_promo_result(http_req_t *req, json_t *result, void *arg)
{
    json_int_t status = json_integer_value(json_object_get(result, "status"));
    (void)arg;
    if (status >= 200 && status < 300)
        ratelimit_refund(hub_ratelimit(http_req_hub(req)), LIMIT_PROMO, db_caller_uid(req));
    db_respond(req, result);
}

/* ratelimit_cb: the user's budget of failed codes had a token (the attempt takes it). */
static void on_promo_admitted(void *arg, int allowed, unsigned retry_after_ms)
{
    http_req_t *req = arg;
    if (!allowed) {
        guard_respond_limited(req, retry_after_ms);
        return;
    }
    const char *code = json_string_value(json_object_get(http_req_json(req), "code"));
    char hash[65];
    http_req_hash(req, hash);
    const char *params[] = {db_caller_uid(req), http_req_idempotency_key(req), hash, code};
    db_call(req, "SELECT rn_promo_use($1, $2, $3, $4)", 4, params, on_promo_result, NULL);
}

/*
 * POST /api/v1/promos/use {code}, Idempotency-Key optional. Each attempt
 * takes a token from the user's budget of failed codes first, and a code
 * that works gives it back: past the limit, 429 and no lookup.
 */
static void post_promo_use(http_req_t *req)
{
    json_t *body = http_req_json(req);
    const char *code;
    if (!body || body_string(req, body, "code", true, &code))
        return;
    rl_key_t key = {LIMIT_PROMO, db_caller_uid(req)};
    ratelimit_take(hub_ratelimit(http_req_hub(req)), &key, 1, on_promo_admitted, req);
}

static void get_promo_history(http_req_t *req)
{
    char limit[HTTP_NUM_TEXT], cursor_text[HTTP_NUM_TEXT];
    const char *cursor;
    if (http_req_page(req, limit, cursor_text, &cursor) != 0)
        return;
    const char *params[] = {db_caller_uid(req), limit, cursor};
    db_call(req, "SELECT rn_promo_history($1, $2::integer, $3::bigint)", 3, params, NULL, NULL);
}

/* ---- payment webhooks -------------------------------------------------- */

/*
 * POST /api/v1/payments/webhook: public, authenticated by its signature
 * (payments_webhook_verify). {"id":"evt_1","type":"payment.succeeded",
 * "data":{"purchase_id":N,"payment_id":"..."}}; rn_payment_webhook dedupes
 * the event id in the transaction of its effect.
 */
static void post_payment_webhook(http_req_t *req)
{
    const char *secret = hub_config(http_req_hub(req))->payment_webhook_secret;
    if (!secret || !*secret) {
        http_respond_error(req, 503, "webhooks_disabled",
                           "no payment webhook secret is configured");
        return;
    }
    char sig[SIGNATURE_MAX];
    size_t len;
    const char *raw = http_req_body(req, &len);
    char why[80] = "missing Retronova-Signature header";
    if (http_req_header(req, "retronova-signature:", sig, sizeof sig) < 0 ||
        payments_webhook_verify(secret, sig, raw, len, (long long)time(NULL), why, sizeof why) !=
            0) {
        http_respond_error(req, 400, "invalid_signature", "%s", why);
        return;
    }
    json_t *body = http_req_json(req);
    if (!body)
        return;
    const char *id = json_string_value(json_object_get(body, "id"));
    const char *type = json_string_value(json_object_get(body, "type"));
    json_t *data = json_object_get(body, "data");
    json_t *purchase = json_object_get(data, "purchase_id");
    const char *ref = json_string_value(json_object_get(data, "payment_id"));
    if (!id || !*id || strlen(id) > 255 || !type) {
        http_respond_error(req, 400, "bad_request", "an event needs an id and a type");
        return;
    }
    char purchase_id[HTTP_NUM_TEXT];
    bool payment = !strncmp(type, "payment.", 8);
    if (payment && (!json_is_integer(purchase) || json_integer_value(purchase) < 1)) {
        http_respond_error(req, 400, "bad_request", "a payment event needs data.purchase_id");
        return;
    }
    snprintf(purchase_id, sizeof purchase_id, "%" JSON_INTEGER_FORMAT,
             json_integer_value(purchase));
    const char *params[] = {id,
                            type,
                            payment ? purchase_id : NULL,
                            ref && strlen(ref) <= 255 ? ref : NULL,
                            payments_provider_name(hub_payments(http_req_hub(req))),
                            raw};
    db_call(req, "SELECT rn_payment_webhook($1, $2, $3::bigint, $4, $5, $6::jsonb)", 6, params,
            NULL, NULL);
}

static const route_t routes[] = {
    {HTTP_POST, "/api/v1/auth/register", ROUTE_USER, post_register},
    {HTTP_GET, "/api/v1/auth/me", ROUTE_USER, get_me},
    {HTTP_GET, "/api/v1/tickets/offers", ROUTE_PUBLIC, get_offers},
    {HTTP_POST, "/api/v1/tickets/purchase", ROUTE_USER, post_purchase},
    {HTTP_GET, "/api/v1/tickets/balance", ROUTE_USER, get_balance},
    {HTTP_GET, "/api/v1/tickets/purchase-history", ROUTE_USER, get_purchase_history},
    {HTTP_POST, "/api/v1/promos/use", ROUTE_USER, post_promo_use},
    {HTTP_GET, "/api/v1/promos/history", ROUTE_USER, get_promo_history},
    {HTTP_POST, "/api/v1/payments/webhook", ROUTE_PUBLIC, post_payment_webhook},
};

const route_table_t api_tickets_routes = {routes, sizeof routes / sizeof routes[0]};
