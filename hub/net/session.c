/*
 * session: WebSocket sessions and their registry (see session.h).
 */
#include "session.h"

#include <openssl/crypto.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "auth.h"
#include "envelope.h"
#include "fanout.h"
#include "firebase_keys.h"
#include "log.h"
#include "ratelimit.h"
#include "sendv.h"
#include "session_priv.h"
#include "userstate.h"

typedef struct cabinet_auth cabinet_auth_t;

/* An API key check in flight (hooks.cabinet_key_check). */
struct cabinet_auth {
    session_ref_t *ref;
    bool has_id;
    int64_t id;
    long arcade_id;
};

/* What waits on a rate-limit answer (ratelimit.h) during authentication. */
typedef enum ws_check_kind {
    WS_CHECK_CONNECT,   /* a new socket from this IP */
    WS_CHECK_BAD_TOKEN, /* a token that did not verify, from this IP */
    WS_CHECK_USER,      /* a verified user authenticating */
    WS_CHECK_CABINET,   /* a cabinet key about to be looked up, from this IP */
} ws_check_kind_t;

typedef struct ws_check {
    session_ref_t *ref;
    ws_check_kind_t kind;
    bool has_id;
    int64_t id;
    const char *why;      /* WS_CHECK_BAD_TOKEN: the verifier's reason (static) */
    auth_identity_t who;  /* WS_CHECK_USER */
    char key[APIKEY_MAX]; /* WS_CHECK_CABINET */
} ws_check_t;

size_t session_pss_size(void)
{
    return sizeof(session_t);
}

session_ref_t *session_ref(session_t *s)
{
    if (!s->ref) {
        if (!(s->ref = calloc(1, sizeof *s->ref)))
            return NULL;
        s->ref->session = s;
        s->ref->refs = 1; /* the session's own */
    }
    s->ref->refs++;
    return s->ref;
}

session_t *session_ref_get(const session_ref_t *ref)
{
    return ref->session;
}

void session_ref_release(session_ref_t *ref)
{
    if (ref && --ref->refs == 0)
        free(ref);
}

hub_t *session_hub(const session_t *s)
{
    return s->hub;
}

struct member **session_members(session_t *s)
{
    return &s->members;
}

const char *session_uid(const session_t *s)
{
    return s->uid;
}

long session_arcade_id(const session_t *s)
{
    return s->arcade_id;
}

/* ---- registry -------------------------------------------------------- */

static void auth_timer_arm(sessions_t *reg);

/* The two FIFOs (waitq, liveq) share these; off names the session's link. */
#define WAIT_LINK offsetof(session_t, wait)
#define LIVE_LINK offsetof(session_t, live)

static session_link_t *link_at(session_t *s, size_t off)
{
    return (session_link_t *)((char *)s + off);
}

static void fifo_append(session_fifo_t *q, session_t *s, size_t off)
{
    session_link_t *l = link_at(s, off);
    l->prev = q->tail;
    l->next = NULL;
    if (q->tail)
        link_at(q->tail, off)->next = s;
    else
        q->head = s;
    q->tail = s;
}

/* A session on no list is left as it is. */
static void fifo_remove(session_fifo_t *q, session_t *s, size_t off)
{
    session_link_t *l = link_at(s, off);
    if (l->prev)
        link_at(l->prev, off)->next = l->next;
    else if (q->head == s)
        q->head = l->next;
    if (l->next)
        link_at(l->next, off)->prev = l->prev;
    else if (q->tail == s)
        q->tail = l->prev;
    l->prev = l->next = NULL;
}

static void on_auth_timer(uv_timer_t *t)
{
    sessions_t *reg = t->data;
    uint64_t now = hub_now_ms(reg->hub);
    while (reg->waitq.head && reg->waitq.head->auth_deadline_ms <= now) {
        session_t *s = reg->waitq.head;
        session_send_error(s, false, 0, "unauthenticated", "no authentication in time");
        session_close(s, CLOSE_UNAUTHENTICATED, "authentication timeout");
        /* session_close() leaves the FIFO through session_wait_remove() */
    }
    auth_timer_arm(reg);
}

static void auth_timer_arm(sessions_t *reg)
{
    if (!reg->waitq.head) {
        uv_timer_stop(&reg->auth_timer);
        return;
    }
    uint64_t now = hub_now_ms(reg->hub), due = reg->waitq.head->auth_deadline_ms;
    uv_timer_start(&reg->auth_timer, on_auth_timer, due > now ? due - now : 0, 0);
}

