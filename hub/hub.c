/*
 * hub: one hub process from start-up to a clean exit (see hub.h).
 */
#include "hub.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "api.h"
#include "cabinet.h"
#include "cabinet_lease.h"
#include "clientip.h"
#include "deploy.h"
#include "duty.h"
#include "events.h"
#include "events_expire.h"
#include "events_sweep.h"
#include "fanout.h"
#include "firebase_keys.h"
#include "game_timeout.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "msgbuf.h"
#include "payments.h"
#include "pg_bus.h"
#include "queue.h"
#include "ratelimit.h"
#include "server.h"
#include "session.h"
#include "userstate.h"

struct hub {
    uv_loop_t loop;
    const hub_config_t *cfg;
    auth_t *auth;
    firebase_keys_t *firebase_keys; /* NULL unless the keys are fetched live */
    pg_pool_t *pool;
    bus_t *bus;
    pg_bus_t *pgbus;        /* the bus's fallback path through PostgreSQL */
    unsigned listen_only_s; /* seconds on pgbus alone (Redis lost), announced each one */
    uint64_t copy_until_ms; /* copying to pgbus for a process without Redis until then; 0: not */
    server_t *server;
    sessions_t *sessions;
    fanout_t *fanout;
    queues_t *queues;
    cabinets_t *cabinets;
    cabinet_lease_t *lease;
    events_sweep_t *sweep;
    events_expire_t *expire; /* NULL when --events-keep-hours is 0 */
    game_timeout_t *game_timeout;
    payments_t *payments;
    ratelimit_t *ratelimit;
    userstate_t *userstate;
    clientip_trust_t *trusted_proxies;
    duties_t *duties;
    deploy_t *deploy; /* every process's gauges (deploy.h) */
    uv_signal_t sigint, sigterm;
    /* start-up: the migrations run on libuv's threadpool until they are applied */
    uv_work_t migrate_work;
    uv_timer_t migrate_timer;
    int migrate_backoff_ms;
    int migrate_applied; /* -1: failed */
    bool migrating, migrate_warned;
    char migrate_err[512];
    uv_timer_t drain_timer;
    uv_timer_t stats_timer;
    uint64_t drain_deadline_ms;
    bool draining;
    int exit_code; /* of a stop the hub decided itself (a fatal start-up error) */
};

uv_loop_t *hub_loop(hub_t *hub)
{
    return &hub->loop;
}

const hub_config_t *hub_config(const hub_t *hub)
{
    return hub->cfg;
}

pg_pool_t *hub_pool(hub_t *hub)
{
    return hub->pool;
}

bus_t *hub_bus(hub_t *hub)
{
    return hub->bus;
}

bool hub_bus_fallback_listening(const hub_t *hub)
{
    return hub->pgbus && pg_bus_listening(hub->pgbus);
}

const auth_t *hub_auth(const hub_t *hub)
{
    return hub->auth;
}

firebase_keys_t *hub_firebase_keys(hub_t *hub)
{
    return hub->firebase_keys;
}

sessions_t *hub_sessions(hub_t *hub)
{
    return hub->sessions;
}

fanout_t *hub_fanout(hub_t *hub)
{
    return hub->fanout;
}

queues_t *hub_queues(hub_t *hub)
{
    return hub->queues;
}

cabinets_t *hub_cabinets(hub_t *hub)
{
    return hub->cabinets;
}

payments_t *hub_payments(hub_t *hub)
{
    return hub->payments;
}

ratelimit_t *hub_ratelimit(hub_t *hub)
{
    return hub->ratelimit;
}

userstate_t *hub_userstate(hub_t *hub)
{
    return hub->userstate;
}

