/*
 * pg_pool: a small pool of non-blocking libpq connections driven by one libuv
 * loop. Nothing here ever blocks: connections are opened with
 * PQconnectStartParams/PQconnectPoll, queries are sent with PQsendQueryParams
 * (or, prepared, PQsendQueryPrepared) and read with PQconsumeInput/PQisBusy
 * under a uv_poll_t on PQsocket(), watched for writability only while libpq
 * holds unsent bytes.
 *
 * Prepared statements (pg_pool_config_t.prepared): the first time a
 * connection runs an SQL text it prepares it under a name (one more round
 * trip, once per connection and text), then executes it by name: PostgreSQL
 * no longer parses and plans the top-level statement at every call. A
 * reconnect, or a DISCARD / DEALLOCATE sent through the pool (never
 * prepared itself), starts the connection over with none. A function re-created under a
 * prepared statement is re-planned by PostgreSQL; if its result type changed
 * ("cached plan must not change result type") or the statement vanished (a
 * DISCARD, a pooler), the connection forgets its statements and the query is
 * prepared and run once more (the failed attempt ran nothing: an error
 * rolls the statement's implicit transaction back).
 *
 * One statement in flight per connection. Work that needs several statements
 * in one transaction lives in SQL functions (storage/sql), so every
 * request is one round trip.
 *
 * A lost connection is re-established from a backoff timer (100 ms doubling
 * to 1 s, jittered: a database back is used within about a second). While no
 * connection is up, pg_pool_query() fails at once (the caller answers 503);
 * a query whose connection dies under it completes with PG_EUNAVAILABLE.
 * Nothing hangs: connects have their own timer and statements run under the
 * server's statement_timeout.
 */
#ifndef RN_PG_POOL_H
#define RN_PG_POOL_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct pg_pool pg_pool_t;

/* Outcome of one query, as passed to pg_query_cb. */
enum {
    PG_OK = 0,            /* res is PGRES_TUPLES_OK or PGRES_COMMAND_OK */
    PG_EUNAVAILABLE = -1, /* no connection, connection lost, pool closing; res NULL */
    PG_EQUERY = -2,       /* the server refused the statement; res is the error
                             result (PQresultErrorField(res, PG_DIAG_SQLSTATE)) */
};

/*
 * Called exactly once per accepted query, on the loop thread. `res` is
 * borrowed for the call: the pool PQclear()s it afterwards. `errmsg` is a
 * one-line human message when status != PG_OK, else NULL; for a refused
 * statement its primary message only (a DETAIL may quote a row's values, and
 * errmsg is logged).
 */
typedef void (*pg_query_cb)(void *arg, int status, PGresult *res, const char *errmsg);

/* Called after each completed query (for metrics): seconds from send to result. */
typedef void (*pg_observe_cb)(void *arg, double seconds, int status);

/*
 * Optional log hook for the rare events an operator wants to see: a bad
 * conninfo, a connection lost, the pool unable to connect, the pool back up.
 * level is PG_LOG_INFO or PG_LOG_WARN; msg is one line, borrowed for the
 * call. Without a hook the pool writes nothing.
 */
enum { PG_LOG_INFO = 0, PG_LOG_WARN = 1 };
typedef void (*pg_log_cb)(void *arg, int level, const char *msg);

typedef struct pg_pool_config {
    const char *conninfo;     /* libpq URI or key=value; a host name is resolved off the
                                 loop before every connect (storage/resolve.h) */
    int size;                 /* connections (default 4) */
    int connect_timeout_ms;   /* default 5000 */
    int statement_timeout_ms; /* default 10000; sent as the connection's statement_timeout */
    int max_queued;           /* queued queries beyond which pg_pool_query fails (default 10000) */
    /*
     * 1: named prepared statements (see the top). 0 (the default): every
     * call an unnamed statement, as a pooler in transaction mode (PgBouncer
     * before 1.21) needs. The first 128 distinct SQL texts get a name; later
     * ones (SQL built at run time) run unnamed.
     */
    int prepared;
    pg_observe_cb observe; /* optional */
    void *observe_arg;
    pg_log_cb log; /* optional */
    void *log_arg;
    /*
     * Optional: the pool went from no connection to one (at start-up too).
     * Work that failed with PG_EUNAVAILABLE can be retried now. Called on
     * the loop thread from the pool's own I/O; it may queue queries.
     */
    void (*on_up)(void *arg);
    void *on_up_arg;
    /*
     * Optional: a NOTIFY arrived on one of the connections (after a LISTEN
     * the caller sent). channel and payload are borrowed for the call. Loop
     * thread; the callback may queue queries or close the pool.
     */
    void (*on_notify)(void *arg, const char *channel, const char *payload);
    void *on_notify_arg;
} pg_pool_config_t;

/* Creates the pool and starts connecting. Returns NULL on bad config. */
pg_pool_t *pg_pool_new(uv_loop_t *loop, const pg_pool_config_t *cfg);

/*
 * Queues one statement with text parameters (copied; the caller may free its
 * strings on return). A NULL param is SQL NULL. Returns 0 and later calls cb
 * once, never before pg_pool_query() returns; or returns PG_EUNAVAILABLE (no
 * connection up, queue full, closing, a NULL pool) or PG_EQUERY (bad arguments: NULL sql
 * or cb, nparams outside 0..65535) and never calls cb.
 */
int pg_pool_query(pg_pool_t *pool, const char *sql, int nparams, const char *const *params,
                  pg_query_cb cb, void *arg);

/*
 * Copies a libpq message (PQerrorMessage, PQresultErrorMessage) into buf as
 * one line: newlines and runs of blanks become one space, the ends are
 * trimmed. Returns buf ("" when len is 0).
 */
const char *pg_one_line(const char *msg, char *buf, size_t len);

/* Number of connections currently established (0 means: answer 503). */
int pg_pool_connected(const pg_pool_t *pool);

/* Statements prepared so far, every connection (a reconnect prepares again): for metrics. */
unsigned long pg_pool_prepares(const pg_pool_t *pool);

/*
 * Fails every queued and in-flight query with PG_EUNAVAILABLE (those
 * callbacks run before pg_pool_close() returns), closes the connections and
 * the uv handles. The pool frees itself in the last close callback; run the
 * loop to let it finish. The pointer is dead on return. May be called from a
 * pg_query_cb.
 */
void pg_pool_close(pg_pool_t *pool);

#endif