void session_wait_remove(session_t *s)
{
    sessions_t *reg = hub_sessions(s->hub);
    if (!s->waiting)
        return;
    bool was_head = reg->waitq.head == s;
    s->waiting = false;
    fifo_remove(&reg->waitq, s, WAIT_LINK);
    if (was_head) /* the timer was set for this deadline: follow the new head, or stop */
        auth_timer_arm(reg);
}

/* Deadlines are connect time + one timeout, so appending keeps the FIFO sorted. */
static void wait_append(sessions_t *reg, session_t *s)
{
    s->waiting = true;
    s->auth_deadline_ms = hub_now_ms(reg->hub) + (uint64_t)hub_config(reg->hub)->auth_timeout_ms;
    fifo_append(&reg->waitq, s, WAIT_LINK);
    if (reg->waitq.head == s)
        auth_timer_arm(reg);
}

/* ---- keepalive -------------------------------------------------------- */

/*
 * Every session is on one list ordered by the time of the peer's last frame:
 * a frame moves its session to the tail (O(1)), so the silent ones gather at
 * the head and the timer looks at those only: a ping after --ws-ping-ms of
 * silence, a drop after --ws-hangup-ms (no close frame: a peer that answers
 * no ping reads none). It replaces lws's validity timers (server.c: O(sockets)
 * per ping there).
 */

/* The peer sent a frame (a pong too): alive until --ws-ping-ms from now. */
static void heard(session_t *s)
{
    sessions_t *reg = hub_sessions(s->hub);
    s->last_rx_ms = hub_now_ms(s->hub);
    s->pinged = false;
    if (reg->liveq.tail != s) {
        fifo_remove(&reg->liveq, s, LIVE_LINK);
        fifo_append(&reg->liveq, s, LIVE_LINK);
    }
}

static void on_keepalive_timer(uv_timer_t *t)
{
    sessions_t *reg = t->data;
    const hub_config_t *cfg = hub_config(reg->hub);
    uint64_t now = hub_now_ms(reg->hub);
    session_t *next;
    for (session_t *s = reg->liveq.head; s && s->last_rx_ms + (uint64_t)cfg->ws_ping_ms <= now;
         s = next) {
        next = s->live.next;
        if (s->closing || s->peer_closed)
            continue; /* its close frame's timeout ends it */
        if (s->last_rx_ms + (uint64_t)cfg->ws_hangup_ms <= now)
            session_out_drop(s);
        else if (!s->pinged)
            s->pinged = session_out_ping(s); /* not now (written this turn, full): next tick */
    }
}

/* Often enough that a ping goes within half the pong's time, at most once a second. */
static uint64_t keepalive_tick_ms(const hub_config_t *cfg)
{
    uint64_t half = (uint64_t)(cfg->ws_hangup_ms - cfg->ws_ping_ms) / 2;
    return half > 1000 ? 1000 : half < 50 ? 50 : half;
}

/*
 * Ends a loop turn (after the poll phase): a socket is written at most once
 * per turn, and what had to wait for the next turn goes now (session_out.c).
 * Neither handle keeps the loop alive.
 */
static void on_turn(uv_check_t *c)
{
    sessions_t *reg = c->data;
    if (++reg->turn == 0)
        reg->turn = 1; /* 0 is "never written" */
    session_out_turn(reg);
}

sessions_t *sessions_new(hub_t *hub)
{
    sessions_t *reg = calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    reg->hub = hub;
    reg->turn = 1;
    uv_timer_init(hub_loop(hub), &reg->auth_timer);
    reg->auth_timer.data = reg;
    uint64_t tick = keepalive_tick_ms(hub_config(hub));
    uv_timer_init(hub_loop(hub), &reg->keepalive_timer);
    reg->keepalive_timer.data = reg;
    uv_timer_start(&reg->keepalive_timer, on_keepalive_timer, tick, tick);
    uv_unref((uv_handle_t *)&reg->keepalive_timer);
    uv_check_init(hub_loop(hub), &reg->turn_check);
    reg->turn_check.data = reg;
    uv_check_start(&reg->turn_check, on_turn);
    uv_unref((uv_handle_t *)&reg->turn_check);
    uv_idle_init(hub_loop(hub), &reg->flush_idle);
    reg->flush_idle.data = reg;
    uv_unref((uv_handle_t *)&reg->flush_idle);
    reg->open_handles = 4;
    return reg;
}