void hub_client_ip(hub_t *hub, struct lws *wsi, const char *peer, char *out)
{
    char own[CLIENTIP_MAX], *xff = NULL;
    int n;

    if (!peer && !(peer = lws_get_peer_simple(wsi, own, sizeof own))) {
        clientip_pick(hub->trusted_proxies, NULL, NULL, out);
        return;
    }
    /* X-Forwarded-For is read only from a trusted peer: no copy for anyone else */
    if (clientip_trusted(hub->trusted_proxies, peer) &&
        (n = lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR)) > 0 && n < 4096 &&
        (xff = malloc((size_t)n + 1)) != NULL &&
        lws_hdr_copy(wsi, xff, n + 1, WSI_TOKEN_X_FORWARDED_FOR) < 0) {
        free(xff);
        xff = NULL;
    }
    clientip_pick(hub->trusted_proxies, peer, xff, out);
    free(xff);
}

duties_t *hub_duties(hub_t *hub)
{
    return hub->duties;
}

bool hub_draining(const hub_t *hub)
{
    return hub->draining;
}

deploy_t *hub_deploy(hub_t *hub)
{
    return hub->deploy;
}

uint64_t hub_now_ms(hub_t *hub)
{
    return uv_now(&hub->loop);
}

void hub_gauges(hub_t *hub, metrics_gauges_t *g)
{
    g->pg_connections = hub->pool ? pg_pool_connected(hub->pool) : 0;
    g->pg_prepares = pg_pool_prepares(hub->pool);
    g->bus_up = hub->bus ? bus_is_up(hub->bus) : 0;
    g->bus_reconnects = hub->bus ? bus_reconnects(hub->bus) : 0;
    g->pgbus_listening = pg_bus_listening(hub->pgbus);
    g->pgbus_copying = hub->copy_until_ms != 0;
    g->pgbus_sent = pg_bus_sent(hub->pgbus);
    g->pgbus_received = pg_bus_received(hub->pgbus);
    g->firebase_live = hub->firebase_keys != NULL;
    if (hub->firebase_keys) {
        firebase_keys_stats_t fs;
        firebase_keys_get_stats(hub->firebase_keys, &fs);
        g->firebase_key_age_s = fs.age_s;
        g->firebase_keys = fs.keys;
        g->firebase_fetches = fs.fetches;
        g->firebase_failures = fs.failures;
        g->firebase_kid_refetches = fs.kid_refetches;
    }
    g->catchup_pending = duties_pending(hub->duties);
    g->deploy_processes = hub->deploy ? deploy_processes(hub->deploy) : 1;
    g->deploy_players = hub->deploy ? deploy_players_online(hub->deploy) : 0;
}

/*
 * Once a second: the bus watch (bus_watch_tick), this process's gauges to
 * Redis, and its live stats with the whole deployment's (deploy.h) to its
 * admin dashboards.
 */
static void bus_watch_tick(hub_t *hub);

static void on_stats_tick(uv_timer_t *t)
{
    hub_t *hub = t->data;
    bus_watch_tick(hub);
    metrics_gauges_t g;
    hub_gauges(hub, &g);
    json_t *stats = metrics_stats_json(&g);
    deploy_tick(hub->deploy, hub->bus, stats); /* every second, dashboards or not */
    if (fanout_size(hub->fanout, EVENTS_ADMIN_CHANNEL) == 0) {
        json_decref(stats);
        return;
    }
    json_object_set_new(stats, "pid", json_integer(getpid()));
    json_object_set_new(stats, "deployment", deploy_json(hub->deploy));
    msgbuf_t *b = msgbuf_from_json(stats);
    json_decref(stats);
    if (b)
        fanout_deliver(hub->fanout, EVENTS_ADMIN_CHANNEL, b);
    msgbuf_unref(b);
}

static void on_query_observed(void *arg, double seconds, int status)
{
    (void)arg;
    metrics_query_observe(seconds, status == PG_OK       ? QUERY_OK
                                   : status == PG_EQUERY ? QUERY_ERROR
                                                         : QUERY_UNAVAILABLE);
}

static void on_pool_log(void *arg, int level, const char *msg)
{
    (void)arg;
    log_event(level == PG_LOG_WARN ? LOG_WARN : LOG_INFO, "postgres",
              json_pack("{s:s}", "detail", msg));
}

static void on_bus_log(void *arg, int warn, const char *msg)
{
    (void)arg;
    log_event(warn ? LOG_WARN : LOG_INFO, "redis", json_pack("{s:s}", "detail", msg));
}

