/* config: the settings table, its parser and its help (see config.h). */
#include "config.h"

#include "clientip.h"
#include "firebase_keys.h"
#include "https_get.h"
#include "ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifndef RN_SOURCE_DIR
#define RN_SOURCE_DIR "."
#endif

typedef enum { OPT_STR, OPT_INT, OPT_BOOL } opt_kind_t;

typedef struct option_spec {
    const char *flag; /* without the leading "--" */
    const char *env;
    opt_kind_t kind;
    size_t offset;
    const char *def; /* default as text, NULL for none */
    const char *help;
} option_spec_t;

#define O(field) offsetof(hub_config_t, field)

static const option_spec_t options[] = {
    {"listen", "HUB_LISTEN", OPT_STR, O(listen), "127.0.0.1",
     "IPv4 or IPv6 address to bind, exactly (0.0.0.0 or :: for every interface)"},
    {"port", "HUB_PORT", OPT_INT, O(port), "8080", "HTTP + WebSocket port"},
    {"database-url", "DATABASE_URL", OPT_STR, O(database_url), NULL,
     "PostgreSQL URI (a host name is resolved off the loop at every connect)"},
    {"redis-url", "REDIS_URL", OPT_STR, O(redis_url), "redis://127.0.0.1:6379",
     "Redis URL: redis://HOST:PORT or unix:/path; a Redis Cluster: "
     "redis-cluster://HOST:PORT,HOST:PORT,... (seed nodes; sharded pub/sub)"},
    {"pg-pool", "HUB_PG_POOL", OPT_INT, O(pg_pool_size), "4", "PostgreSQL connections"},
    {"pg-statement-timeout-ms", "HUB_PG_STATEMENT_TIMEOUT_MS", OPT_INT, O(pg_statement_timeout_ms),
     "10000", "server-side statement timeout"},
    {"pg-prepared", "HUB_PG_PREPARED", OPT_BOOL, O(pg_prepared), "on",
     "prepare each statement once per connection (off behind PgBouncer in transaction mode)"},
    {"jwt-hs256-secret", "HUB_JWT_HS256_SECRET", OPT_STR, O(jwt_hs256_secret), NULL,
     "accept HS256 dev tokens signed with this secret (never in production)"},
    {"firebase-project", "HUB_FIREBASE_PROJECT", OPT_STR, O(firebase_project), NULL,
     "Firebase project id (aud of ID tokens)"},
    {"firebase-certs", "HUB_FIREBASE_CERTS", OPT_STR, O(firebase_certs), NULL,
     "file of Google's kid -> PEM certificate JSON, read once (offline; no live fetch)"},
    {"web-root", "HUB_WEB_ROOT", OPT_STR, O(web_root), RN_SOURCE_DIR "/web-demo",
     "static files served at /"},
    {"tls-cert", "HUB_TLS_CERT", OPT_STR, O(tls_cert), NULL, "PEM certificate: serve https/wss"},
    {"tls-key", "HUB_TLS_KEY", OPT_STR, O(tls_key), NULL, "PEM private key for --tls-cert"},
    {"workers", "HUB_WORKERS", OPT_INT, O(workers), "1",
     "processes sharing the port, restarted by a supervisor (they talk through Redis)"},
    {"auth-timeout-ms", "HUB_AUTH_TIMEOUT_MS", OPT_INT, O(auth_timeout_ms), "5000",
     "close 4001 when a socket has not authenticated by then"},
    {"ws-ping-ms", "HUB_WS_PING_MS", OPT_INT, O(ws_ping_ms), "30000",
     "send a WebSocket ping to a socket silent this long"},
    {"ws-hangup-ms", "HUB_WS_HANGUP_MS", OPT_INT, O(ws_hangup_ms), "40000",
     "drop a socket silent this long (no pong to the ping); more than --ws-ping-ms"},
    {"drain-timeout-ms", "HUB_DRAIN_TIMEOUT_MS", OPT_INT, O(drain_timeout_ms), "5000",
     "on SIGTERM, how long sockets get to close before exit"},
    {"max-frame", "HUB_MAX_FRAME", OPT_INT, O(max_frame), "16384",
     "largest inbound message (bytes)"},
    {"max-body", "HUB_MAX_BODY", OPT_INT, O(max_body), "65536", "largest HTTP request body"},
    {"call-deadline-s", "HUB_CALL_DEADLINE_S", OPT_INT, O(call_deadline_s), "120",
     "seconds a called player has to unlock"},
    {"offline-grace-ms", "HUB_OFFLINE_GRACE_MS", OPT_INT, O(offline_grace_ms), "10000",
     "a cabinet gone longer than this is shown offline"},
    {"cabinet-lease-ms", "HUB_CABINET_LEASE_MS", OPT_INT, O(cabinet_lease_ms), "15000",
     "a cabinet whose hub stopped renewing its lease this long is shown offline"},
    {"refund-no-show", "HUB_REFUND_NO_SHOW", OPT_BOOL, O(refund_no_show), "0",
     "refund expired (no-show) reservations"},
    {"msg-rate", "HUB_MSG_RATE", OPT_INT, O(msg_rate), "50",
     "inbound messages per second per socket before close 4008"},
    {"send-queue-max", "HUB_SEND_QUEUE_MAX", OPT_INT, O(send_queue_max), "256",
     "queued outbound messages per socket before close 4009"},
    {"payment-provider", "HUB_PAYMENT_PROVIDER", OPT_STR, O(payment_provider), "sandbox",
     "payment provider for ticket purchases"},
    {"payment-timeout-ms", "HUB_PAYMENT_TIMEOUT_MS", OPT_INT, O(payment_timeout_ms), "5000",
     "a charge the provider has not answered by then fails (402 payment_timeout)"},
    {"payment-webhook-secret", "HUB_PAYMENT_WEBHOOK_SECRET", OPT_STR, O(payment_webhook_secret),
     NULL, "HMAC secret of signed payment webhooks (none: the webhook route answers 503)"},
    {"debug-routes", "HUB_DEBUG_ROUTES", OPT_BOOL, O(debug_routes), "0",
     "enable /api/v1/debug/* (test builds only: -DRN_DEBUG_ROUTES=ON)"},
    {"log-level", "HUB_LOG_LEVEL", OPT_STR, O(log_level), "info", "debug, info, warn or error"},
    /* Abuse limits: N/SECONDS is a bucket of N refilled at N per SECONDS, shared by every hub
     * through Redis; 0 turns one off. */
    {"limit-rest-ip", "HUB_LIMIT_REST_IP", OPT_STR, O(limit_rest_ip), "1200/60",
     "REST requests per client IP (429 past it)"},
    {"limit-rest-user", "HUB_LIMIT_REST_USER", OPT_STR, O(limit_rest_user), "600/60",
     "REST requests per user (429 past it)"},
    {"limit-ws-ip", "HUB_LIMIT_WS_IP", OPT_STR, O(limit_ws_ip), "120/60",
     "new WebSocket connections per client IP (close 4008 past it)"},
    {"limit-ws-user", "HUB_LIMIT_WS_USER", OPT_STR, O(limit_ws_user), "30/60",
     "WebSocket authentications per user (close 4008 past it)"},
    {"limit-cabinet-key", "HUB_LIMIT_CABINET_KEY", OPT_STR, O(limit_cabinet_key), "10/60",
     "failed cabinet API keys per client IP; past it no lookup is made (4008)"},
    {"limit-promo", "HUB_LIMIT_PROMO", OPT_STR, O(limit_promo), "10/300",
     "failed promo codes per user; past it no lookup is made (429)"},
    {"limit-token", "HUB_LIMIT_TOKEN", OPT_STR, O(limit_token), "30/60",
     "failed token verifications per client IP (429 / close 4008 past it)"},
    {"trusted-proxies", "HUB_TRUSTED_PROXIES", OPT_STR, O(trusted_proxies), "",
     "proxies (IPs/CIDRs, comma-separated) whose X-Forwarded-For names the client"},
    {"firebase-keys-url", "HUB_FIREBASE_KEYS_URL", OPT_STR, O(firebase_keys_url), FIREBASE_KEYS_URL,
     "Firebase key document, fetched live (per its max-age) unless --firebase-certs is given"},
    {"firebase-ca-file", "HUB_FIREBASE_CA_FILE", OPT_STR, O(firebase_ca_file), NULL,
     "PEM CA certificates trusted for --firebase-keys-url (default: the system's)"},
    {"firebase-refetch-ms", "HUB_FIREBASE_REFETCH_MS", OPT_INT, O(firebase_refetch_ms), "60000",
     "a token with an unknown kid refetches the keys at most once per this"},
    {"cors-origins", "HUB_CORS_ORIGINS", OPT_STR, O(cors_origins), NULL,
     "comma list of browser origins allowed to call /api/v1 (e.g. https://app.example.com)"},
    {"unacked-sweep-ms", "HUB_UNACKED_SWEEP_MS", OPT_INT, O(unacked_sweep_ms), "5000",
     "re-push private events unacked this long to local devices (a hub died before publishing); "
     "0: off"},
    {"bus-pg-fallback", "HUB_BUS_PG_FALLBACK", OPT_BOOL, O(bus_pg_fallback), "1",
     "while Redis is down, push between hubs through PostgreSQL LISTEN/NOTIFY (storage/pg_bus.h)"},
    {"game-max-s", "HUB_GAME_MAX_S", OPT_INT, O(game_max_s), "900",
     "a game's maximum duration in seconds, for games without their own max_duration_s"},
    {"game-grace-s", "HUB_GAME_GRACE_S", OPT_INT, O(game_grace_s), "60",
     "seconds past a game's maximum duration before it ends as timed_out"},
    {"refund-timed-out", "HUB_REFUND_TIMED_OUT", OPT_BOOL, O(refund_timed_out), "0",
     "refund reservations that end as timed_out (past the maximum, or unknown to the cabinet)"},
    {"game-timeout-sweep-ms", "HUB_GAME_TIMEOUT_SWEEP_MS", OPT_INT, O(game_timeout_sweep_ms),
     "5000", "how often every process looks for games past their maximum duration"},
    {"events-keep-hours", "HUB_EVENTS_KEEP_HOURS", OPT_INT, O(events_keep_hours), "168",
     "delete private events acked more than this many hours ago (unacked ones stay); "
     "0: keep forever"},
    {"events-expire-sweep-ms", "HUB_EVENTS_EXPIRE_SWEEP_MS", OPT_INT, O(events_expire_sweep_ms),
     "60000", "how often each process deletes expired events (batches of 10,000)"},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

/* 100 years: now() minus more would leave PostgreSQL's timestamp range. */
#define EVENTS_KEEP_HOURS_MAX 876000

/* A boolean setting's value: 1 (1, true, yes, on), 0 (0, false, no, off) or -1. */
static int bool_word(const char *v)
{
    static const char *const on[] = {"1", "true", "yes", "on"};
    static const char *const off[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        if (!strcmp(v, on[i]))
            return 1;
        if (!strcmp(v, off[i]))
            return 0;
    }
    return -1;
}

static int set_value(hub_config_t *cfg, const option_spec_t *o, const char *value)
{
    void *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)field = value;
        return 0;
    case OPT_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 0 || v > INT_MAX)
            return -1;
        *(int *)field = (int)v;
        return 0;
    }
    case OPT_BOOL: {
        int on = bool_word(value);
        if (on < 0)
            return -1;
        *(bool *)field = on == 1;
        return 0;
    }
    }
    return -1;
}