int sessions_set_hooks(sessions_t *reg, const session_hooks_t *hooks)
{
    const session_handler_t *by_type[SESSION_MSG_TYPES] = {0};
    for (size_t i = 0; i < hooks->n_handlers; i++) {
        const session_handler_t *h = &hooks->handlers[i];
        if ((unsigned)h->type >= SESSION_MSG_TYPES || h->type == RN_MSG_UNKNOWN ||
            h->type == RN_MSG_AUTH || h->type == RN_MSG_PING || by_type[h->type] || !h->fn)
            return -1;
        by_type[h->type] = h;
    }
    reg->hooks = *hooks;
    memcpy(reg->by_type, by_type, sizeof by_type);
    return 0;
}

static void on_registry_closed(uv_handle_t *h)
{
    sessions_t *reg = h->data;
    if (--reg->open_handles == 0)
        free(reg);
}

void sessions_close(sessions_t *reg)
{
    uv_close((uv_handle_t *)&reg->auth_timer, on_registry_closed);
    uv_close((uv_handle_t *)&reg->keepalive_timer, on_registry_closed);
    uv_close((uv_handle_t *)&reg->turn_check, on_registry_closed);
    uv_close((uv_handle_t *)&reg->flush_idle, on_registry_closed);
}

size_t sessions_count(const sessions_t *reg)
{
    return reg->count;
}

void sessions_close_all(sessions_t *reg, int code, const char *reason)
{
    for (session_t *s = reg->head; s; s = s->next)
        session_close(s, code, reason);
}

size_t sessions_close_users(sessions_t *reg, bool (*pick)(const char *uid, void *arg), void *arg,
                            int code, const char *err_code, const char *message)
{
    size_t n = 0;
    for (session_t *s = reg->head; s; s = s->next)
        if (s->uid && !s->closing && pick(s->uid, arg)) {
            session_send_error(s, false, 0, err_code, message);
            session_close(s, code, err_code);
            n++;
        }
    return n;
}

static void registry_add(sessions_t *reg, session_t *s)
{
    s->next = reg->head;
    if (reg->head)
        reg->head->prev = s;
    reg->head = s;
    reg->count++;
}

static void registry_remove(sessions_t *reg, session_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        reg->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    reg->count--;
}

/* ---- authentication --------------------------------------------------- */

/* Authenticated: counted under its kind, and listening to its private channels. */
static void set_kind(session_t *s, conn_kind_t kind)
{
    metrics_conn_add(s->kind, -1);
    s->kind = kind;
    metrics_conn_add(kind, 1);
    session_wait_remove(s);
    sessions_t *reg = hub_sessions(s->hub);
    if (reg->hooks.authenticated && reg->hooks.authenticated(s, kind) != 0)
        session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
}

/* Accepts a verified player or admin and says so. */
/*
 * The auth reply. It carries the hub's clock (server_time_ms) so a device can
 * count down deadline_ms values without trusting its own clock.
 */
static json_t *auth_ok(bool has_id, int64_t id)
{
    json_t *ok = envelope_ok(has_id, id);
    uv_timeval64_t now;
    if (uv_gettimeofday(&now) == 0)
        json_object_set_new(ok, "server_time_ms",
                            json_integer((json_int_t)now.tv_sec * 1000 + now.tv_usec / 1000));
    return ok;
}

static void accept_identity(session_t *s, const auth_identity_t *who, bool has_id, int64_t id)
{
    s->uid = strdup(who->uid);
    set_kind(s, who->admin ? CONN_ADMIN : CONN_PLAYER);
    json_t *ok = auth_ok(has_id, id);
    json_object_set_new(ok, "uid", json_string(who->uid));
    json_object_set_new(ok, "role", json_string(who->admin ? "admin" : "player"));
    session_send_json(s, ok);
}

static void reject(session_t *s, bool has_id, int64_t id, const char *why)
{
    session_send_error(s, has_id, id, "unauthenticated", why);
    session_close(s, CLOSE_UNAUTHENTICATED, "unauthenticated");
}