/* The pool has a connection again: whatever waited for PostgreSQL runs now. */
static void on_pool_up(void *arg)
{
    hub_t *hub = arg;
    cabinet_lease_renew(hub->lease); /* first: our leases went stale during the outage */
    duties_kick(hub->duties);
}

/* Bus messages go where their channel says: private lanes and admins to events. */
static void on_bus_message(void *arg, const char *channel, const char *payload, size_t len)
{
    hub_t *hub = arg;
    if (!strncmp(channel, "rn:user:", 8) || !strncmp(channel, "rn:cabinet:", 11) ||
        !strcmp(channel, EVENTS_ADMIN_CHANNEL))
        events_on_bus_message(hub, channel, payload, len);
    else if (!strncmp(channel, "rn:arcade:", 10))
        queue_on_bus_message(hub, channel, payload, len);
    else if (!strcmp(channel, CABINET_CONTROL_CHANNEL))
        cabinet_on_control(hub, payload, len);
    else if (!strcmp(channel, USERSTATE_CHANNEL))
        userstate_on_bus_message(hub->userstate, payload, len);
}

/*
 * A channel joined while the link was up is live from its confirmation on;
 * what was published before it is caught up from PostgreSQL (a phone's
 * first private events, an arcade's first snapshot).
 */
static void on_bus_subscribed(void *arg, const char *channel)
{
    hub_t *hub = arg;
    events_resync_channel(hub, channel);
    queue_resync_channel(hub, channel);
}

/* Messages may have been missed while the link was down: catch up from Postgres. */
static void on_bus_link(void *arg, int up)
{
    hub_t *hub = arg;
    log_info(up ? "bus up" : "bus down", NULL);
    if (up && hub->fanout) {
        queue_resync(hub); /* duties: retried until PostgreSQL answers */
        events_resync(hub);
    }
    if (up) /* a deletion announced while the link was down was missed */
        userstate_reload(hub->userstate);
}

/* ---- the bus's fallback through PostgreSQL (storage/pg_bus.h) ---- */

/* Redis could not take a message (or a process without Redis needs a copy): by NOTIFY. */
static int on_bus_fallback(void *arg, const char *channel, const char *payload, size_t len,
                           bool copy)
{
    hub_t *hub = arg;
    return pg_bus_publish(hub->pgbus, channel, payload, len, copy);
}

enum { BUS_COPY_MS = 3000 }; /* how long one announce keeps us copying: three missed in a row */

/* A copy is for a process without Redis: with Redis up, its original came that way. */
static bool pgbus_wants_copies(void *arg)
{
    hub_t *hub = arg;
    return !hub->bus || !bus_is_up(hub->bus);
}

/* Another process hears the bus only through PostgreSQL: copy what we publish there. */
static void on_pgbus_announce(void *arg)
{
    hub_t *hub = arg;
    if (!hub->copy_until_ms && hub->bus) {
        log_info("bus: copying to PostgreSQL for a process without Redis", NULL);
        bus_set_fallback_copies(hub->bus, true);
    }
    hub->copy_until_ms = hub_now_ms(hub) + BUS_COPY_MS;
}

/*
 * Each second. Without Redis but listening on PostgreSQL: announce it, so
 * that the processes that kept Redis copy their messages to PostgreSQL too
 * (on_pgbus_announce). At the second announce they have been copying for a
 * while: the views this process holds are reloaded once, as what changed
 * between the loss and the first copy came by Redis alone. The private
 * events of that gap come from the unacked sweep (events_sweep.h, within
 * two of its periods): a catch-up of every unacked event now would re-push,
 * under load, events whose acks are still on their way. Not before Redis
 * ever answered: the phones' views were read at their subscribe, and the
 * first bus up catches up. Copying stops once no announce came for
 * BUS_COPY_MS.
 */