void config_defaults(hub_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_spec_t *o = &options[i];
        const char *env = getenv(o->env);
        if (o->def)
            set_value(cfg, o, o->def);
        if (env && *env && set_value(cfg, o, env) != 0)
            fprintf(stderr, "ignoring %s=%s: not a valid value\n", o->env, env);
    }
}

static const option_spec_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].flag) == len && !strncmp(options[i].flag, name, len))
            return &options[i];
    return NULL;
}

int config_parse_args(hub_config_t *cfg, int argc, char **argv, int first)
{
    int i = first;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_usage(stdout);
            return -2;
        }
        if (strncmp(arg, "--", 2) != 0)
            break;
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option_spec_t *o = find_option(name, len);
        if (!o) {
            fprintf(stderr, "unknown option %s (see --help)\n", arg);
            return -1;
        }
        const char *value = eq ? eq + 1 : NULL;
        /* a switch alone is on; "--flag off" (a word of bool_word next) sets it */
        if (!value && o->kind == OPT_BOOL)
            value = i + 1 < argc && bool_word(argv[i + 1]) >= 0 ? argv[++i] : "1";
        if (!value && i + 1 < argc)
            value = argv[++i];
        if (!value || set_value(cfg, o, value) != 0) {
            fprintf(stderr, "option --%s needs a valid value\n", o->flag);
            return -1;
        }
    }
    return i;
}

