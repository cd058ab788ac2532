/*
 * pg_bus: the bus's fallback path through PostgreSQL LISTEN/NOTIFY (see
 * pg_bus.h). The listener is a pg_pool of one connection: the pool already
 * connects without blocking, resolves names off the loop, reconnects with
 * backoff and surfaces notifications (pg_pool_config_t.on_notify); its on_up
 * fires after every reconnect, which is when LISTEN must be sent again.
 */
#include "pg_bus.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_BUS_ORIGIN_LEN 16 /* hex digits */

struct pg_bus {
    uv_loop_t *loop;
    pg_pool_t *listener; /* one connection, LISTEN only */
    pg_pool_t *pool;     /* publishing; borrowed */
    pg_bus_message_cb on_message;
    pg_bus_gap_cb on_gap;
    void *arg;
    pg_log_cb log;
    void *log_arg;
    char origin[PG_BUS_ORIGIN_LEN + 1];
    int listening; /* LISTEN confirmed on the current connection */
    int closing;
    unsigned inflight; /* pg_notify queries whose callback is still due */
    unsigned long sent;
    unsigned long received;
};

static void pg_bus_free_if_done(pg_bus_t *pb)
{
    if (pb->closing && pb->inflight == 0)
        free(pb);
}

static void pg_bus_on_listen(void *arg, int status, PGresult *res, const char *errmsg)
{
    pg_bus_t *pb = arg;

    (void)res;
    if (pb->closing)
        return;
    if (status != PG_OK) {
        /* The connection died under it: on_up sends it again after the reconnect. */
        if (status == PG_EQUERY && pb->log)
            pb->log(pb->log_arg, PG_LOG_WARN, errmsg ? errmsg : "pg_bus: LISTEN refused");
        return;
    }
    pb->listening = 1;
    if (pb->on_gap)
        pb->on_gap(pb->arg, NULL); /* what was sent while nobody listened is gone */
}

/* The listener connected (again): a new session listens to nothing yet. */
static void pg_bus_on_up(void *arg)
{
    pg_bus_t *pb = arg;

    pb->listening = 0;
    if (pg_pool_query(pb->listener, "LISTEN " PG_BUS_CHANNEL, 0, NULL, pg_bus_on_listen, pb) != 0 &&
        pb->log)
        pb->log(pb->log_arg, PG_LOG_WARN, "pg_bus: cannot send LISTEN");
}

/* "<origin> <channel>\n<payload>", or "<origin> <channel>" for a gap. */
static void pg_bus_on_notify(void *arg, const char *relname, const char *extra)
{
    pg_bus_t *pb = arg;
    const char *channel, *nl;
    char name[256];
    size_t n;

    if (pb->closing || strcmp(relname, PG_BUS_CHANNEL) != 0 || extra == NULL)
        return;
    if (strlen(extra) < PG_BUS_ORIGIN_LEN + 2 || extra[PG_BUS_ORIGIN_LEN] != ' ')
        return;
    if (memcmp(extra, pb->origin, PG_BUS_ORIGIN_LEN) == 0)
        return; /* our own: delivered locally when it was published */
    channel = extra + PG_BUS_ORIGIN_LEN + 1;
    nl = strchr(channel, '\n');
    n = nl ? (size_t)(nl - channel) : strlen(channel);
    if (n == 0 || n >= sizeof(name))
        return;
    memcpy(name, channel, n);
    name[n] = '\0';
    pb->received++;
    if (nl == NULL) {
        if (pb->on_gap)
            pb->on_gap(pb->arg, name);
    } else if (pb->on_message) {
        pb->on_message(pb->arg, name, nl + 1, strlen(nl + 1));
    }
}