static void bus_watch_tick(hub_t *hub)
{
    if (hub->bus && hub->pgbus && !bus_is_up(hub->bus) && pg_bus_listening(hub->pgbus)) {
        pg_bus_announce(hub->pgbus);
        if (++hub->listen_only_s == 2 && bus_ever_up(hub->bus) && hub->fanout) {
            queue_resync(hub);
            userstate_reload(hub->userstate);
        }
    } else {
        hub->listen_only_s = 0;
    }
    if (hub->copy_until_ms && hub_now_ms(hub) >= hub->copy_until_ms) {
        hub->copy_until_ms = 0;
        if (hub->bus)
            bus_set_fallback_copies(hub->bus, false);
        log_info("bus: copying to PostgreSQL stopped", NULL);
    }
}

/* Another process's message by NOTIFY: the same path as one from Redis. */
static void on_pgbus_message(void *arg, const char *channel, const char *payload, size_t len)
{
    hub_t *hub = arg;
    if (hub->bus)
        bus_deliver(hub->bus, channel, payload, len);
}

/*
 * Something sent by NOTIFY was missed: a channel's message too big for it,
 * or everything while LISTEN was down (only a loss while Redis is down too:
 * with the bus up the bus's own catch-up covers it).
 */
static void on_pgbus_gap(void *arg, const char *channel)
{
    hub_t *hub = arg;
    if (!hub->bus || !hub->fanout)
        return;
    if (channel) {
        bus_deliver_gap(hub->bus, channel);
    } else if (!bus_is_up(hub->bus)) {
        queue_resync(hub);
        events_resync(hub);
        userstate_reload(hub->userstate);
    }
}

static int start_pgbus(hub_t *hub)
{
    if (!hub->cfg->bus_pg_fallback)
        return 0; /* hubs hear of each other's changes when Redis returns */
    pg_bus_config_t pc = {
        .conninfo = hub->cfg->database_url,
        .log = on_pool_log,
        .on_announce = on_pgbus_announce,
        .wants_copies = pgbus_wants_copies,
    };
    hub->pgbus = pg_bus_new(&hub->loop, &pc, on_pgbus_message, on_pgbus_gap, hub);
    if (!hub->pgbus) {
        log_error("storage configuration",
                  json_pack("{s:s}", "error", "bad database configuration (bus fallback)"));
        return -1;
    }
    bus_set_fallback(hub->bus, on_bus_fallback, hub);
    return 0;
}

/*
 * The last step, in DESIGN.md's order: Redis (its reconnect timers with it),
 * the Postgres pool, then lws, then our own handles. lws's teardown on a
 * foreign loop is asynchronous: once every handle is closed uv_run() returns
 * in hub_run(), which finishes it (server_finish), closes the session
 * registry (lws closed the last sockets during its teardown) and the loop.
 */
static void shutdown_now(hub_t *hub)
{
    fanout_detach_bus(hub->fanout);
    bus_close(hub->bus); /* rate limits waiting on Redis are decided locally now */
    hub->bus = NULL;
    deploy_close(hub->deploy); /* after bus_close: its read has been answered */
    hub->deploy = NULL;
    pg_bus_close(hub->pgbus); /* its NOTIFYs in flight end with the pool below */
    hub->pgbus = NULL;
    ratelimit_close(hub->ratelimit);
    hub->ratelimit = NULL;
    userstate_close(hub->userstate);
    hub->userstate = NULL;
    firebase_keys_close(hub->firebase_keys);
    hub->firebase_keys = NULL;
    duties_close(hub->duties); /* before the pool: its failures retry nothing now */
    hub->duties = NULL;
    uv_close((uv_handle_t *)&hub->migrate_timer, NULL);
    cabinet_lease_close(hub->lease);
    hub->lease = NULL;
    events_sweep_close(hub->sweep);
    hub->sweep = NULL;
    events_expire_close(hub->expire);
    hub->expire = NULL;
    game_timeout_close(hub->game_timeout);
    hub->game_timeout = NULL;
    payments_close(hub->payments); /* its open charges answer before the pool goes */
    hub->payments = NULL;
    pg_pool_close(hub->pool);
    hub->pool = NULL;
    server_destroy(hub->server);
    cabinets_close(hub->cabinets);
    hub->cabinets = NULL; /* sockets lws closes from now on find no cabinets */
    uv_close((uv_handle_t *)&hub->drain_timer, NULL);
    uv_close((uv_handle_t *)&hub->stats_timer, NULL);
    uv_close((uv_handle_t *)&hub->sigint, NULL);
    uv_close((uv_handle_t *)&hub->sigterm, NULL);
}