/* Refused by an abuse limit: the reason, then close 4008. */
static void limited(session_t *s, bool has_id, int64_t id, unsigned retry_after_ms)
{
    char msg[96];
    snprintf(msg, sizeof msg, "too many attempts: retry in %u s", (retry_after_ms + 999) / 1000);
    session_send_error(s, has_id, id, "rate_limited", msg);
    session_close(s, CLOSE_RATE_LIMITED, "rate limited");
}

/* A deleted user's token: refused with 4003 (userstate.h). */
static bool refuse_deleted(session_t *s, const char *uid, bool has_id, int64_t id)
{
    if (!userstate_is_deleted(hub_userstate(s->hub), uid))
        return false;
    metrics_deleted_user_refused();
    session_send_error(s, has_id, id, "account_deleted", "this account was deleted");
    session_close(s, CLOSE_FORBIDDEN, "account deleted");
    return true;
}

static void cabinet_lookup(session_t *s, const char *key, bool has_id, int64_t id);

/* ratelimit_cb: the answer for one authentication step (ws_check_t). */
static void on_ws_check(void *arg, int allowed, unsigned retry_after_ms)
{
    ws_check_t *c = arg;
    session_t *s = session_ref_get(c->ref);
    if (s && !s->closing) {
        if (c->kind != WS_CHECK_CONNECT)
            s->authenticating = false;
        if (!allowed)
            limited(s, c->has_id, c->id, retry_after_ms);
        else if (c->kind == WS_CHECK_BAD_TOKEN)
            reject(s, c->has_id, c->id, c->why);
        else if (c->kind == WS_CHECK_USER && !refuse_deleted(s, c->who.uid, c->has_id, c->id))
            accept_identity(s, &c->who, c->has_id, c->id);
        else if (c->kind == WS_CHECK_CABINET)
            cabinet_lookup(s, c->key, c->has_id, c->id);
    }
    session_ref_release(c->ref);
    OPENSSL_cleanse(c->key, sizeof c->key);
    free(c);
}

/*
 * Asks the limit for key on behalf of s; the answer comes to on_ws_check
 * (perhaps at once, even before this returns). Takes c.
 */
