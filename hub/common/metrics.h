/*
 * metrics: the process's counters, gauges and histograms, rendered as
 * Prometheus text for GET /metrics. One loop thread owns them, so they are
 * plain integers: no atomics.
 */
#ifndef RN_METRICS_H
#define RN_METRICS_H

#include <jansson.h>
#include <stddef.h>

typedef enum conn_kind {
    CONN_PENDING = 0, /* WebSocket not authenticated yet */
    CONN_PLAYER,
    CONN_ADMIN,
    CONN_CABINET,
    CONN_KIND_COUNT
} conn_kind_t;

/* Query outcomes, matching pg_pool's PG_OK / PG_EQUERY / PG_EUNAVAILABLE. */
typedef enum query_outcome { QUERY_OK = 0, QUERY_ERROR, QUERY_UNAVAILABLE } query_outcome_t;

void metrics_conn_add(conn_kind_t kind, int delta);
void metrics_ws_in(void);
void metrics_ws_out(unsigned long n);
/* A direct write the kernel did not take whole (a full socket; lws keeps the rest). */
void metrics_ws_partial(void);
/* A REST answer the kernel did not take whole at its first write (lws keeps the rest). */
void metrics_http_partial(void);
void metrics_http_response(int status);

/* Requests refused at the edge, before routing: rn_http_refused_total{why}. */
typedef enum http_refused {
    HTTP_REFUSED_URI = 0, /* 414 */
    HTTP_REFUSED_HEADERS, /* 431 */
    HTTP_REFUSED_LWS,     /* lws closed it without a status (unparsable, header buffer full) */
    HTTP_REFUSED_COUNT
} http_refused_t;
void metrics_http_refused(http_refused_t why);
void metrics_query_observe(double seconds, query_outcome_t outcome);

/*
 * Observes the time from a private event's commit to the device's ack.
 * kind is the event kind ("your_turn", ...); unknown kinds share "other".
 */
void metrics_delivery_observe(const char *kind, double seconds);

/* What the cabinets' side of the queue did (cabinet*.c). */
typedef enum cabinet_event {
    CAB_EV_ONLINE = 0,    /* a cabinet registered (rn_cabinet_online) */
    CAB_EV_OFFLINE,       /* shown offline after the grace window */
    CAB_EV_NO_SHOW,       /* a called reservation expired at its deadline */
    CAB_EV_UNLOCK_OK,     /* a right code */
    CAB_EV_UNLOCK_BAD,    /* a wrong code (counted towards the lock) */
    CAB_EV_UNLOCK_LOCKED, /* refused: unlock locked */
    CAB_EV_GAME_OVER,     /* scores recorded */
    CAB_EV_TIMED_OUT,     /* a game ended past its maximum duration (game_timeout.c) */
    CAB_EV_RECONCILED,    /* a playing reservation the cabinet no longer knew, ended */
    CAB_EV_VOIDED,        /* an admin voided a reservation */
    CAB_EV_MAINTENANCE,   /* an admin switched an arcade's maintenance */
    CAB_EV_COUNT
} cabinet_event_t;
void metrics_cabinet(cabinet_event_t ev);

/* The abuse limits (ratelimit.h): each counts what it allowed and refused. */
typedef enum limit_id {
    LIMIT_REST_IP = 0, /* REST requests per client IP */
    LIMIT_REST_USER,   /* REST requests per user */
    LIMIT_WS_IP,       /* new WebSocket connections per client IP */
    LIMIT_WS_USER,     /* WebSocket authentications per user */
    LIMIT_CABINET_KEY, /* failed cabinet API keys per client IP */
    LIMIT_PROMO,       /* failed promo codes per user */
    LIMIT_TOKEN,       /* failed token verifications per client IP */
    LIMIT_COUNT
} limit_id_t;
/* The limit's name in settings, Redis keys and metrics ("rest_ip", ...). */
const char *metrics_limit_name(limit_id_t id);
void metrics_limit(limit_id_t id, int allowed);
/* A limit decided by this process alone because Redis could not answer. */
void metrics_limit_local(void);
/* A deleted user's token refused (REST 403, WebSocket 4003), or a socket closed at deletion. */
void metrics_deleted_user_refused(void);

/* The unacked sweep re-pushed n events (events_sweep.c). */
void metrics_unacked_sweep(unsigned long n);

/* The retention deleted n acked private events (events_expire.c). */
void metrics_events_expired(unsigned long n);

/*
 * Which --workers process this is (slot index, how many times that slot was
 * started): /metrics shows it with the pid, so a scrape says which worker
 * answered. A process that is not a worker is index 0, started once.
 */
void metrics_set_worker(int index, int starts);
/* This process's --workers slot index (0 when not a worker). */
int metrics_worker_index(void);

/* What the catch-up duties did (duty.c). */
typedef enum catchup_event {
    CATCHUP_WANTED = 0, /* a new duty (a resync, a held resume) */
    CATCHUP_COALESCED,  /* wanted again while one was pending: merged */
    CATCHUP_RETRIED,    /* an attempt failed or could not start: retried later */
    CATCHUP_WAITED,     /* a duty had to wait (PostgreSQL unavailable) */
    CATCHUP_DONE,       /* an attempt succeeded */
    CATCHUP_EV_COUNT
} catchup_event_t;
void metrics_catchup(catchup_event_t ev);

/* Gauges owned elsewhere, sampled when rendering. */
typedef struct metrics_gauges { /* hub_gauges() samples them */
    int pg_connections;
    unsigned long pg_prepares; /* statements prepared (pg_pool_prepares) */
    int bus_up;
    unsigned long bus_reconnects;
    int pgbus_listening; /* the bus's PostgreSQL fallback listens */
    int pgbus_copying;   /* copying to it for a process without Redis (hub.c's bus watch) */
    unsigned long pgbus_sent, pgbus_received; /* messages through it */
    int firebase_live;         /* Firebase keys fetched from a URL: the next five are set */
    double firebase_key_age_s; /* since the keys in use were fetched; -1: never */
    unsigned long firebase_keys, firebase_fetches, firebase_failures, firebase_kid_refetches;
    unsigned long catchup_pending;         /* duties waiting or in flight */
    long deploy_processes, deploy_players; /* the deployment seen on Redis (deploy.h) */
} metrics_gauges_t;

/*
 * The admin dashboard's live stats: {"type":"stats","connections":{...},
 * "messages_in":N,"messages_out":N,"delivery":{"your_turn":{"count":N,
 * "mean_ms":x,"p99_ms":y},...}}. New reference.
 */
json_t *metrics_stats_json(const metrics_gauges_t *gauges);

/* Renders everything as Prometheus text into a malloc'd string (*len bytes). */
char *metrics_render(const metrics_gauges_t *gauges, size_t *len);

#endif
