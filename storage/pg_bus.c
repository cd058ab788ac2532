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

#define PG_BUS_ORIGIN_LEN 16    /* hex digits */
#define PG_BUS_BATCH 32         /* NOTIFYs per statement */
#define PG_BUS_PENDING_MAX 4096 /* frames waiting for the next flush; beyond: dropped */

struct pg_bus {
    uv_loop_t *loop;
    pg_pool_t *listener; /* one connection, LISTEN only */
    pg_pool_t *pool;     /* publishing; borrowed */
    pg_bus_message_cb on_message;
    pg_bus_gap_cb on_gap;
    pg_bus_announce_cb on_announce;
    pg_bus_wants_copies_cb wants_copies;
    void *arg;
    pg_log_cb log;
    void *log_arg;
    char origin[PG_BUS_ORIGIN_LEN + 1];
    int listening; /* LISTEN confirmed on the current connection */
    int closing;
    unsigned inflight; /* pg_notify queries whose callback is still due */
    /*
     * Frames published in this loop turn, sent together from a 0 ms timer:
     * one change publishes several messages (each user's events, the
     * snapshot, the admin mirror), and one statement for all of them keeps
     * the pool free for requests.
     */
    char **pending;
    size_t npending, cap;
    uv_timer_t flush;
    int flush_open; /* the timer handle is not closed yet */
    unsigned long sent;
    unsigned long received;
};

static void pg_bus_free_if_done(pg_bus_t *pb)
{
    if (pb->closing && pb->inflight == 0 && !pb->flush_open) {
        free(pb->pending);
        free(pb);
    }
}