static void ws_check(session_t *s, ws_check_t *c, limit_id_t limit, const char *key)
{
    rl_key_t k = {limit, key};
    if (!(c->ref = session_ref(s))) {
        c->ref = NULL;
        free(c);
        session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    if (c->kind != WS_CHECK_CONNECT)
        s->authenticating = true;
    ratelimit_take(hub_ratelimit(s->hub), &k, 1, on_ws_check, c);
}

static ws_check_t *ws_check_new(ws_check_kind_t kind, bool has_id, int64_t id)
{
    ws_check_t *c = calloc(1, sizeof *c);
    if (c) {
        c->kind = kind;
        c->has_id = has_id;
        c->id = id;
    }
    return c;
}

/* A token waiting for the Firebase keys that its unknown kid made us refetch. */
typedef struct token_wait {
    session_ref_t *ref;
    bool has_id;
    int64_t id;
    char token[];
} token_wait_t;

static void verify_token(session_t *s, const char *token, bool has_id, int64_t id, bool may_wait);

static void on_keys_refetched(void *arg)
{
    token_wait_t *w = arg;
    session_t *s = session_ref_get(w->ref);
    if (s && !s->closing) {
        s->authenticating = false;
        verify_token(s, w->token, w->has_id, w->id, false);
    }
    session_ref_release(w->ref);
    OPENSSL_cleanse(w->token, strlen(w->token));
    free(w);
}

/*
 * An unknown kid has just started a refetch of the Firebase keys (auth's
 * hook): verify again once it ends instead of refusing a token signed with a
 * key that Google has just rotated in. 0 when waiting.
 */
static int wait_for_keys(session_t *s, const char *token, bool has_id, int64_t id)
{
    size_t len = strlen(token) + 1;
    token_wait_t *w = malloc(sizeof *w + len);
    if (!w || !(w->ref = session_ref(s))) {
        free(w);
        return -1;
    }
    w->has_id = has_id;
    w->id = id;
    memcpy(w->token, token, len);
    if (firebase_keys_wait(hub_firebase_keys(s->hub), on_keys_refetched, w) != 0) {
        session_ref_release(w->ref);
        free(w);
        return -1;
    }
    s->authenticating = true;
    return 0;
}

/*
 * A token: a bad one counts against the client IP's budget of failed
 * verifications (4001, or 4008 past it); a good one against the user's
 * budget of authentications; a deleted user's is refused with 4003.
 * An unknown kid (Google rotated its keys) first waits for one refetch of
 * the keys and is verified again (may_wait).
 */
static void verify_token(session_t *s, const char *token, bool has_id, int64_t id, bool may_wait)
{
    auth_identity_t who;
    const char *why = "invalid token";
    bool ok = auth_verify(hub_auth(s->hub), token, time(NULL), &who, &why) == 0;
    if (!ok && may_wait && why && strcmp(why, "unknown_kid") == 0 &&
        wait_for_keys(s, token, has_id, id) == 0)
        return;
    if (ok && refuse_deleted(s, who.uid, has_id, id))
        return;
    ws_check_t *c = ws_check_new(ok ? WS_CHECK_USER : WS_CHECK_BAD_TOKEN, has_id, id);
    if (!c) {
        reject(s, has_id, id, "out of memory");
        return;
    }
    c->why = why;
    if (ok)
        c->who = who;
    ws_check(s, c, ok ? LIMIT_WS_USER : LIMIT_TOKEN, ok ? who.uid : s->client_ip);
}

static void auth_token(session_t *s, const char *token, bool has_id, int64_t id)
{
    verify_token(s, token, has_id, id, true);
}

static void on_cabinet_key(void *arg, int result, const char *errmsg)
{
    cabinet_auth_t *ca = arg;
    session_t *s = session_ref_get(ca->ref);
    if (s) {
        s->authenticating = false;
        if (result == SESSION_KEY_EUNAVAILABLE) {
            /* not the client's failure: the reserved attempt is given back */
            ratelimit_refund(hub_ratelimit(s->hub), LIMIT_CABINET_KEY, s->client_ip);
            session_send_error(s, ca->has_id, ca->id, "unavailable", "database unavailable");
            session_close(s, CLOSE_UNAUTHENTICATED, "unavailable");
            log_warn("cabinet auth query failed",
                     json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        } else if (result != 0) {
            reject(s, ca->has_id, ca->id, "unknown or revoked API key");
        } else {
            /* the attempt reserved a token: a right key gives it back */
            ratelimit_refund(hub_ratelimit(s->hub), LIMIT_CABINET_KEY, s->client_ip);
            s->arcade_id = ca->arcade_id;
            set_kind(s, CONN_CABINET);
            json_t *ok = auth_ok(ca->has_id, ca->id);
            json_object_set_new(ok, "role", json_string("cabinet"));
            json_object_set_new(ok, "arcade_id", json_integer(s->arcade_id));
            session_send_json(s, ok);
            sessions_t *reg = hub_sessions(s->hub);
            if (reg->hooks.cabinet_online)
                reg->hooks.cabinet_online(s);
        }
    }
    session_ref_release(ca->ref);
    free(ca);
}

/*
 * An API key: each attempt first takes a token from the client IP's budget
 * of failed keys (a right key gives it back), so that past the limit the
 * answer is 4008 at once and no query is made.
 */
static void auth_api_key(session_t *s, const char *key, bool has_id, int64_t id)
{
    long arcade_id;
    if (s->authenticating || strlen(key) >= APIKEY_MAX || apikey_arcade_id(key, &arcade_id) != 0) {
        reject(s, has_id, id, "malformed API key");
        return;
    }
    ws_check_t *c = ws_check_new(WS_CHECK_CABINET, has_id, id);
    if (!c) {
        reject(s, has_id, id, "out of memory");
        return;
    }
    strcpy(c->key, key);
    ws_check(s, c, LIMIT_CABINET_KEY, s->client_ip);
}

/* Has the key checked against its arcade's (hooks.cabinet_key_check). */
static void cabinet_lookup(session_t *s, const char *key, bool has_id, int64_t id)
{
    long arcade_id;
    apikey_arcade_id(key, &arcade_id);
    cabinet_auth_t *ca = calloc(1, sizeof *ca);
    if (!ca || !(ca->ref = session_ref(s))) {
        free(ca);
        reject(s, has_id, id, "out of memory");
        return;
    }
    ca->has_id = has_id;
    ca->id = id;
    ca->arcade_id = arcade_id;
    sessions_t *reg = hub_sessions(s->hub);
    if (!reg->hooks.cabinet_key_check ||
        reg->hooks.cabinet_key_check(s->hub, arcade_id, key, on_cabinet_key, ca) != 0) {
        session_ref_release(ca->ref);
        free(ca);
        session_send_error(s, has_id, id, "unavailable", "database unavailable");
        session_close(s, CLOSE_UNAUTHENTICATED, "unavailable");
        return;
    }
    s->authenticating = true;
}

static void on_auth_message(session_t *s, const envelope_t *env)
{
    const char *token = json_string_value(json_object_get(env->body, "token"));
    const char *key = json_string_value(json_object_get(env->body, "api_key"));
    if (s->kind != CONN_PENDING || s->authenticating)
        session_send_error(s, env->has_id, env->id, "bad_request", "already authenticated");
    else if (token)
        auth_token(s, token, env->has_id, env->id);
    else if (key)
        auth_api_key(s, key, env->has_id, env->id);
    else
        reject(s, env->has_id, env->id, "auth needs a token or an api_key");
}

/* An Authorization header at the handshake: "Bearer <jwt>" or "ApiKey <key>". */
static bool auth_from_header(session_t *s)
{
    char hdr[8192];
    int n = lws_hdr_total_length(s->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0)
        return false;
    if (n >= (int)sizeof hdr ||
        lws_hdr_copy(s->wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        reject(s, false, 0, "authorization header too long");
    else if (strncasecmp(hdr, "Bearer ", 7) == 0)
        auth_token(s, hdr + 7, false, 0);
    else if (strncasecmp(hdr, "ApiKey ", 7) == 0)
        auth_api_key(s, hdr + 7, false, 0);
    else
        reject(s, false, 0, "expected Bearer <token> or ApiKey <key>");
    return true;
}

/* ---- inbound ---------------------------------------------------------- */

/* Token bucket: msg_rate per second, bursts of twice that. */
static bool rate_ok(session_t *s)
{
    double rate = hub_config(s->hub)->msg_rate;
    uint64_t now = hub_now_ms(s->hub);
    s->rate_tokens += (double)(now - s->rate_ts_ms) * rate / 1000.0;
    if (s->rate_tokens > 2 * rate)
        s->rate_tokens = 2 * rate;
    s->rate_ts_ms = now;
    if (s->rate_tokens < 1)
        return false;
    s->rate_tokens -= 1;
    return true;
}

/* One message of a session past the auth gate: net's own, or the table's. */
static void dispatch(session_t *s, const envelope_t *env)
{
    if (env->type == RN_MSG_AUTH) {
        on_auth_message(s, env);
        return;
    }
    if (env->type == RN_MSG_PING) {
        json_t *pong = envelope_ok(env->has_id, env->id);
        json_object_set_new(pong, "type", json_string("pong"));
        session_send_json(s, pong);
        return;
    }
    sessions_t *reg = hub_sessions(s->hub);
    const session_handler_t *h =
        (unsigned)env->type < SESSION_MSG_TYPES ? reg->by_type[env->type] : NULL;
    if (!h)
        session_send_error(s, env->has_id, env->id, "unknown_type", "unknown message type");
    else if ((h->flags & SESSION_MSG_CABINET_ONLY) && s->kind != CONN_CABINET)
        session_send_error(s, env->has_id, env->id, "forbidden", "cabinet messages only");
    else
        h->fn(s, env);
}

static void on_message(session_t *s, const char *data, size_t len)
{
    metrics_ws_in();
    if (!rate_ok(s)) {
        session_close(s, CLOSE_RATE_LIMITED, "rate limited");
        return;
    }
    envelope_limits_t limits = {(size_t)hub_config(s->hub)->max_frame, 0};
    envelope_t env;
    int rc = envelope_decode(data, len, &limits, &env);
    if (rc == ENV_EUTF8) {
        session_close(s, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
        return;
    }
    if (rc != ENV_OK) {
        session_send_error(s, env.has_id, env.id, envelope_err_code(rc), "malformed message");
        return;
    }
    if (s->kind == CONN_PENDING && s->authenticating && env.type != RN_MSG_AUTH) {
        /* a key or a limit is being checked: not an offence, just too early */
        session_send_error(s, env.has_id, env.id, "authenticating",
                           "the credentials are being checked: wait for the auth reply");
    } else if (s->kind == CONN_PENDING && env.type != RN_MSG_AUTH) {
        reject(s, env.has_id, env.id, "authenticate first");
    } else {
        dispatch(s, &env);
    }
    envelope_clear(&env);
}

/* Gathers fragments; a message over max_frame closes with 1009 before it is kept. */
static int on_receive(session_t *s, const char *in, size_t len)
{
    struct lws *wsi = s->wsi;
    heard(s);
    if (s->closing)
        return 0;
    if (lws_frame_is_binary(wsi)) {
        session_close(s, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, "text frames only");
        return 0;
    }
    size_t max = (size_t)hub_config(s->hub)->max_frame;
    size_t total = s->rx_len + len + lws_remaining_packet_payload(wsi);
    if (total > max) {
        free(s->rx);
        s->rx = NULL;
        s->rx_len = 0;
        session_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
        return 0;
    }
    bool whole = lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) &&
                 !lws_remaining_packet_payload(wsi) && !s->rx;
    if (whole) {
        on_message(s, in, len);
        return 0;
    }
    char *grown = realloc(s->rx, s->rx_len + len + 1);
    if (!grown)
        return -1;
    s->rx = grown;
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
        char *msg = s->rx;
        size_t msg_len = s->rx_len;
        s->rx = NULL;
        s->rx_len = 0;
        on_message(s, msg, msg_len);
        free(msg);
    }
    return 0;
}

/* ---- lifecycle -------------------------------------------------------- */

static void on_established(struct lws *wsi, session_t *s)
{
    hub_t *hub = lws_context_user(lws_get_context(wsi));
    s->wsi = wsi;
    s->hub = hub;
    /* written directly (session_out.c) only when the socket is ours alone and plain:
     * not TLS, not a stream inside a multiplexed (h2) connection */
    s->fd = sendv_fd(wsi);
    s->kind = CONN_PENDING;
    s->rate_ts_ms = hub_now_ms(hub);
    s->rate_tokens = 2.0 * hub_config(hub)->msg_rate;
    metrics_conn_add(CONN_PENDING, 1);
    registry_add(hub_sessions(hub), s);
    s->last_rx_ms = hub_now_ms(hub);
    fifo_append(&hub_sessions(hub)->liveq, s, LIVE_LINK);
    if (hub_draining(hub)) {
        session_close(s, CLOSE_DRAINING, "draining");
        return;
    }
    char ip[CLIENTIP_MAX];
    hub_client_ip(hub, wsi, NULL, ip);
    clientip_limit_key(ip, s->client_ip, sizeof s->client_ip);
    ws_check_t *c = ws_check_new(WS_CHECK_CONNECT, false, 0);
    if (c)
        ws_check(s, c, LIMIT_WS_IP, s->client_ip);
    if (s->closing)
        return;
    if (!auth_from_header(s) && s->kind == CONN_PENDING && !s->authenticating && !s->closing)
        wait_append(hub_sessions(hub), s);
}

static void on_closed(session_t *s)
{
    if (!s->hub)
        return; /* never established */
    sessions_t *reg = hub_sessions(s->hub);
    session_wait_remove(s);
    registry_remove(reg, s);
    fifo_remove(&reg->liveq, s, LIVE_LINK);
    if (s->ref) {
        s->ref->session = NULL;
        session_ref_release(s->ref);
    }
    if (s->kind != CONN_PENDING && reg->hooks.closed)
        reg->hooks.closed(s, s->kind);
    fanout_leave_all(hub_fanout(s->hub), s);
    metrics_conn_add(s->kind, -1);
    session_out_clear(s);
    free(s->rx);
    free(s->uid);
    s->hub = NULL;
}

/* Only /ws may upgrade, and only while the hub is not draining. */
static int filter_connection(struct lws *wsi)
{
    char *uri;
    int len;
    hub_t *hub = lws_context_user(lws_get_context(wsi));
    if (lws_http_get_uri_and_method(wsi, &uri, &len) < 0 || len != 3 || memcmp(uri, "/ws", 3))
        return 1;
    return hub_draining(hub) ? 1 : 0;
}

int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    session_t *s = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return filter_connection(wsi);
    case LWS_CALLBACK_ESTABLISHED:
        on_established(wsi, s);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return on_receive(s, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        if (s->hub)
            heard(s);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return session_out_writeable(s);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* the peer is answering our close frame: no second one (browsers see 1006);
         * or it closes first: lws answers it, and we write nothing more */
        if (s->close_sent)
            return -1;
        s->peer_closed = true;
        return 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(s);
        return 0;
    default:
        return 0;
    }
}