/* While draining: wait for the sockets to close, up to the drain timeout. */
static void drain_step(uv_timer_t *t)
{
    hub_t *hub = t->data;
    if (sessions_count(hub->sessions) > 0 && hub_now_ms(hub) < hub->drain_deadline_ms) {
        uv_timer_start(&hub->drain_timer, drain_step, 20, 0);
        return;
    }
    log_info("drained", json_pack("{s:i}", "sockets_left", (int)sessions_count(hub->sessions)));
    shutdown_now(hub);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    hub_t *hub = sig->data;
    if (hub->draining)
        return;
    hub->draining = true;
    log_info("draining", json_pack("{s:i, s:i}", "signal", signum, "sockets",
                                   (int)sessions_count(hub->sessions)));
    /* the reason tells clients when to come back (PROTOCOL.md, close codes) */
    sessions_close_all(hub->sessions, CLOSE_DRAINING, "{\"retry_after_ms\":1000}");
    hub->drain_deadline_ms = hub_now_ms(hub) + (uint64_t)hub->cfg->drain_timeout_ms;
    uv_timer_start(&hub->drain_timer, drain_step, 20, 0);
}

/* ---- migrations, off the loop thread ------------------------------------ */

#define MIGRATE_BACKOFF_MIN_MS 250
#define MIGRATE_BACKOFF_MAX_MS 2000

/* The blocking runner (libpq PQexec), on libuv's threadpool. */
static void migrate_run(uv_work_t *w)
{
    hub_t *hub = w->data;
    size_t n;
    const migration_t *all = migrations_builtin(&n);
    hub->migrate_applied =
        migrate_apply(hub->cfg->database_url, all, n, hub->migrate_err, sizeof hub->migrate_err);
}

/* Only an unreachable database is worth waiting for; a migration that fails is fatal. */
static bool migrate_err_transient(const char *err)
{
    return strstr(err, "cannot connect") || strstr(err, "server closed the connection") ||
           strstr(err, "terminating connection") || strstr(err, "starting up");
}

static void migrate_start(hub_t *hub);

static void on_migrate_timer(uv_timer_t *t)
{
    migrate_start(t->data);
}

static void start_pool(hub_t *hub)
{
    const hub_config_t *cfg = hub->cfg;
    pg_pool_config_t pc = {.conninfo = cfg->database_url,
                           .size = cfg->pg_pool_size,
                           .statement_timeout_ms = cfg->pg_statement_timeout_ms,
                           .prepared = cfg->pg_prepared,
                           .observe = on_query_observed,
                           .log = on_pool_log,
                           .on_up = on_pool_up,
                           .on_up_arg = hub};
    hub->pool = pg_pool_new(&hub->loop, &pc);
    pg_bus_set_pool(hub->pgbus, hub->pool);
    if (!hub->pool) {
        log_error("storage configuration",
                  json_pack("{s:s}", "error", "bad database configuration"));
        hub->exit_code = 1;
        uv_kill(getpid(), SIGTERM); /* drain and exit: nothing can work */
    }
}

static void on_migrated(uv_work_t *w, int status)
{
    hub_t *hub = w->data;
    hub->migrating = false;
    if (hub->draining || status != 0)
        return;
    if (hub->migrate_applied >= 0) {
        size_t n;
        migrations_builtin(&n);
        log_info("migrations",
                 json_pack("{s:i, s:i}", "applied", hub->migrate_applied, "known", (int)n));
        start_pool(hub);
        return;
    }
    if (!migrate_err_transient(hub->migrate_err)) {
        log_error("migrations failed", json_pack("{s:s}", "error", hub->migrate_err));
        hub->exit_code = 1;
        uv_kill(getpid(), SIGTERM);
        return;
    }
    if (!hub->migrate_warned) {
        hub->migrate_warned = true;
        log_warn("waiting for PostgreSQL",
                 json_pack("{s:s}", "error", hub->migrate_err)); /* once, until it answers */
    }
    uv_timer_start(&hub->migrate_timer, on_migrate_timer, (uint64_t)hub->migrate_backoff_ms, 0);
    hub->migrate_backoff_ms = hub->migrate_backoff_ms * 2 > MIGRATE_BACKOFF_MAX_MS
                                  ? MIGRATE_BACKOFF_MAX_MS
                                  : hub->migrate_backoff_ms * 2;
}