/* The abuse limits' "N/SECONDS" settings and the trusted proxies' list. */
static int config_validate_limits(const hub_config_t *cfg, char *err, size_t errlen)
{
    const struct {
        const char *flag, *value;
    } limits[] = {{"limit-rest-ip", cfg->limit_rest_ip},
                  {"limit-rest-user", cfg->limit_rest_user},
                  {"limit-ws-ip", cfg->limit_ws_ip},
                  {"limit-ws-user", cfg->limit_ws_user},
                  {"limit-cabinet-key", cfg->limit_cabinet_key},
                  {"limit-promo", cfg->limit_promo},
                  {"limit-token", cfg->limit_token}};
    unsigned burst, period;
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (ratelimit_parse(limits[i].value, &burst, &period) != 0) {
            snprintf(err, errlen, "--%s must be N/SECONDS (e.g. 10/60) or 0 (off)", limits[i].flag);
            return -1;
        }
    clientip_trust_t *t = clientip_trust_new(cfg->trusted_proxies, err, errlen);
    clientip_trust_free(t);
    return t ? 0 : -1;
}

/* The hub binds exactly one address: a literal (no interface names, no DNS). */
static bool listen_address_ok(const char *addr)
{
    struct in6_addr a;
    return addr && (inet_pton(AF_INET, addr, &a) == 1 || inet_pton(AF_INET6, addr, &a) == 1);
}

