/*
 * session: WebSocket sessions and their registry (see session.h).
 */
#include "session.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "auth.h"
#include "cabinet.h"
#include "envelope.h"
#include "events.h"
#include "fanout.h"
#include "log.h"
#include "queue.h"

typedef struct outq_node {
    struct outq_node *next;
    msgbuf_t *buf;
} outq_node_t;

typedef struct cabinet_auth cabinet_auth_t;

/* A conflated public view waiting to be written: the newest per key. */
typedef struct public_slot {
    long key;
    msgbuf_t *buf;
} public_slot_t;

#define PUBLIC_SLOTS_MAX 32

struct session_ref {
    session_t *session; /* NULL once the session closed */
    unsigned refs;
};

/* lws allocates this (zeroed) as the per-connection user memory. */
struct session {
    struct lws *wsi;
    hub_t *hub;
    session_t *prev, *next;           /* registry list */
    session_t *wait_prev, *wait_next; /* unauthenticated FIFO */
    uint64_t auth_deadline_ms;
    conn_kind_t kind;
    bool waiting, closing, close_sent;
    unsigned short close_code;
    const char *close_reason;
    char *uid;
    long arcade_id;
    session_ref_t *ref;           /* shared with async work; see session_ref() */
    bool authenticating;          /* an API key lookup in flight */
    outq_node_t *out_head, *out_tail;
    unsigned out_count;
    struct member *members;      /* channels joined (fanout.c) */
    int64_t *recent;             /* private lane: ids sent lately, a ring (see send_event) */
    unsigned char recent_next;
    bool resuming;
    outq_node_t *held_head, *held_tail; /* private events that arrived during a resume */
    public_slot_t *pub;                 /* allocated while views wait; npub of them */
    unsigned char npub;
    char *rx; /* a message being reassembled from fragments */
    size_t rx_len;
    uint64_t rate_ts_ms;
    double rate_tokens;
};

struct sessions {
    hub_t *hub;
    session_t *head;
    session_t *wait_head, *wait_tail;
    size_t count;
    uv_timer_t auth_timer;
};

/* An API key lookup in flight. */
struct cabinet_auth {
    session_ref_t *ref;
    bool has_id;
    int64_t id;
    char key[APIKEY_MAX];
};

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