static void migrate_start(hub_t *hub)
{
    if (hub->draining || hub->migrating)
        return;
    hub->migrate_work.data = hub;
    hub->migrating = uv_queue_work(&hub->loop, &hub->migrate_work, migrate_run, on_migrated) == 0;
}

/* Past this, lws's per-fd tables (two pointers per possible fd, zeroed at
 * start) would cost more than they can ever serve on one loop. */
#define FD_LIMIT_CAP (1 << 20)

/*
 * Every socket is a file descriptor, and the soft RLIMIT_NOFILE is often
 * 1024 while the hard one allows far more: raise the soft limit to the hard
 * one (capped) before lws sizes its fd tables from it at context creation,
 * so the process can hold as many sockets as the operator allows. Failing
 * leaves the limit as it was (logged), it is not fatal.
 */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t was = rl.rlim_cur;
    rlim_t want =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max > FD_LIMIT_CAP ? FD_LIMIT_CAP : rl.rlim_max;
    if (want > rl.rlim_cur) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    log_info("open-file limit", json_pack("{s:I, s:I, s:I}", "soft", (json_int_t)rl.rlim_cur, "was",
                                          (json_int_t)was, "hard", (json_int_t)rl.rlim_max));
}

/* Blocking start-up work, before the loop runs: certificates. */
static int start_up(hub_t *hub)
{
    char err[512];
    auth_config_t ac = {.firebase_project = hub->cfg->firebase_project,
                        .firebase_certs_path = hub->cfg->firebase_certs,
                        .hs256_secret = hub->cfg->jwt_hs256_secret};
    hub->auth = auth_new(&ac, err, sizeof err);
    if (!hub->auth) {
        log_error("auth configuration", json_pack("{s:s}", "error", err));
        return -1;
    }
    if (ac.firebase_project && *ac.firebase_project && !ac.firebase_certs_path) {
        firebase_keys_config_t fc = {.url = hub->cfg->firebase_keys_url,
                                     .ca_file = hub->cfg->firebase_ca_file,
                                     .refetch_interval_ms = hub->cfg->firebase_refetch_ms};
        hub->firebase_keys = firebase_keys_new(&hub->loop, hub->auth, &fc, err, sizeof err);
        if (!hub->firebase_keys) {
            log_error("firebase keys configuration", json_pack("{s:s}", "error", err));
            return -1;
        }
    }
    return 0;
}

/* The abuse limits, the trusted proxies and the deleted users' set. */
static int start_guards(hub_t *hub)
{
    const hub_config_t *cfg = hub->cfg;
    const char *const specs[LIMIT_COUNT] = {[LIMIT_REST_IP] = cfg->limit_rest_ip,
                                            [LIMIT_REST_USER] = cfg->limit_rest_user,
                                            [LIMIT_WS_IP] = cfg->limit_ws_ip,
                                            [LIMIT_WS_USER] = cfg->limit_ws_user,
                                            [LIMIT_CABINET_KEY] = cfg->limit_cabinet_key,
                                            [LIMIT_PROMO] = cfg->limit_promo,
                                            [LIMIT_TOKEN] = cfg->limit_token};
    char err[256];
    hub->ratelimit = ratelimit_new(&hub->loop, hub->bus, specs, err, sizeof err);
    if (hub->ratelimit)
        hub->trusted_proxies = clientip_trust_new(cfg->trusted_proxies, err, sizeof err);
    if (!hub->ratelimit || !hub->trusted_proxies) {
        log_error("limits configuration", json_pack("{s:s}", "error", err));
        return -1;
    }
    hub->userstate = userstate_new(hub);
    return hub->userstate ? 0 : -1;
}

