/* metrics: counters and histograms in Prometheus text (see metrics.h). */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct histogram {
    unsigned long counts[N_BUCKETS]; /* non-cumulative; summed when rendering */
    unsigned long count;
    double sum;
} histogram_t;

static const char *const delivery_kinds[] = {"your_turn",   "position", "score", "balance",
                                             "reservation", "cabinet",  "other"};
#define N_DELIVERY_KINDS (sizeof delivery_kinds / sizeof delivery_kinds[0])

static struct {
    long conns[CONN_KIND_COUNT];
    unsigned long ws_in, ws_out, ws_partial, http_partial;
    unsigned long http[6]; /* by status class 1xx..5xx; [0] other */
    unsigned long queries[3];
    histogram_t query_seconds;
    histogram_t delivery[N_DELIVERY_KINDS];
    unsigned long cabinet[CAB_EV_COUNT];
    unsigned long limit[LIMIT_COUNT][2]; /* [refused, allowed] */
    unsigned long limit_local, deleted_refused;
    unsigned long http_refused[HTTP_REFUSED_COUNT];
    int worker_index, worker_starts;
    unsigned long unacked_sweep, events_expired;
    unsigned long catchup[CATCHUP_EV_COUNT];
} m = {.worker_starts = 1};

static const char *const limit_names[] = {"rest_ip",          "rest_user",  "ws_ip",     "ws_user",
                                          "cabinet_key_fail", "promo_fail", "token_fail"};

static const char *const refused_names[] = {"uri_too_long", "headers_too_large", "lws_closed"};

static const char *const cabinet_event_names[] = {
    "online",    "offline",   "no_show",    "unlock_ok", "unlock_bad", "unlock_locked",
    "game_over", "timed_out", "reconciled", "voided",    "maintenance"};

static const char *const catchup_event_names[] = {"wanted", "coalesced", "retried", "waited",
                                                  "done"};
static const char *const conn_names[] = {"pending", "player", "admin", "cabinet"};
static const char *const outcome_names[] = {"ok", "error", "unavailable"};

static void histogram_observe(histogram_t *h, double v)
{
    size_t i = 0;
    while (i < N_BUCKETS && v > buckets[i])
        i++;
    if (i < N_BUCKETS)
        h->counts[i]++;
    h->count++;
    h->sum += v;
}

void metrics_conn_add(conn_kind_t kind, int delta)
{
    m.conns[kind] += delta;
}

void metrics_ws_in(void)
{
    m.ws_in++;
}

void metrics_ws_out(unsigned long n)
{
    m.ws_out += n;
}

void metrics_ws_partial(void)
{
    m.ws_partial++;
}

void metrics_http_partial(void)
{
    m.http_partial++;
}

void metrics_http_response(int status)
{
    int cls = status / 100;
    m.http[cls >= 1 && cls <= 5 ? cls : 0]++;
}

void metrics_http_refused(http_refused_t why)
{
    m.http_refused[why]++;
}

void metrics_query_observe(double seconds, query_outcome_t outcome)
{
    m.queries[outcome]++;
    histogram_observe(&m.query_seconds, seconds);
}

void metrics_set_worker(int index, int starts)
{
    m.worker_index = index;
    m.worker_starts = starts;
}

int metrics_worker_index(void)
{
    return m.worker_index;
}

void metrics_unacked_sweep(unsigned long n)
{
    m.unacked_sweep += n;
}

void metrics_events_expired(unsigned long n)
{
    m.events_expired += n;
}

void metrics_catchup(catchup_event_t ev)
{
    m.catchup[ev]++;
}

void metrics_cabinet(cabinet_event_t ev)
{
    m.cabinet[ev]++;
}

const char *metrics_limit_name(limit_id_t id)
{
    return id < LIMIT_COUNT ? limit_names[id] : "unknown";
}

void metrics_limit(limit_id_t id, int allowed)
{
    if (id < LIMIT_COUNT)
        m.limit[id][allowed ? 1 : 0]++;
}

void metrics_limit_local(void)
{
    m.limit_local++;
}

void metrics_deleted_user_refused(void)
{
    m.deleted_refused++;
}