conn_kind_t session_kind(const session_t *s)
{
    return s->kind;
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

static void on_auth_timer(uv_timer_t *t)
{
    sessions_t *reg = t->data;
    uint64_t now = hub_now_ms(reg->hub);
    while (reg->wait_head && reg->wait_head->auth_deadline_ms <= now) {
        session_t *s = reg->wait_head;
        session_send_error(s, false, 0, "unauthenticated", "no authentication in time");
        session_close(s, CLOSE_UNAUTHENTICATED, "authentication timeout");
        /* session_close() leaves the FIFO through wait_remove() */
    }
    auth_timer_arm(reg);
}

static void auth_timer_arm(sessions_t *reg)
{
    if (!reg->wait_head) {
        uv_timer_stop(&reg->auth_timer);
        return;
    }
    uint64_t now = hub_now_ms(reg->hub), due = reg->wait_head->auth_deadline_ms;
    uv_timer_start(&reg->auth_timer, on_auth_timer, due > now ? due - now : 0, 0);
}

static void wait_remove(sessions_t *reg, session_t *s)
{
    if (!s->waiting)
        return;
    bool was_head = reg->wait_head == s;
    s->waiting = false;
    if (s->wait_prev)
        s->wait_prev->wait_next = s->wait_next;
    else
        reg->wait_head = s->wait_next;
    if (s->wait_next)
        s->wait_next->wait_prev = s->wait_prev;
    else
        reg->wait_tail = s->wait_prev;
    s->wait_prev = s->wait_next = NULL;
    if (was_head) /* the timer was set for this deadline: follow the new head, or stop */
        auth_timer_arm(reg);
}

/* Deadlines are connect time + one timeout, so appending keeps the FIFO sorted. */
static void wait_append(sessions_t *reg, session_t *s)
{
    s->waiting = true;
    s->auth_deadline_ms = hub_now_ms(reg->hub) + (uint64_t)hub_config(reg->hub)->auth_timeout_ms;
    s->wait_prev = reg->wait_tail;
    if (reg->wait_tail)
        reg->wait_tail->wait_next = s;
    else
        reg->wait_head = s;
    reg->wait_tail = s;
    if (reg->wait_head == s)
        auth_timer_arm(reg);
}

sessions_t *sessions_new(hub_t *hub)
{
    sessions_t *reg = calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    reg->hub = hub;
    uv_timer_init(hub_loop(hub), &reg->auth_timer);
    reg->auth_timer.data = reg;
    return reg;
}

static void on_registry_closed(uv_handle_t *h)
{
    free(h->data);
}

void sessions_close(sessions_t *reg)
{
    uv_close((uv_handle_t *)&reg->auth_timer, on_registry_closed);
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

/* ---- outbound -------------------------------------------------------- */

static void list_clear(outq_node_t **head, outq_node_t **tail)
{
    while (*head) {
        outq_node_t *n = *head;
        *head = n->next;
        msgbuf_unref(n->buf);
        free(n);
    }
    *tail = NULL;
}

static int list_append(outq_node_t **head, outq_node_t **tail, msgbuf_t *b)
{
    outq_node_t *n = malloc(sizeof *n);
    if (!n)
        return -1;
    n->next = NULL;
    n->buf = msgbuf_ref(b);
    if (*tail)
        (*tail)->next = n;
    else
        *head = n;
    *tail = n;
    return 0;
}

static void outq_clear(session_t *s)
{
    list_clear(&s->out_head, &s->out_tail);
    s->out_count = 0;
}

void session_close(session_t *s, int code, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    s->close_code = (unsigned short)code;
    s->close_reason = reason;
    wait_remove(hub_sessions(s->hub), s);
    lws_callback_on_writable(s->wsi);
}

/*
 * Queues b. capped: live traffic, which closes a reader that falls
 * send_queue_max messages behind (4009). Replayed private events are not
 * capped: a resume is bounded by its batch, and they must never be dropped.
 */
static void enqueue(session_t *s, msgbuf_t *b, bool capped)
{
    if (!b || s->closing)
        return; /* a closing session takes nothing new */
    if (capped && s->out_count >= (unsigned)hub_config(s->hub)->send_queue_max) {
        outq_clear(s);
        s->closing = false; /* a slow-consumer close overrides a gentler one */
        session_close(s, CLOSE_SLOW_CONSUMER, "send queue overflow");
        return;
    }
    if (list_append(&s->out_head, &s->out_tail, b) != 0)
        return;
    s->out_count++;
    lws_callback_on_writable(s->wsi);
}

void session_send(session_t *s, msgbuf_t *b)
{
    enqueue(s, b, true);
}

void session_send_public(session_t *s, long key, msgbuf_t *b)
{
    if (!b || s->closing)
        return;
    if (!s->out_head && !s->npub) {
        session_send(s, b);
        return;
    }
    for (unsigned i = 0; i < s->npub; i++) {
        if (s->pub[i].key == key) {
            msgbuf_unref(s->pub[i].buf);
            s->pub[i].buf = msgbuf_ref(b);
            return;
        }
    }
    if (s->npub == PUBLIC_SLOTS_MAX)
        return; /* more keys than a session may subscribe to: cannot happen */
    if (!s->pub && !(s->pub = calloc(PUBLIC_SLOTS_MAX, sizeof *s->pub)))
        return;
    s->pub[s->npub++] = (public_slot_t){key, msgbuf_ref(b)};
    lws_callback_on_writable(s->wsi);
}

static void public_clear(session_t *s)
{
    for (unsigned i = 0; i < s->npub; i++)
        msgbuf_unref(s->pub[i].buf);
    free(s->pub);
    s->pub = NULL;
    s->npub = 0;
}

/* Moves the oldest waiting view to the write queue (the private lane goes first). */
static void public_take(session_t *s)
{
    msgbuf_t *b = s->pub[0].buf;
    memmove(&s->pub[0], &s->pub[1], (size_t)(s->npub - 1) * sizeof s->pub[0]);
    if (--s->npub == 0) {
        free(s->pub);
        s->pub = NULL;
    }
    list_append(&s->out_head, &s->out_tail, b);
    s->out_count++;
    msgbuf_unref(b);
}

/*
 * The private lane sends an event at most once per session, whichever way it
 * comes (live, a resume, a resynchronisation). Ids, not a high-water mark: an
 * event that went live before the device resumed must not hide older unacked
 * ones from that resume. The ring is allocated on the first private event,
 * so idle sockets pay nothing; an overlap wider than the ring is still
 * harmless, devices drop repeated event ids.
 */
#define RECENT_EVENTS 32

static void send_event(session_t *s, msgbuf_t *b, bool capped)
{
    if (!s->recent && !(s->recent = calloc(RECENT_EVENTS, sizeof *s->recent)))
        return;
    for (unsigned i = 0; i < RECENT_EVENTS; i++)
        if (s->recent[i] == b->event_id)
            return;
    s->recent[s->recent_next] = b->event_id;
    s->recent_next = (unsigned char)((s->recent_next + 1) % RECENT_EVENTS);
    enqueue(s, b, capped);
}

void session_send_replayed(session_t *s, msgbuf_t *b)
{
    send_event(s, b, false);
}

void session_send_private(session_t *s, msgbuf_t *b)
{
    if (s->resuming)
        list_append(&s->held_head, &s->held_tail, b);
    else
        send_event(s, b, true);
}

void session_resume_begin(session_t *s)
{
    s->resuming = true;
}

void session_resume_end(session_t *s)
{
    s->resuming = false;
    outq_node_t *held = s->held_head;
    s->held_head = s->held_tail = NULL;
    while (held) {
        outq_node_t *n = held;
        held = n->next;
        send_event(s, n->buf, false); /* already ours: held, not dropped */
        msgbuf_unref(n->buf);
        free(n);
    }
}

void session_send_json(session_t *s, json_t *msg)
{
    msgbuf_t *b = msgbuf_from_json(msg);
    json_decref(msg);
    session_send(s, b);
    msgbuf_unref(b);
}

void session_send_error(session_t *s, bool has_id, int64_t id, const char *code,
                        const char *message)
{
    session_send_json(s, envelope_error(has_id, id, code, message));
}

/*
 * Writes the close frame ourselves. lws 4.1 on a libuv loop re-enters its own
 * close path and kills the socket before a close reason set with
 * lws_close_reason() is sent, so the peer would see 1006 instead of our code.
 * (its debug build calls close twice, "uv repeat test", and the second call
 * kills the socket), so the peer would see 1006 instead of our code. The
 * peer's answering close frame (or the timeout) ends the connection.
 * LWS_WRITE_CLOSE is lws's own opcode value 4, not exported in 4.1 headers.
 */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)
static int send_close_frame(session_t *s)
{
    unsigned char frame[LWS_PRE + 125];
    size_t rlen = s->close_reason ? strlen(s->close_reason) : 0;
    if (rlen > 123)
        rlen = 123;
    frame[LWS_PRE] = (unsigned char)(s->close_code >> 8);
    frame[LWS_PRE + 1] = (unsigned char)(s->close_code & 0xff);
    memcpy(frame + LWS_PRE + 2, s->close_reason, rlen);
    s->close_sent = true;
    if (lws_write(s->wsi, frame + LWS_PRE, 2 + rlen, WS_WRITE_CLOSE) < 0)
        return -1;
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
    return 0;
}

/* One WRITEABLE turn: one message, or the close once the queue is empty. */
static int on_writeable(session_t *s)
{
    if (!s->out_head && s->npub && !s->closing)
        public_take(s);
    outq_node_t *n = s->out_head;
    if (n) {
        s->out_head = n->next;
        if (!s->out_head)
            s->out_tail = NULL;
        s->out_count--;
        int w = lws_write(s->wsi, (unsigned char *)n->buf->payload, n->buf->len, LWS_WRITE_TEXT);
        msgbuf_unref(n->buf);
        free(n);
        if (w < 0)
            return -1;
        metrics_ws_out(1);
        if (s->out_head || s->npub || s->closing)
            lws_callback_on_writable(s->wsi);
        return 0;
    }
    if (s->closing && !s->close_sent)
        return send_close_frame(s);
    return 0;
}

/* ---- authentication --------------------------------------------------- */

/* Authenticated: counted under its kind, and listening to its private channels. */
static void set_kind(session_t *s, conn_kind_t kind)
{
    char channel[EVENTS_CHANNEL_MAX];
    metrics_conn_add(s->kind, -1);
    s->kind = kind;
    metrics_conn_add(kind, 1);
    wait_remove(hub_sessions(s->hub), s);
    fanout_t *f = hub_fanout(s->hub);
    if (kind == CONN_CABINET)
        events_cabinet_channel(s->arcade_id, channel, sizeof channel);
    else
        events_user_channel(s->uid, channel, sizeof channel);
    if (fanout_join(f, s, channel) != 0 || (kind == CONN_ADMIN && fanout_join(f, s, EVENTS_ADMIN_CHANNEL) != 0))
        session_close(s, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
}

/* Accepts a verified player or admin and says so. */
static void accept_identity(session_t *s, const auth_identity_t *who, bool has_id, int64_t id)
{
    s->uid = strdup(who->uid);
    set_kind(s, who->admin ? CONN_ADMIN : CONN_PLAYER);
    json_t *ok = envelope_ok(has_id, id);
    json_object_set_new(ok, "uid", json_string(who->uid));
    json_object_set_new(ok, "role", json_string(who->admin ? "admin" : "player"));
    session_send_json(s, ok);
}

static void reject(session_t *s, bool has_id, int64_t id, const char *why)
{
    session_send_error(s, has_id, id, "unauthenticated", why);
    session_close(s, CLOSE_UNAUTHENTICATED, "unauthenticated");
}

static void auth_token(session_t *s, const char *token, bool has_id, int64_t id)
{
    auth_identity_t who;
    const char *why = "invalid token";
    if (auth_verify(hub_auth(s->hub), token, time(NULL), &who, &why) != 0) {
        reject(s, has_id, id, why);
        return;
    }
    accept_identity(s, &who, has_id, id);
}

static void on_cabinet_row(void *arg, int status, PGresult *res, const char *errmsg)
{
    cabinet_auth_t *ca = arg;
    session_t *s = session_ref_get(ca->ref);
    if (s) {
        s->authenticating = false;
        if (status != PG_OK) {
            session_send_error(s, ca->has_id, ca->id, "unavailable", "database unavailable");
            session_close(s, CLOSE_UNAUTHENTICATED, "unavailable");
            log_warn("cabinet auth query failed", json_pack("{s:s}", "error", errmsg ? errmsg : ""));
        } else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
                   !apikey_matches(ca->key, PQgetvalue(res, 0, 0))) {
            reject(s, ca->has_id, ca->id, "unknown or revoked API key");
        } else {
            apikey_arcade_id(ca->key, &s->arcade_id);
            set_kind(s, CONN_CABINET);
            json_t *ok = envelope_ok(ca->has_id, ca->id);
            json_object_set_new(ok, "role", json_string("cabinet"));
            json_object_set_new(ok, "arcade_id", json_integer(s->arcade_id));
            session_send_json(s, ok);
            cabinet_on_authenticated(s);
        }
    }
    session_ref_release(ca->ref);
    OPENSSL_cleanse(ca->key, sizeof ca->key);
    free(ca);
}

/* Looks the arcade up, then compares the key's hash in constant time. */
static void auth_api_key(session_t *s, const char *key, bool has_id, int64_t id)
{
    long arcade_id;
    if (s->authenticating || strlen(key) >= APIKEY_MAX || apikey_arcade_id(key, &arcade_id) != 0) {
        reject(s, has_id, id, "malformed API key");
        return;
    }
    cabinet_auth_t *ca = calloc(1, sizeof *ca);
    if (!ca || !(ca->ref = session_ref(s))) {
        free(ca);
        reject(s, has_id, id, "out of memory");
        return;
    }
    ca->has_id = has_id;
    ca->id = id;
    strcpy(ca->key, key);
    char idtext[24];
    snprintf(idtext, sizeof idtext, "%ld", arcade_id);
    const char *params[] = {idtext};
    if (pg_pool_query(hub_pool(s->hub),
                      "SELECT api_key_hash FROM arcades WHERE id = $1 AND deleted_at IS NULL", 1,
                      params, on_cabinet_row, ca) != 0) {
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
    if (n >= (int)sizeof hdr || lws_hdr_copy(s->wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
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
    if (s->kind == CONN_PENDING && env.type != RN_MSG_AUTH) {
        reject(s, env.has_id, env.id, "authenticate first");
    } else {
        switch (env.type) {
        case RN_MSG_AUTH:
            on_auth_message(s, &env);
            break;
        case RN_MSG_PING: {
            json_t *pong = envelope_ok(env.has_id, env.id);
            json_object_set_new(pong, "type", json_string("pong"));
            session_send_json(s, pong);
            break;
        }
        case RN_MSG_SUBSCRIBE:
            queue_on_subscribe(s, &env);
            break;
        case RN_MSG_UNSUBSCRIBE:
            queue_on_unsubscribe(s, &env);
            break;
        case RN_MSG_UNLOCK:
        case RN_MSG_GAME_STARTED:
        case RN_MSG_GAME_OVER:
        case RN_MSG_STATUS:
            if (s->kind == CONN_CABINET)
                cabinet_on_message(s, &env);
            else
                session_send_error(s, env.has_id, env.id, "forbidden", "cabinet messages only");
            break;
        case RN_MSG_RESUME:
            events_on_resume(s, &env);
            break;
        case RN_MSG_ACK:
            events_on_ack(s, &env);
            break;
        case RN_MSG_UNKNOWN:
            session_send_error(s, env.has_id, env.id, "unknown_type", "unknown message type");
            break;
        }
    }
    envelope_clear(&env);
}

/* Gathers fragments; a message over max_frame closes with 1009 before it is kept. */
static int on_receive(session_t *s, const char *in, size_t len)
{
    struct lws *wsi = s->wsi;
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
    s->kind = CONN_PENDING;
    s->rate_ts_ms = hub_now_ms(hub);
    s->rate_tokens = 2.0 * hub_config(hub)->msg_rate;
    metrics_conn_add(CONN_PENDING, 1);
    registry_add(hub_sessions(hub), s);
    if (hub_draining(hub)) {
        session_close(s, CLOSE_DRAINING, "draining");
        return;
    }
    if (!auth_from_header(s) && s->kind == CONN_PENDING && !s->authenticating && !s->closing)
        wait_append(hub_sessions(hub), s);
}

static void on_closed(session_t *s)
{
    if (!s->hub)
        return; /* never established */
    sessions_t *reg = hub_sessions(s->hub);
    wait_remove(reg, s);
    registry_remove(reg, s);
    if (s->ref) {
        s->ref->session = NULL;
        session_ref_release(s->ref);
    }
    if (s->kind == CONN_CABINET)
        cabinet_on_closed(s);
    fanout_leave_all(hub_fanout(s->hub), s);
    metrics_conn_add(s->kind, -1);
    outq_clear(s);
    list_clear(&s->held_head, &s->held_tail);
    public_clear(s);
    free(s->recent);
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
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(s);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* the peer is answering our close frame: no second one (browsers see 1006) */
        return s->close_sent ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        on_closed(s);
        return 0;
    default:
        return 0;
    }
}