/* ---- the hooks: what net's sessions hand up to the engine ---------- */

/* The WebSocket message table (session.h): message type -> engine handler. */
static const session_handler_t ws_handlers[] = {
    {RN_MSG_SUBSCRIBE, queue_on_subscribe, 0},
    {RN_MSG_UNSUBSCRIBE, queue_on_unsubscribe, 0},
    {RN_MSG_RESUME, events_on_resume, 0},
    {RN_MSG_ACK, events_on_ack, 0},
    {RN_MSG_UNLOCK, cabinet_on_message, SESSION_MSG_CABINET_ONLY},
    {RN_MSG_GAME_STARTED, cabinet_on_message, SESSION_MSG_CABINET_ONLY},
    {RN_MSG_GAME_OVER, cabinet_on_message, SESSION_MSG_CABINET_ONLY},
    {RN_MSG_STATUS, cabinet_on_message, SESSION_MSG_CABINET_ONLY},
};

static void on_session_closed(session_t *s, conn_kind_t kind)
{
    if (kind == CONN_CABINET)
        cabinet_on_closed(s);
}

/* The REST routes (api.h), matched in this order by http.c. */
static const route_table_t *const route_tables[] = {
    &api_ops_routes,
    &api_queue_routes,
    &api_tickets_routes,
    &api_admin_routes,
    &api_social_routes,
    &api_catalogue_routes,
    &api_cabinet_config_routes,
    /* after social: its fixed /users paths match before /users/{id} */
    &api_player_routes,
    &api_reports_routes,
    &api_opsqueue_routes,
#ifdef RN_DEBUG_ROUTES
    &api_debug_routes,
#endif
};

static const session_hooks_t session_hooks = {
    .handlers = ws_handlers,
    .n_handlers = sizeof ws_handlers / sizeof ws_handlers[0],
    .authenticated = events_session_join,
    .cabinet_online = cabinet_on_authenticated,
    .closed = on_session_closed,
    .cabinet_key_check = cabinet_key_check,
};