static void pg_bus_on_flush_closed(uv_handle_t *h)
{
    pg_bus_t *pb = h->data;

    pb->flush_open = 0;
    pg_bus_free_if_done(pb);
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

/*
 * "<origin> <channel>\n<payload>", or "<origin> <channel>" for a gap; '+'
 * instead of the space for a copy; "<origin>!" for an announce.
 */
static void pg_bus_on_notify(void *arg, const char *relname, const char *extra)
{
    pg_bus_t *pb = arg;
    const char *channel, *nl;
    char name[256], mark;
    size_t n;

    if (pb->closing || strcmp(relname, PG_BUS_CHANNEL) != 0 || extra == NULL)
        return;
    if (strlen(extra) < PG_BUS_ORIGIN_LEN + 1 || memcmp(extra, pb->origin, PG_BUS_ORIGIN_LEN) == 0)
        return; /* our own: delivered locally when it was published */
    mark = extra[PG_BUS_ORIGIN_LEN];
    if (mark == '!' && extra[PG_BUS_ORIGIN_LEN + 1] == '\0') {
        if (pb->on_announce)
            pb->on_announce(pb->arg);
        return;
    }
    if ((mark != ' ' && mark != '+') || extra[PG_BUS_ORIGIN_LEN + 1] == '\0' ||
        (mark == '+' && pb->wants_copies && !pb->wants_copies(pb->arg)))
        return;
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
    pb->on_announce = cfg->on_announce;
    pb->wants_copies = cfg->wants_copies;
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
    uv_timer_init(loop, &pb->flush); /* cannot fail on a live loop */
    pb->flush.data = pb;
    pb->flush_open = 1;
    return pb;
}

void pg_bus_set_pool(pg_bus_t *pb, pg_pool_t *pool)
{
    if (pb)
        pb->pool = pool;
}

/* One statement's worth of NOTIFYs: how many, for the count. */
typedef struct pg_bus_batch {
    pg_bus_t *pb;
    unsigned n;
} pg_bus_batch_t;

static void pg_bus_on_sent(void *arg, int status, PGresult *res, const char *errmsg)
{
    pg_bus_batch_t *batch = arg;
    pg_bus_t *pb = batch->pb;

    (void)res;
    pb->inflight--;
    if (status == PG_OK)
        pb->sent += batch->n;
    else if (status == PG_EQUERY && pb->log && !pb->closing)
        pb->log(pb->log_arg, PG_LOG_WARN, errmsg ? errmsg : "pg_bus: NOTIFY refused");
    free(batch);
    pg_bus_free_if_done(pb);
}

/* "SELECT pg_notify('rn_bus', $1), pg_notify('rn_bus', $2), ..." for n frames. */
static int pg_bus_send(pg_bus_t *pb, char **frames, unsigned n)
{
    char sql[PG_BUS_BATCH * 40 + 16];
    size_t off = (size_t)snprintf(sql, sizeof(sql), "SELECT ");
    pg_bus_batch_t *batch = malloc(sizeof(*batch));

    if (batch == NULL)
        return -1;
    for (unsigned i = 0; i < n; i++)
        off += (size_t)snprintf(sql + off, sizeof(sql) - off,
                                "%spg_notify('" PG_BUS_CHANNEL "', $%u)", i ? ", " : "", i + 1);
    batch->pb = pb;
    batch->n = n;
    if (pg_pool_query(pb->pool, sql, (int)n, (const char *const *)frames, pg_bus_on_sent, batch) !=
        0) {
        free(batch);
        return -1;
    }
    pb->inflight++;
    return 0;
}

/* The turn's frames, PG_BUS_BATCH per statement, in order. Without a pool they are dropped. */
static void pg_bus_on_flush(uv_timer_t *t)
{
    pg_bus_t *pb = t->data;
    size_t i = 0;

    while (i < pb->npending && pb->pool != NULL && !pb->closing) {
        unsigned n = pb->npending - i < PG_BUS_BATCH ? (unsigned)(pb->npending - i) : PG_BUS_BATCH;
        if (pg_bus_send(pb, pb->pending + i, n) != 0)
            break; /* the pool is down: the receivers' catch-ups cover what is lost */
        i += n;
    }
    for (i = 0; i < pb->npending; i++)
        free(pb->pending[i]); /* the pool copied what it took */
    pb->npending = 0;
}

static int pg_bus_queue(pg_bus_t *pb, char *frame)
{
    if (pb->npending == pb->cap) {
        size_t cap = pb->cap ? pb->cap * 2 : 16;
        char **p;

        if (cap > PG_BUS_PENDING_MAX || (p = realloc(pb->pending, cap * sizeof(*p))) == NULL)
            return -1;
        pb->pending = p;
        pb->cap = cap;
    }
    pb->pending[pb->npending++] = frame;
    if (pb->npending == 1)
        uv_timer_start(&pb->flush, pg_bus_on_flush, 0, 0);
    return 0;
}

int pg_bus_publish(pg_bus_t *pb, const char *channel, const char *payload, size_t len, bool copy)
{
    size_t clen, head, size;
    char *frame;

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
    frame[PG_BUS_ORIGIN_LEN] = copy ? '+' : ' ';
    memcpy(frame + PG_BUS_ORIGIN_LEN + 1, channel, clen);
    if (payload) {
        frame[head] = '\n';
        memcpy(frame + head + 1, payload, len);
    }
    frame[size - 1] = '\0';
    if (pg_bus_queue(pb, frame) != 0) {
        free(frame);
        return -1;
    }
    return 0;
}

int pg_bus_announce(pg_bus_t *pb)
{
    char *frame;

    if (pb == NULL || pb->closing || pb->pool == NULL ||
        (frame = malloc(PG_BUS_ORIGIN_LEN + 2)) == NULL)
        return -1;
    memcpy(frame, pb->origin, PG_BUS_ORIGIN_LEN);
    memcpy(frame + PG_BUS_ORIGIN_LEN, "!", 2);
    if (pg_bus_queue(pb, frame) != 0) {
        free(frame);
        return -1;
    }
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
    for (size_t i = 0; i < pb->npending; i++)
        free(pb->pending[i]);
    pb->npending = 0;
    uv_close((uv_handle_t *)&pb->flush, pg_bus_on_flush_closed);
}