void metrics_delivery_observe(const char *kind, double seconds)
{
    size_t i = 0;
    if (strncmp(kind, "cabinet", 7) == 0 || strcmp(kind, "unlock_result") == 0)
        kind = "cabinet"; /* every command to a cabinet counts as one kind */
    while (i < N_DELIVERY_KINDS - 1 && strcmp(kind, delivery_kinds[i]) != 0)
        i++;
    histogram_observe(&m.delivery[i], seconds);
}

/* Upper bound of the bucket holding quantile q: an estimate, as Prometheus does. */
static double histogram_quantile(const histogram_t *h, double q)
{
    unsigned long rank = (unsigned long)(q * (double)h->count), seen = 0;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank)
            return buckets[i];
    }
    return buckets[N_BUCKETS - 1];
}

json_t *metrics_stats_json(const metrics_gauges_t *g)
{
    json_t *conns = json_object(), *delivery = json_object();
    for (int k = 0; k < CONN_KIND_COUNT; k++)
        json_object_set_new(conns, conn_names[k], json_integer(m.conns[k]));
    for (size_t k = 0; k < N_DELIVERY_KINDS; k++) {
        const histogram_t *h = &m.delivery[k];
        if (!h->count)
            continue;
        json_object_set_new(delivery, delivery_kinds[k],
                            json_pack("{s:I, s:f, s:f}", "count", (json_int_t)h->count, "mean_ms",
                                      1000.0 * h->sum / (double)h->count, "p99_ms",
                                      1000.0 * histogram_quantile(h, 0.99)));
    }
    return json_pack("{s:s, s:o, s:I, s:I, s:o, s:i, s:b}", "type", "stats", "connections", conns,
                     "messages_in", (json_int_t)m.ws_in, "messages_out", (json_int_t)m.ws_out,
                     "delivery", delivery, "pg_connections", g->pg_connections, "bus_up",
                     g->bus_up);
}

/* A growing text buffer; on allocation failure it stops growing and render fails. */
typedef struct text {
    char *buf;
    size_t len, cap;
    int failed;
} text_t;

static void put(text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = t->failed ? -1 : vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        char *grown = realloc(t->buf, t->cap * 2 + (size_t)n);
        if (!grown) {
            t->failed = 1;
            return;
        }
        t->buf = grown;
        t->cap = t->cap * 2 + (size_t)n;
    }
}

static void put_histogram(text_t *t, const char *name, const char *labels, const histogram_t *h)
{
    unsigned long cumulative = 0;
    const char *sep = *labels ? "," : "";
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cumulative += h->counts[i];
        put(t, "%s_bucket{%s%sle=\"%g\"} %lu\n", name, labels, sep, buckets[i], cumulative);
    }
    put(t, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", name, labels, sep, h->count);
    put(t, "%s_sum{%s} %.6f\n%s_count{%s} %lu\n", name, labels, h->sum, name, labels, h->count);
}