int config_validate(const hub_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->database_url || !*cfg->database_url) {
        snprintf(err, errlen, "no database: set DATABASE_URL or --database-url");
        return -1;
    }
    if (cfg->port < 1 || cfg->port > 65535 || cfg->pg_pool_size < 1 || cfg->workers < 1 ||
        cfg->max_frame < 256 || cfg->send_queue_max < 1 || cfg->msg_rate < 1 ||
        cfg->payment_timeout_ms < 1 || cfg->cabinet_lease_ms < 300 || cfg->game_max_s < 1 ||
        cfg->game_timeout_sweep_ms < 100 || cfg->events_expire_sweep_ms < 100 ||
        cfg->ws_ping_ms < 100 || cfg->ws_hangup_ms <= cfg->ws_ping_ms) {
        snprintf(err, errlen, "a numeric option is out of range (see --help)");
        return -1;
    }
    char why[160];
    if (cfg->firebase_project && *cfg->firebase_project && !cfg->firebase_certs &&
        https_url_check(cfg->firebase_keys_url, why, sizeof why) != 0) {
        snprintf(err, errlen, "--firebase-keys-url: %s", why);
        return -1;
    }
    if (cfg->firebase_refetch_ms < 1000) {
        snprintf(err, errlen, "--firebase-refetch-ms must be at least 1000");
        return -1;
    }
    /* rn_call_due reads a call's acked your_turn for as long as the call can last */
    if (cfg->events_keep_hours &&
        ((long long)cfg->events_keep_hours * 3600 < 2LL * cfg->call_deadline_s ||
         cfg->events_keep_hours > EVENTS_KEEP_HOURS_MAX)) {
        snprintf(err, errlen,
                 "--events-keep-hours must be 0 (forever) or cover twice --call-deadline-s, "
                 "and at most %d",
                 EVENTS_KEEP_HOURS_MAX);
        return -1;
    }
    if (!listen_address_ok(cfg->listen)) {
        snprintf(err, errlen, "--listen %s: not an IPv4 or IPv6 address",
                 cfg->listen ? cfg->listen : "(none)");
        return -1;
    }
    if (cfg->workers > 64) { /* SUPERVISOR_MAX_WORKERS */
        snprintf(err, errlen, "--workers is at most 64");
        return -1;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        snprintf(err, errlen, "--tls-cert and --tls-key go together");
        return -1;
    }
#ifndef RN_DEBUG_ROUTES
    if (cfg->debug_routes) {
        snprintf(err, errlen,
                 "--debug-routes: this build has no debug routes "
                 "(test builds only: cmake -DRN_DEBUG_ROUTES=ON)");
        return -1;
    }
#endif
    return config_validate_limits(cfg, err, errlen);
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: retronova-hub [serve|migrate|audit|token|cabinet-key ARCADE_ID|routes] "
                 "[options]\n\n"
                 "  serve        run the hub (default)\n"
                 "  migrate      apply the database migrations and exit\n"
                 "  audit        check the ticket books (exit 1 and name each discrepancy)\n"
                 "  token        print an HS256 dev token: --uid UID [--admin] [--ttl SECONDS]\n"
                 "  cabinet-key  rotate an arcade's API key and print it (shown once)\n"
                 "  routes       print the REST route table: METHOD PATTERN ACCESS [debug]\n\n"
                 "options (flag, environment variable, default):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_spec_t *o = &options[i];
        fprintf(out, "  --%-26s %-28s %s%s%s%s\n", o->flag, o->env, o->help, o->def ? " [" : "",
                o->def ? o->def : "", o->def ? "]" : "");
    }
}