pg_bus_t *pg_bus_new(uv_loop_t *loop, const pg_bus_config_t *cfg, pg_bus_message_cb on_message,
                     pg_bus_gap_cb on_gap, void *arg)
{
    unsigned char rnd[PG_BUS_ORIGIN_LEN / 2];
    pg_bus_t *pb;

    if (loop == NULL || cfg == NULL || cfg->conninfo == NULL)
        return NULL;
    if ((pb = calloc(1, sizeof(*pb))) == NULL)
        return NULL;
    /* Synchronous (no loop): this runs at start-up, before the loop serves anything. */
    if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) != 0) {
        free(pb);
        return NULL;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(pb->origin + 2 * i, 3, "%02x", rnd[i]);
    pb->loop = loop;
    pb->on_message = on_message;
    pb->on_gap = on_gap;
    pb->arg = arg;
    pb->log = cfg->log;
    pb->log_arg = cfg->log_arg;
    pg_pool_config_t pc = {.conninfo = cfg->conninfo,
                           .size = 1,
                           .connect_timeout_ms = cfg->connect_timeout_ms,
                           .log = cfg->log,
                           .log_arg = cfg->log_arg,
                           .on_up = pg_bus_on_up,
                           .on_up_arg = pb,
                           .on_notify = pg_bus_on_notify,
                           .on_notify_arg = pb};
    if ((pb->listener = pg_pool_new(loop, &pc)) == NULL) {
        free(pb);
        return NULL;
    }
    return pb;
}

void pg_bus_set_pool(pg_bus_t *pb, pg_pool_t *pool)
{
    if (pb)
        pb->pool = pool;
}

static void pg_bus_on_sent(void *arg, int status, PGresult *res, const char *errmsg)
{
    pg_bus_t *pb = arg;

    (void)res;
    pb->inflight--;
    if (status == PG_OK)
        pb->sent++;
    else if (status == PG_EQUERY && pb->log && !pb->closing)
        pb->log(pb->log_arg, PG_LOG_WARN, errmsg ? errmsg : "pg_bus: NOTIFY refused");
    pg_bus_free_if_done(pb);
}

int pg_bus_publish(pg_bus_t *pb, const char *channel, const char *payload, size_t len)
{
    size_t clen, head, size;
    char *frame;
    int rc;

    if (pb == NULL || pb->closing || pb->pool == NULL || channel == NULL)
        return -1;
    clen = strlen(channel);
    head = PG_BUS_ORIGIN_LEN + 1 + clen;
    if (head > PG_BUS_PAYLOAD_MAX || memchr(channel, '\n', clen) != NULL)
        return -1;
    /* Too big for NOTIFY (or holding a NUL, which text cannot): the channel alone, a gap. */
    if (payload == NULL || head + 1 + len > PG_BUS_PAYLOAD_MAX || memchr(payload, '\0', len))
        len = 0, payload = NULL;
    size = head + (payload ? 1 + len : 0) + 1;
    if ((frame = malloc(size)) == NULL)
        return -1;
    memcpy(frame, pb->origin, PG_BUS_ORIGIN_LEN);
    frame[PG_BUS_ORIGIN_LEN] = ' ';
    memcpy(frame + PG_BUS_ORIGIN_LEN + 1, channel, clen);
    if (payload) {
        frame[head] = '\n';
        memcpy(frame + head + 1, payload, len);
    }
    frame[size - 1] = '\0';
    const char *params[1] = {frame};
    rc = pg_pool_query(pb->pool, "SELECT pg_notify('" PG_BUS_CHANNEL "', $1)", 1, params,
                       pg_bus_on_sent, pb);
    free(frame); /* the pool copied it */
    if (rc != 0)
        return -1;
    pb->inflight++;
    return 0;
}

int pg_bus_listening(const pg_bus_t *pb)
{
    return pb && pb->listening && pg_pool_connected(pb->listener) > 0;
}

unsigned long pg_bus_sent(const pg_bus_t *pb)
{
    return pb ? pb->sent : 0;
}

unsigned long pg_bus_received(const pg_bus_t *pb)
{
    return pb ? pb->received : 0;
}

void pg_bus_close(pg_bus_t *pb)
{
    if (pb == NULL || pb->closing)
        return;
    pb->closing = 1;
    pb->listening = 0;
    pg_pool_close(pb->listener); /* fails a LISTEN in flight: its callback sees closing */
    pb->listener = NULL;
    pg_bus_free_if_done(pb);
}
