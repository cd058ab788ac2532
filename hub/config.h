/*
 * config: every setting of the hub, from flags or the environment (flags
 * win). One table in config.c names each setting, its flag, its variable, its
 * default and its help line, so `--help` can never drift from the parser.
 */
#ifndef RN_CONFIG_H
#define RN_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

typedef struct hub_config {
    const char *listen;           /* HUB_LISTEN, 127.0.0.1 */
    int port;                     /* HUB_PORT, 8080 */
    const char *database_url;     /* DATABASE_URL */
    const char *redis_url;        /* REDIS_URL */
    int pg_pool_size;             /* HUB_PG_POOL, 4 */
    int pg_statement_timeout_ms;  /* HUB_PG_STATEMENT_TIMEOUT_MS, 10000 */
    bool pg_prepared;             /* HUB_PG_PREPARED, on: named prepared statements */
    const char *jwt_hs256_secret; /* HUB_JWT_HS256_SECRET (dev only) */
    const char *firebase_project; /* HUB_FIREBASE_PROJECT */
    const char *firebase_certs;   /* HUB_FIREBASE_CERTS: kid -> PEM JSON file */
    const char *web_root;         /* HUB_WEB_ROOT, <source>/web-demo */
    const char *tls_cert;         /* HUB_TLS_CERT */
    const char *tls_key;          /* HUB_TLS_KEY */
    int workers;                  /* HUB_WORKERS, 1 */
    int auth_timeout_ms;          /* HUB_AUTH_TIMEOUT_MS, 5000 */
    int ws_ping_ms;               /* HUB_WS_PING_MS, 30000 */
    int ws_hangup_ms;             /* HUB_WS_HANGUP_MS, 40000 */
    int drain_timeout_ms;         /* HUB_DRAIN_TIMEOUT_MS, 5000 */
    int max_frame;                /* HUB_MAX_FRAME, 16384 */
    int max_body;                 /* HUB_MAX_BODY, 65536 */
    int call_deadline_s;          /* HUB_CALL_DEADLINE_S, 120 */
    int offline_grace_ms;         /* HUB_OFFLINE_GRACE_MS, 10000 */
    int cabinet_lease_ms;         /* HUB_CABINET_LEASE_MS, 15000 */
    bool refund_no_show;          /* HUB_REFUND_NO_SHOW, false */
    int msg_rate;                 /* HUB_MSG_RATE: inbound messages/s per socket, 50 */
    int send_queue_max;           /* HUB_SEND_QUEUE_MAX: queued messages per socket, 256 */
    const char *payment_provider; /* HUB_PAYMENT_PROVIDER, sandbox */
    int payment_timeout_ms;       /* HUB_PAYMENT_TIMEOUT_MS, 5000 */
    bool debug_routes;            /* HUB_DEBUG_ROUTES */
    const char *log_level;        /* HUB_LOG_LEVEL, info */
    /* HUB_PAYMENT_WEBHOOK_SECRET; without one the webhook route answers 503 */
    const char *payment_webhook_secret;
    /* Abuse limits (ratelimit.h), each "N/SECONDS" or "0" (off). */
    const char *limit_rest_ip;     /* HUB_LIMIT_REST_IP: REST requests per client IP */
    const char *limit_rest_user;   /* HUB_LIMIT_REST_USER: REST requests per user */
    const char *limit_ws_ip;       /* HUB_LIMIT_WS_IP: new WebSocket connections per IP */
    const char *limit_ws_user;     /* HUB_LIMIT_WS_USER: WebSocket authentications per user */
    const char *limit_cabinet_key; /* HUB_LIMIT_CABINET_KEY: failed cabinet keys per IP */
    const char *limit_promo;       /* HUB_LIMIT_PROMO: failed promo codes per user */
    const char *limit_token;       /* HUB_LIMIT_TOKEN: failed token verifications per IP */
    const char *trusted_proxies;   /* HUB_TRUSTED_PROXIES: IPs/CIDRs allowed to set XFF */
    const char *firebase_keys_url; /* HUB_FIREBASE_KEYS_URL: live keys unless firebase_certs */
    const char *firebase_ca_file;  /* HUB_FIREBASE_CA_FILE: CAs for it (default: system's) */
    int firebase_refetch_ms;       /* HUB_FIREBASE_REFETCH_MS: unknown kid refetch interval */
    const char *cors_origins;      /* HUB_CORS_ORIGINS: comma list of origins allowed on /api/v1 */
    int unacked_sweep_ms;          /* HUB_UNACKED_SWEEP_MS, 5000; 0: off (events_sweep.h) */
    bool bus_pg_fallback;          /* HUB_BUS_PG_FALLBACK, 1: Redis down -> NOTIFY (pg_bus.h) */
    int game_max_s;                /* HUB_GAME_MAX_S, 900: a game's maximum unless it has one */
    int game_grace_s;              /* HUB_GAME_GRACE_S, 60: past the maximum, before timed_out */
    bool refund_timed_out;         /* HUB_REFUND_TIMED_OUT, false */
    int game_timeout_sweep_ms;     /* HUB_GAME_TIMEOUT_SWEEP_MS, 5000 (game_timeout.h) */
    int events_keep_hours;         /* HUB_EVENTS_KEEP_HOURS, 168; 0: keep acked events forever */
    int events_expire_sweep_ms;    /* HUB_EVENTS_EXPIRE_SWEEP_MS, 60000 (events_expire.h) */
} hub_config_t;

/* Fills cfg with the defaults, then the environment. */
void config_defaults(hub_config_t *cfg);

/*
 * Applies the flags of argv[first..argc) over cfg. Returns the index of the
 * first argument that is not an option (argc when none), or -1 with a message
 * on stderr for an unknown or malformed option. "--help" prints usage and
 * returns -2.
 */
int config_parse_args(hub_config_t *cfg, int argc, char **argv, int first);

/* Checks the combination (e.g. a database URL is set). 0, or -1 with err. */
int config_validate(const hub_config_t *cfg, char *err, size_t errlen);

/* Prints the options table. */
void config_usage(FILE *out);

#endif