char *metrics_render(const metrics_gauges_t *g, size_t *len)
{
    text_t t = {malloc(4096), 0, 4096, 0};
    if (!t.buf)
        return NULL;
    put(&t, "# HELP rn_connections Open WebSocket connections by kind.\n"
            "# TYPE rn_connections gauge\n");
    for (int k = 0; k < CONN_KIND_COUNT; k++)
        put(&t, "rn_connections{kind=\"%s\"} %ld\n", conn_names[k], m.conns[k]);
    put(&t,
        "# HELP rn_ws_messages_in_total WebSocket messages received.\n"
        "# TYPE rn_ws_messages_in_total counter\nrn_ws_messages_in_total %lu\n"
        "# HELP rn_ws_messages_out_total WebSocket messages sent.\n"
        "# TYPE rn_ws_messages_out_total counter\nrn_ws_messages_out_total %lu\n"
        "# HELP rn_ws_writes_partial_total Direct socket writes the kernel did not take whole "
        "(the socket was full; lws keeps the rest).\n"
        "# TYPE rn_ws_writes_partial_total counter\nrn_ws_writes_partial_total %lu\n",
        m.ws_in, m.ws_out, m.ws_partial);
    put(&t, "# HELP rn_http_responses_total HTTP responses by status class.\n"
            "# TYPE rn_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        put(&t, "rn_http_responses_total{code=\"%dxx\"} %lu\n", c, m.http[c]);
    put(&t,
        "# HELP rn_http_writes_partial_total REST answers the kernel did not take whole at "
        "once (the socket was full; lws keeps the rest).\n"
        "# TYPE rn_http_writes_partial_total counter\nrn_http_writes_partial_total %lu\n",
        m.http_partial);
    put(&t, "# HELP rn_http_refused_total Requests refused at the edge, before routing.\n"
            "# TYPE rn_http_refused_total counter\n");
    for (int w = 0; w < HTTP_REFUSED_COUNT; w++)
        put(&t, "rn_http_refused_total{why=\"%s\"} %lu\n", refused_names[w], m.http_refused[w]);
    put(&t, "# HELP rn_pg_queries_total PostgreSQL statements by outcome.\n"
            "# TYPE rn_pg_queries_total counter\n");
    for (int o = 0; o < 3; o++)
        put(&t, "rn_pg_queries_total{status=\"%s\"} %lu\n", outcome_names[o], m.queries[o]);
    put(&t, "# HELP rn_pg_query_seconds PostgreSQL statement latency.\n"
            "# TYPE rn_pg_query_seconds histogram\n");
    put_histogram(&t, "rn_pg_query_seconds", "", &m.query_seconds);
    put(&t, "# HELP rn_delivery_seconds Commit to device ack, by event kind.\n"
            "# TYPE rn_delivery_seconds histogram\n");
    for (size_t k = 0; k < N_DELIVERY_KINDS; k++) {
        char labels[48];
        snprintf(labels, sizeof labels, "kind=\"%s\"", delivery_kinds[k]);
        put_histogram(&t, "rn_delivery_seconds", labels, &m.delivery[k]);
    }
    put(&t, "# HELP rn_cabinet_events_total What the cabinets' side of the queue did.\n"
            "# TYPE rn_cabinet_events_total counter\n");
    for (int e = 0; e < CAB_EV_COUNT; e++)
        put(&t, "rn_cabinet_events_total{event=\"%s\"} %lu\n", cabinet_event_names[e],
            m.cabinet[e]);
    put(&t,
        "# HELP rn_catchup_total Duties retried until done (resyncs, resumes, first loads, acks): "
        "wanted, coalesced, retried, waited (for PostgreSQL), done.\n"
        "# TYPE rn_catchup_total counter\n");
    for (int e = 0; e < CATCHUP_EV_COUNT; e++)
        put(&t, "rn_catchup_total{event=\"%s\"} %lu\n", catchup_event_names[e], m.catchup[e]);
    put(&t,
        "# HELP rn_catchup_pending Catch-up duties waiting or in flight.\n"
        "# TYPE rn_catchup_pending gauge\nrn_catchup_pending %lu\n",
        g->catchup_pending);
    put(&t,
        "# HELP rn_pg_connections Established PostgreSQL connections.\n"
        "# TYPE rn_pg_connections gauge\nrn_pg_connections %d\n"
        "# HELP rn_pg_prepares_total Statements prepared: once per connection and SQL text "
        "(--pg-prepared), again after a reconnect.\n"
        "# TYPE rn_pg_prepares_total counter\nrn_pg_prepares_total %lu\n"
        "# HELP rn_bus_up 1 while the Redis bus is connected.\n"
        "# TYPE rn_bus_up gauge\nrn_bus_up %d\n"
        "# HELP rn_bus_reconnects_total Times the Redis bus link was re-established.\n"
        "# TYPE rn_bus_reconnects_total counter\nrn_bus_reconnects_total %lu\n",
        g->pg_connections, g->pg_prepares, g->bus_up, g->bus_reconnects);
    put(&t,
        "# HELP rn_bus_pg_listening 1 while the bus's PostgreSQL fallback is listening.\n"
        "# TYPE rn_bus_pg_listening gauge\nrn_bus_pg_listening %d\n"
        "# HELP rn_bus_pg_copying 1 while this process copies its bus messages to PostgreSQL "
        "for another that lost Redis.\n"
        "# TYPE rn_bus_pg_copying gauge\nrn_bus_pg_copying %d\n"
        "# HELP rn_bus_pg_messages_total Bus messages carried by PostgreSQL NOTIFY while Redis "
        "could not, or copied for a process without Redis (sent by this process, received "
        "from others).\n"
        "# TYPE rn_bus_pg_messages_total counter\n"
        "rn_bus_pg_messages_total{direction=\"sent\"} %lu\n"
        "rn_bus_pg_messages_total{direction=\"received\"} %lu\n",
        g->pgbus_listening, g->pgbus_copying, g->pgbus_sent, g->pgbus_received);
    put(&t, "# HELP rn_limit_total Abuse-limit decisions by limit and result.\n"
            "# TYPE rn_limit_total counter\n");
    for (int l = 0; l < LIMIT_COUNT; l++)
        put(&t,
            "rn_limit_total{limit=\"%s\",result=\"allowed\"} %lu\n"
            "rn_limit_total{limit=\"%s\",result=\"refused\"} %lu\n",
            limit_names[l], m.limit[l][1], limit_names[l], m.limit[l][0]);
    put(&t,
        "# HELP rn_limit_local_total Limit decisions taken by this process alone (Redis "
        "unavailable).\n# TYPE rn_limit_local_total counter\nrn_limit_local_total %lu\n"
        "# HELP rn_deleted_user_refused_total Deleted users' tokens refused or sockets "
        "closed.\n# TYPE rn_deleted_user_refused_total counter\n"
        "rn_deleted_user_refused_total %lu\n",
        m.limit_local, m.deleted_refused);
    if (g->firebase_live)
        put(&t,
            "# HELP rn_firebase_key_age_seconds Age of the Firebase keys in use (-1: none yet).\n"
            "# TYPE rn_firebase_key_age_seconds gauge\nrn_firebase_key_age_seconds %.3f\n"
            "# HELP rn_firebase_keys Firebase signing keys loaded.\n"
            "# TYPE rn_firebase_keys gauge\nrn_firebase_keys %lu\n"
            "# HELP rn_firebase_key_fetches_total Key documents fetched and loaded.\n"
            "# TYPE rn_firebase_key_fetches_total counter\nrn_firebase_key_fetches_total %lu\n"
            "# HELP rn_firebase_key_refresh_failures_total Key fetches that failed (old keys "
            "kept).\n"
            "# TYPE rn_firebase_key_refresh_failures_total counter\n"
            "rn_firebase_key_refresh_failures_total %lu\n"
            "# HELP rn_firebase_key_kid_refetches_total Fetches started by a token's unknown "
            "kid.\n"
            "# TYPE rn_firebase_key_kid_refetches_total counter\n"
            "rn_firebase_key_kid_refetches_total %lu\n",
            g->firebase_key_age_s, g->firebase_keys, g->firebase_fetches, g->firebase_failures,
            g->firebase_kid_refetches);
    put(&t,
        "# HELP rn_worker_info The process that answered: its --workers slot and pid.\n"
        "# TYPE rn_worker_info gauge\nrn_worker_info{index=\"%d\",pid=\"%ld\"} 1\n"
        "# HELP rn_worker_starts Times this worker slot has been started (restarts + 1).\n"
        "# TYPE rn_worker_starts gauge\nrn_worker_starts{index=\"%d\"} %d\n",
        m.worker_index, (long)getpid(), m.worker_index, m.worker_starts);
    put(&t,
        "# HELP rn_unacked_sweep_events_total Unacked private events the sweep re-pushed.\n"
        "# TYPE rn_unacked_sweep_events_total counter\nrn_unacked_sweep_events_total %lu\n"
        "# HELP rn_events_expired_total Acked private events deleted by the retention.\n"
        "# TYPE rn_events_expired_total counter\nrn_events_expired_total %lu\n",
        m.unacked_sweep, m.events_expired);
    put(&t,
        "# HELP rn_deploy_processes Live hub processes this one sees on Redis (itself included).\n"
        "# TYPE rn_deploy_processes gauge\nrn_deploy_processes %ld\n"
        "# HELP rn_deploy_players Player sockets over every live hub process.\n"
        "# TYPE rn_deploy_players gauge\nrn_deploy_players %ld\n",
        g->deploy_processes, g->deploy_players);
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}