static int start_services(hub_t *hub)
{
    const hub_config_t *cfg = hub->cfg;
    char why[256] = "";
    bus_config_t bc = {.url = cfg->redis_url, .log = on_bus_log};
    hub->bus = bus_new(&hub->loop, &bc, on_bus_message, on_bus_link, hub, why, sizeof why);
    hub->duties = duties_new(&hub->loop, hub);
    if (!hub->bus || !hub->duties) {
        log_error("storage configuration",
                  json_pack("{s:s}", "error", *why ? why : "out of memory"));
        return -1;
    }
    if (hub->bus)
        bus_set_subscribed_cb(hub->bus, on_bus_subscribed);
    hub->fanout = hub->bus ? fanout_new(hub->bus) : NULL;
    if (hub->bus) {
        bus_subscribe(hub->bus, CABINET_CONTROL_CHANNEL); /* for the process's whole life */
        bus_subscribe(hub->bus, USERSTATE_CHANNEL);
    }
    if (start_pgbus(hub) != 0 || start_guards(hub) != 0)
        return -1;
    hub->queues = queues_new(hub);
    hub->cabinets = cabinets_new(hub);
    if (hub->queues)
        queues_set_snapshot_hook(hub->queues, cabinet_on_snapshot);
    hub->payments = payments_new(hub);
    hub->lease = hub->cabinets ? cabinet_lease_new(hub) : NULL;
    hub->sessions = hub->fanout && hub->queues && hub->cabinets && hub->payments && hub->lease
                        ? sessions_new(hub)
                        : NULL;
    if (hub->sessions && sessions_set_hooks(hub->sessions, &session_hooks) != 0) {
        log_error("the WebSocket message table is invalid", NULL);
        return -1;
    }
    http_set_routes(route_tables, sizeof route_tables / sizeof route_tables[0]);
    hub->server = hub->sessions ? server_new(hub, cfg) : NULL;
    hub->sweep = hub->server ? events_sweep_new(hub) : NULL;
    hub->expire = hub->server ? events_expire_new(hub) : NULL;
    hub->game_timeout = hub->server ? game_timeout_new(hub) : NULL;
    return hub->server && hub->game_timeout ? 0 : -1;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int hub_run(const hub_config_t *cfg)
{
    hub_t *hub = calloc(1, sizeof *hub);
    if (!hub)
        return 1;
    hub->cfg = cfg;
    int code = 1;
    signal(SIGPIPE, SIG_IGN);
    /* The migrations' blocking connect: an unreachable (not refusing) host must not
     * hold the worker thread, nor a drain, for long. Set before any thread runs. */
    setenv("PGCONNECT_TIMEOUT", "5", 0);
    uv_loop_init(&hub->loop);
    uv_timer_init(&hub->loop, &hub->drain_timer);
    uv_timer_init(&hub->loop, &hub->stats_timer);
    hub->drain_timer.data = hub->stats_timer.data = hub;
    uv_timer_init(&hub->loop, &hub->migrate_timer);
    hub->migrate_timer.data = hub;
    hub->migrate_backoff_ms = MIGRATE_BACKOFF_MIN_MS;
    uv_signal_init(&hub->loop, &hub->sigint);
    uv_signal_init(&hub->loop, &hub->sigterm);
    hub->sigint.data = hub->sigterm.data = hub;

    raise_fd_limit();
    hub->deploy = deploy_new();
    if (!hub->deploy || start_up(hub) != 0 || start_services(hub) != 0)
        goto fail;
    uv_signal_start(&hub->sigint, on_signal, SIGINT);
    uv_signal_start(&hub->sigterm, on_signal, SIGTERM);
    uv_timer_start(&hub->stats_timer, on_stats_tick, 1000, 1000);
    migrate_start(hub);
    uv_run(&hub->loop, UV_RUN_DEFAULT);
    server_finish(hub->server, &hub->loop);
    hub->server = NULL;
    sessions_close(hub->sessions);
    uv_run(&hub->loop, UV_RUN_DEFAULT);
    code = hub->exit_code;
    goto done;

fail:
    /* Nothing served yet: close whatever started and let the loop run dry. */
    firebase_keys_close(hub->firebase_keys);
    hub->firebase_keys = NULL;
    if (hub->fanout)
        fanout_detach_bus(hub->fanout);
    if (hub->bus)
        bus_close(hub->bus);
    deploy_close(hub->deploy);
    pg_bus_close(hub->pgbus);
    ratelimit_close(hub->ratelimit);
    userstate_close(hub->userstate);
    duties_close(hub->duties);
    payments_close(hub->payments);
    cabinet_lease_close(hub->lease);
    events_sweep_close(hub->sweep);
    events_expire_close(hub->expire);
    game_timeout_close(hub->game_timeout);
    if (hub->pool)
        pg_pool_close(hub->pool);
    if (hub->server) {
        server_destroy(hub->server);
        uv_run(&hub->loop, UV_RUN_DEFAULT);
        server_finish(hub->server, &hub->loop);
        hub->server = NULL;
    }
    if (hub->sessions)
        sessions_close(hub->sessions);
    if (hub->cabinets)
        cabinets_close(hub->cabinets);
    hub->cabinets = NULL;
    uv_walk(&hub->loop, close_walk, NULL);
    uv_run(&hub->loop, UV_RUN_DEFAULT);
done:
    if (uv_loop_close(&hub->loop) != 0) {
        log_error("loop not empty at exit", NULL);
        code = code ? code : 1;
    }
    queues_free(hub->queues);
    fanout_free(hub->fanout);
    auth_free(hub->auth);
    clientip_trust_free(hub->trusted_proxies);
    free(hub);
    log_info("stopped", json_pack("{s:i}", "code", code));
    return code;
}

int hub_print_routes(FILE *out)
{
    const route_table_t *debug = NULL;
#ifdef RN_DEBUG_ROUTES
    debug = &api_debug_routes;
#endif
    return router_print_routes(route_tables, sizeof route_tables / sizeof route_tables[0], debug,
                               out);
}
