/*
 * bus_cluster: the bus over a Redis Cluster with sharded pub/sub. See
 * bus_cluster.h for what it does, bus.h for the contract it keeps.
 *
 * State: the masters we know (nodes[]: a channel names its master by
 * index; a departed master's entry is reused only once nothing names it),
 * the slot map (owner[] -> index), and per channel the master its SSUBSCRIBE
 * went to and whether that master confirmed it. One rule puts channels
 * where they belong, cl_reconcile(): every channel whose owner is not the
 * master it is on (or on none) is sent to its owner. It runs after every map
 * change and whenever a push link becomes ready.
 *
 * A master's two links live and die together (its command link's PING is
 * the health check of both): any loss frees both, forgets which channels
 * were there, takes the bus down and asks for a new map with backoff. While
 * the failover is under way the map still names the dead master, the
 * connects fail, and the backoff paces the retries until the replica is
 * promoted and announced.
 *
 * A 'sunsubscribe' push for a channel we still want means its slot moved
 * (the server drops sharded subscriptions then): it is re-subscribed on the
 * new owner and, as the bus stays up, its confirmation runs the subscribed
 * callback, so the caller catches that channel up.
 */
#include "bus_cluster.h"

#include "redis_link.h"
#include "redis_slot.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    CL_MAX_NODES = 2 * REDIS_MAP_MAX_NODES, /* masters known, current and departed */
    CL_REFRESH_MS = 5000,                   /* periodic map refresh */
    CL_MAX_REDIRECTS = 3,                   /* MOVED/ASK followed per command */
    CL_PUBLISH_WAIT_MS = 1000,              /* an SPUBLISH unanswered this long: fallback */
    CL_LATE_TICK_MS = 250,
};

typedef struct cl_node {
    struct bus_cluster *cl;
    int idx;
    redis_addr_t addr;
    redis_link_t *cmd;
    redis_link_t *sub;
    int in_map;     /* a master in the current map */
    int was_up;     /* its command link was ready: log its loss once */
    size_t pending; /* SSUBSCRIBEs sent on sub and not confirmed */
} cl_node_t;

typedef struct bus_cluster {
    bus_t *bus;
    cl_node_t *nodes[CL_MAX_NODES];
    int nnodes;
    int16_t owner[REDIS_SLOTS]; /* -> nodes[], -1 until a map says */
    int have_map;
    int complete; /* the map covers every slot */
    int refreshing;
    unsigned next_seed; /* where the next probe goes */
    redis_link_t *probe;
    char asked[INET6_ADDRSTRLEN]; /* the node the CLUSTER SLOTS in flight went to */
    resolve_req_t *resolving;
    int resolving_port;
    uv_timer_t refresh_timer; /* the next refresh (backoff after a failure) */
    uv_timer_t period_timer;
    uv_timer_t late_timer;               /* publishes unanswered too long */
    struct cl_call *pub_head, *pub_tail; /* publishes awaiting a reply, oldest first */
    int open_handles;
    redis_slot_map_t map; /* scratch for the parse */
} bus_cluster_t;

/* A bus_cluster_command() or bus_cluster_publish() in flight. */
typedef struct cl_call {
    bus_cluster_t *cl;
    bus_reply_cb cb; /* NULL: a publish (fallback on refusal) */
    void *arg;
    int node; /* where it went */
    int redirects;
    struct cl_call *prev, *next; /* publishes: in the cluster's list until answered or late */
    int linked;
    int decided;      /* publishes: sent by the fallback already (late); the reply is dropped */
    uint64_t sent_ms; /* publishes: first sent */
    int argc;
    const char **argv;
    size_t *lens;
    char data[]; /* argv, lens, then the arguments, each NUL-terminated */
} cl_call_t;

static void cl_refresh_later(bus_cluster_t *cl, int failed);
static void cl_reconcile(bus_cluster_t *cl);
static void cl_place(bus_cluster_t *cl, bus_chan_t *c);

/* ---- channels ---- */

#define CL_FOREACH_CHAN(bus, c)                                                                    \
    for (size_t i_ = 0; i_ < (bus)->nbuckets; i_++)                                                \
        for (bus_chan_t *c = (bus)->buckets[i_]; c != NULL; c = c->next)

static int cl_chan_owner(const bus_cluster_t *cl, const bus_chan_t *c)
{
    return cl->owner[redis_slot(c->name, c->len)];
}

static int cl_send_chan(cl_node_t *n, const char *verb, const bus_chan_t *c)
{
    const char *argv[] = {verb, c->name};
    size_t lens[] = {strlen(verb), c->len};

    return redis_link_command(n->sub, 2, argv, lens, NULL, NULL);
}

/* c leaves the master it was on (SUNSUBSCRIBE there, if its push link is up). */
static void cl_chan_detach(bus_cluster_t *cl, bus_chan_t *c)
{
    cl_node_t *n;

    if (c->node < 0)
        return;
    n = cl->nodes[c->node];
    if (!c->confirmed && n->pending > 0)
        n->pending--;
    /* Also after an SSUBSCRIBE still in flight: it is undone in order. */
    if (redis_link_ready(n->sub))
        (void)cl_send_chan(n, "SUNSUBSCRIBE", c);
    c->node = -1;
    c->confirmed = 0;
}

/* ---- up / down ---- */

static void cl_check_up(bus_cluster_t *cl)
{
    bus_t *bus = cl->bus;

    if (bus->up || bus->closing || !cl->complete)
        return;
    for (int i = 0; i < cl->nnodes; i++) {
        cl_node_t *n = cl->nodes[i];
        if (n->in_map && (!redis_link_ready(n->cmd) || n->pending > 0))
            return;
    }
    CL_FOREACH_CHAN(bus, c)
    {
        if (c->interest > 0 && (c->node < 0 || !c->confirmed))
            return;
    }
    bus_went_up(bus);
}

/* ---- masters ---- */

/* Frees n's push link; its channels are nowhere until reconciled. */
static void cl_sub_reset(cl_node_t *n)
{
    redis_link_free(n->sub);
    n->sub = NULL;
    n->pending = 0;
    CL_FOREACH_CHAN(n->cl->bus, c)
    {
        if (c->node == n->idx) {
            c->node = -1;
            c->confirmed = 0;
        }
    }
}

/* Frees a master's links; its channels are nowhere until reconciled. */
static void cl_node_drop(cl_node_t *n)
{
    cl_sub_reset(n);
    redis_link_free(n->cmd);
    n->cmd = NULL;
}

/* A link of n was lost: both go, the bus is down, and the map is read again. */
static void cl_node_fail(cl_node_t *n)
{
    bus_cluster_t *cl = n->cl;

    if (n->was_up)
        bus_log(cl->bus, 1, "Redis Cluster: lost master %s:%d", n->addr.host, n->addr.port);
    n->was_up = 0;
    cl_node_drop(n);
    bus_went_down(cl->bus);
    cl_refresh_later(cl, 1);
}

static void cl_on_push(void *arg, redisReply *reply);

static void cl_on_link_state(void *arg, redis_link_t *link, int up)
{
    cl_node_t *n = arg;

    if (n->cl->bus->closing)
        return;
    if (!up) {
        cl_node_fail(n);
        return;
    }
    if (link == n->sub) {
        cl_reconcile(n->cl); /* sends what belongs here */
    } else {
        n->was_up = 1;
        cl_check_up(n->cl);
    }
}

static redis_link_t *cl_node_link(cl_node_t *n, int push)
{
    redis_link_t *link = bus_redis_link(n->cl->bus, n->addr.host, n->addr.port, NULL,
                                        cl_on_link_state, push ? cl_on_push : NULL, n);

    if (link == NULL)
        cl_refresh_later(n->cl, 1); /* no socket now: try again later */
    return link;
}

static int cl_node_find(const bus_cluster_t *cl, const char *host, int port)
{
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->addr.port == port && strcmp(cl->nodes[i]->addr.host, host) == 0)
            return i;
    return -1;
}

/*
 * A slot in nodes[] for a master new to us: a new one, or, when the table
 * is full (hosts that come back on new addresses, over months), one of a
 * master gone from the map, not taken by this map, with no links left (and
 * so no channel naming it). -1 when there is none.
 */
static int cl_node_new(bus_cluster_t *cl, const redis_addr_t *addr, const char *taken)
{
    cl_node_t *n;
    int i;

    if (cl->nnodes < CL_MAX_NODES) {
        if ((n = calloc(1, sizeof(*n))) == NULL)
            return -1;
        n->cl = cl;
        n->idx = cl->nnodes;
        cl->nodes[cl->nnodes++] = n;
    } else {
        for (i = 0; i < cl->nnodes; i++) {
            n = cl->nodes[i];
            if (!taken[i] && !n->in_map && n->cmd == NULL && n->sub == NULL)
                break;
        }
        if (i == cl->nnodes)
            return -1;
        n->was_up = 0;
        n->pending = 0;
    }
    n->addr = *addr;
    return n->idx;
}

/* A 'sunsubscribe' for a channel confirmed here: its slot moved away. */
static void cl_on_moved_away(cl_node_t *n, bus_chan_t *c)
{
    bus_log(n->cl->bus, 0, "Redis Cluster: channel %s left %s:%d (its slot moved)", c->name,
            n->addr.host, n->addr.port);
    c->node = -1;
    c->confirmed = 0;
    cl_refresh_later(n->cl, 0);
}

/*
 * An SSUBSCRIBE answered MOVED (our map is older than the server's): the
 * channels of that slot still waiting here go to the master it names. The
 * rest of the map is read again, after the backoff: a node asked at once
 * may be as late as we were. 0, or -1 when that master is not one we know.
 */
static int cl_on_push_moved(cl_node_t *n, const redisReply *reply)
{
    bus_cluster_t *cl = n->cl;
    redis_addr_t to;
    unsigned slot;
    int node;

    if (redis_redirect_parse(reply->str, reply->len, &slot, &to) != 1)
        return -1;
    if (to.host[0] == '\0')
        strcpy(to.host, n->addr.host);
    if ((node = cl_node_find(cl, to.host, to.port)) < 0 || !cl->nodes[node]->in_map)
        return -1;
    cl->owner[slot] = (int16_t)node;
    CL_FOREACH_CHAN(cl->bus, c)
    {
        if (c->node == n->idx && !c->confirmed && redis_slot(c->name, c->len) == slot) {
            cl_chan_detach(cl, c);
            cl_place(cl, c);
        }
    }
    cl_refresh_later(cl, 1);
    return 0;
}

/* Every reply on a master's push link. */
static void cl_on_push(void *arg, redisReply *reply)
{
    cl_node_t *n = arg;
    bus_t *bus = n->cl->bus;
    const redisReply *kind, *chan;
    bus_chan_t *c;

    if (reply->type == REDIS_REPLY_ERROR) {
        if (cl_on_push_moved(n, reply) == 0)
            return;
        /*
         * CLUSTERDOWN, or a MOVED to a master we do not know: we cannot tell
         * which channel, so this push link starts over once the map has been
         * read again. The bus stays up: each channel's new confirmation runs
         * the subscribed callback (catch-up).
         */
        bus_log(bus, 1, "Redis Cluster: %s:%d refused a subscription: %s", n->addr.host,
                n->addr.port, reply->str);
        cl_sub_reset(n);
        cl_refresh_later(n->cl, 1);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    kind = reply->element[0];
    chan = reply->element[1];
    c = bus_chan_find(bus, chan->str, chan->len);
    if (c == NULL || c->interest == 0)
        return; /* unsubscribed meanwhile */
    if (strcasecmp(kind->str, "smessage") == 0) {
        if (reply->element[2]->type == REDIS_REPLY_STRING && bus->on_message != NULL)
            bus->on_message(bus->arg, c->name, reply->element[2]->str, reply->element[2]->len);
    } else if (strcasecmp(kind->str, "ssubscribe") == 0) {
        if (c->node != n->idx || c->confirmed)
            return;
        c->confirmed = 1;
        if (n->pending > 0)
            n->pending--;
        /* While up this is a channel new here (or moved): it may have missed messages. */
        if (bus->up && bus->on_subscribed != NULL)
            bus->on_subscribed(bus->arg, c->name);
        else
            cl_check_up(n->cl);
    } else if (strcasecmp(kind->str, "sunsubscribe") == 0) {
        if (c->node == n->idx && c->confirmed)
            cl_on_moved_away(n, c);
    }
}

/*
 * Puts c on its owner, if it is not there: opens the owner's push link if
 * it has none (cl_reconcile runs again once it is ready), or sends
 * SSUBSCRIBE on it.
 */
static void cl_place(bus_cluster_t *cl, bus_chan_t *c)
{
    int owner = cl_chan_owner(cl, c);
    cl_node_t *n;

    if (c->interest == 0 || owner < 0 || c->node == owner)
        return;
    cl_chan_detach(cl, c);
    n = cl->nodes[owner];
    if (n->sub == NULL && (n->sub = cl_node_link(n, 1)) == NULL)
        return;
    if (!redis_link_ready(n->sub) || cl_send_chan(n, "SSUBSCRIBE", c) != 0)
        return; /* a link being lost: its state callback follows */
    c->node = owner;
    c->confirmed = 0;
    n->pending++;
}

/* Every channel with interest to its owner; after a map change or a push link ready. */
static void cl_reconcile(bus_cluster_t *cl)
{
    bus_t *bus = cl->bus;

    if (!cl->have_map || bus->closing)
        return;
    CL_FOREACH_CHAN(bus, c)
    {
        cl_place(cl, c);
    }
    cl_check_up(cl);
}

/* ---- the slot map ---- */

static void cl_apply_map(bus_cluster_t *cl, const redis_slot_map_t *map)
{
    int remap[REDIS_MAP_MAX_NODES];
    char taken[CL_MAX_NODES] = {0};
    int changed = !cl->have_map;

    for (int i = 0; i < map->nnodes; i++)
        if ((remap[i] = cl_node_find(cl, map->node[i].host, map->node[i].port)) >= 0)
            taken[remap[i]] = 1;
    for (int i = 0; i < map->nnodes; i++)
        if (remap[i] < 0 && (remap[i] = cl_node_new(cl, &map->node[i], taken)) >= 0)
            taken[remap[i]] = 1;
    for (int i = 0; i < cl->nnodes; i++) {
        cl_node_t *n = cl->nodes[i];
        int now = 0;
        for (int j = 0; j < map->nnodes; j++)
            now |= remap[j] == i;
        changed |= now != n->in_map;
        if (n->in_map && !now) { /* demoted (a replica now) or gone */
            if (n->was_up)
                bus_log(cl->bus, 1, "Redis Cluster: %s:%d is no longer a master", n->addr.host,
                        n->addr.port);
            n->was_up = 0;
            cl_node_drop(n);
        }
        n->in_map = now;
    }
    for (int s = 0; s < REDIS_SLOTS; s++) {
        int o = map->owner[s] >= 0 ? remap[map->owner[s]] : -1;
        changed |= cl->owner[s] != o;
        cl->owner[s] = (int16_t)o;
    }
    cl->have_map = 1;
    cl->complete = map->complete;
    for (int i = 0; i < map->nnodes; i++)
        if (remap[i] < 0)
            cl->complete = 0; /* no room for that master: not all of the cluster */
    if (changed)
        bus_log(cl->bus, 0, "Redis Cluster: %d masters, %s", map->nnodes,
                cl->complete ? "every slot served" : "some slots unserved");
    for (int i = 0; i < cl->nnodes; i++) {
        cl_node_t *n = cl->nodes[i];
        if (n->in_map && n->cmd == NULL)
            n->cmd = cl_node_link(n, 0);
    }
    cl_reconcile(cl);
}

static void cl_refresh_done(bus_cluster_t *cl, int failed)
{
    redis_link_free(cl->probe); /* safe inside its own callback */
    cl->probe = NULL;
    cl->refreshing = 0;
    if (failed)
        cl_refresh_later(cl, 1);
}

static void cl_on_slots(void *arg, redisReply *reply)
{
    bus_cluster_t *cl = arg;
    const char *why = "no reply";

    if (cl->bus->closing)
        return;
    if (reply == NULL || redis_slot_map_parse(&cl->map, reply, cl->asked, &why) != 0) {
        bus_log(cl->bus, 1, "Redis Cluster: cannot read the topology from %s: %s", cl->asked,
                reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : why);
        cl_refresh_done(cl, 1);
        return;
    }
    cl_refresh_done(cl, !cl->map.complete);
    cl_apply_map(cl, &cl->map);
}

static int cl_ask_slots(bus_cluster_t *cl, redis_link_t *link, const char *host)
{
    const char *argv[] = {"CLUSTER", "SLOTS"};
    size_t lens[] = {7, 5};

    if (host != cl->asked) /* a probe's address is there already */
        snprintf(cl->asked, sizeof(cl->asked), "%s", host);
    return redis_link_command(link, 2, argv, lens, cl_on_slots, cl);
}

static void cl_on_probe_state(void *arg, redis_link_t *link, int up)
{
    bus_cluster_t *cl = arg;

    (void)link;
    if (cl->bus->closing)
        return;
    if (!up || cl_ask_slots(cl, cl->probe, cl->asked) != 0)
        cl_refresh_done(cl, 1);
}

static void cl_probe(bus_cluster_t *cl, const char *host, int port)
{
    snprintf(cl->asked, sizeof(cl->asked), "%s", host);
    cl->probe = bus_redis_link(cl->bus, host, port, NULL, cl_on_probe_state, NULL, cl);
    if (cl->probe == NULL)
        cl_refresh_done(cl, 1);
}

static void cl_on_resolved(void *arg, int status, const resolve_result_t *res)
{
    bus_cluster_t *cl = arg;

    cl->resolving = NULL;
    if (status < 0) {
        bus_log(cl->bus, 1, "Redis Cluster: cannot resolve a seed (retrying): %s",
                uv_strerror(status));
        cl_refresh_done(cl, 1);
        return;
    }
    cl_probe(cl, res->addr[0], cl->resolving_port);
}

/*
 * Reads the map: on a known master's ready command link when there is one
 * (no new connection), else on a probe to the next seed or known master in
 * turn, so that a dead seed does not stop us.
 */
static void cl_refresh(bus_cluster_t *cl)
{
    bus_t *bus = cl->bus;
    unsigned total = (unsigned)(bus->nseeds + cl->nnodes), k;
    int err = 0;

    if (cl->refreshing || bus->closing)
        return;
    cl->refreshing = 1;
    for (int i = 0; i < cl->nnodes; i++) {
        cl_node_t *n = cl->nodes[(cl->next_seed + (unsigned)i) % (unsigned)cl->nnodes];
        if (n->in_map && redis_link_ready(n->cmd) && cl_ask_slots(cl, n->cmd, n->addr.host) == 0) {
            cl->next_seed++;
            return;
        }
    }
    k = cl->next_seed++ % total;
    if (k < (unsigned)bus->nseeds && bus->seeds[k].host[0] == '\0') {
        cl->resolving_port = bus->seeds[k].port;
        cl->resolving = resolve_start(bus->loop, bus->seeds[k].name, cl_on_resolved, cl, &err);
        if (cl->resolving == NULL)
            cl_refresh_done(cl, 1);
    } else if (k < (unsigned)bus->nseeds) {
        cl_probe(cl, bus->seeds[k].host, bus->seeds[k].port);
    } else {
        cl_node_t *n = cl->nodes[k - (unsigned)bus->nseeds];
        cl_probe(cl, n->addr.host, n->addr.port);
    }
}

static void cl_on_refresh_timer(uv_timer_t *timer)
{
    cl_refresh(timer->data);
}

/* A refresh now (something changed) or after the backoff (something failed). */
static void cl_refresh_later(bus_cluster_t *cl, int failed)
{
    if (cl->bus->closing || cl->refreshing || uv_is_active((uv_handle_t *)&cl->refresh_timer))
        return;
    uv_timer_start(&cl->refresh_timer, cl_on_refresh_timer, failed ? bus_next_backoff(cl->bus) : 0,
                   0);
}

static void cl_on_period(uv_timer_t *timer)
{
    bus_cluster_t *cl = timer->data;

    cl_refresh_later(cl, 0);
}

/* ---- commands and publishes ---- */

static void cl_on_call_reply(void *arg, redisReply *reply);

static int cl_call_send(cl_call_t *call, int node, int asking)
{
    cl_node_t *n = call->cl->nodes[node];
    const char *argv[] = {"ASKING"};
    size_t lens[] = {6};

    if (!redis_link_ready(n->cmd))
        return -1;
    if (asking && redis_link_command(n->cmd, 1, argv, lens, NULL, NULL) != 0)
        return -1;
    if (redis_link_command(n->cmd, call->argc, call->argv, call->lens, cl_on_call_reply, call) != 0)
        return -1;
    call->node = node;
    return 0;
}

/* MOVED or ASK: send it where the cluster says (MOVED also rereads the map). */
static int cl_call_redirect(cl_call_t *call, const redisReply *reply)
{
    bus_cluster_t *cl = call->cl;
    redis_addr_t to;
    unsigned slot;
    int kind, node;

    kind = redis_redirect_parse(reply->str, reply->len, &slot, &to);
    if (kind == 0 || call->redirects++ >= CL_MAX_REDIRECTS)
        return -1;
    if (to.host[0] == '\0')
        strcpy(to.host, cl->nodes[call->node]->addr.host);
    if (kind == 1)
        cl_refresh_later(cl, 0);
    if ((node = cl_node_find(cl, to.host, to.port)) < 0 || !cl->nodes[node]->in_map)
        return -1; /* a master our map does not have yet: the refresh will bring it */
    if (kind == 1)
        cl->owner[slot] = (int16_t)node;
    return cl_call_send(call, node, kind == 2);
}

static void cl_pub_link(bus_cluster_t *cl, cl_call_t *call)
{
    call->linked = 1;
    call->sent_ms = uv_now(cl->bus->loop);
    call->next = NULL;
    call->prev = cl->pub_tail;
    if (cl->pub_tail != NULL)
        cl->pub_tail->next = call;
    else
        cl->pub_head = call;
    cl->pub_tail = call;
}

static void cl_pub_unlink(bus_cluster_t *cl, cl_call_t *call)
{
    if (!call->linked)
        return;
    call->linked = 0;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        cl->pub_head = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    else
        cl->pub_tail = call->prev;
}

/*
 * A master that stopped answering (frozen, a dead path) is found by its
 * missed PINGs only after a few seconds, and its replacement may be
 * carrying the other hubs' subscriptions before that. So an SPUBLISH
 * unanswered for CL_PUBLISH_WAIT_MS goes by the fallback at once instead of
 * after the loss is found: delivered within about a second either way, and
 * not in one burst with the catch-up that follows the loss (the private
 * lane drops a repeat only within its last 32 events).
 */
static void cl_on_late(uv_timer_t *timer)
{
    bus_cluster_t *cl = timer->data;
    uint64_t now = uv_now(cl->bus->loop);

    while (cl->pub_head != NULL && now - cl->pub_head->sent_ms >= CL_PUBLISH_WAIT_MS) {
        cl_call_t *call = cl->pub_head;
        cl_pub_unlink(cl, call);
        call->decided = 1;
        bus_publish_fallback(cl->bus, call->argv[1], call->argv[2], call->lens[2]);
    }
}

static void cl_on_call_reply(void *arg, redisReply *reply)
{
    cl_call_t *call = arg;
    bus_t *bus = call->cl->bus;

    if (call->decided) { /* the fallback carried it already */
        free(call);
        return;
    }
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !bus->closing &&
        cl_call_redirect(call, reply) == 0)
        return;
    cl_pub_unlink(call->cl, call);
    if (call->cb != NULL) {
        call->cb(call->arg, reply);
    } else if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        /*
         * A refused SPUBLISH (CLUSTERDOWN, TRYAGAIN, a redirect we could not
         * follow), or one whose master was lost before it answered: a killed
         * master took it along, and a frozen one is replaced while the other
         * hubs already listen on its successor. So it goes by the fallback
         * too; should the master have carried it after all, the private
         * lane drops the second copy (session_out.c) and a snapshot is
         * conflated.
         */
        bus_publish_fallback(bus, call->argv[1], call->argv[2], call->lens[2]);
    }
    free(call);
}

static cl_call_t *cl_call_new(bus_cluster_t *cl, int argc, const char **argv, const size_t *lens)
{
    size_t bytes = 0, off;
    cl_call_t *call;
    char *p;

    for (int i = 0; i < argc; i++) /* each argument NUL-terminated: the fallback takes C strings */
        bytes += (lens != NULL ? lens[i] : strlen(argv[i])) + 1;
    off = sizeof(*call) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    if ((call = calloc(1, off + bytes)) == NULL)
        return NULL;
    call->cl = cl;
    call->argc = argc;
    call->argv = (const char **)(void *)call->data;
    call->lens = (size_t *)(void *)(call->data + (size_t)argc * sizeof(char *));
    p = (char *)call + off;
    for (int i = 0; i < argc; i++) {
        size_t n = lens != NULL ? lens[i] : strlen(argv[i]);
        memcpy(p, argv[i], n);
        call->argv[i] = p;
        call->lens[i] = n;
        p += n + 1; /* calloc'd: the NUL is there */
    }
    return call;
}

/* The master serving key, or any master with a ready link for key == NULL. */
static int cl_route(const bus_cluster_t *cl, const char *key, size_t len)
{
    if (!cl->have_map)
        return -1;
    if (key != NULL)
        return cl->owner[redis_slot(key, len)];
    for (int i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->in_map && redis_link_ready(cl->nodes[i]->cmd))
            return i;
    return -1;
}

int bus_cluster_publish(bus_t *bus, const char *channel, const char *payload, size_t len)
{
    bus_cluster_t *cl = bus->cl;
    const char *argv[] = {"SPUBLISH", channel, payload};
    size_t lens[] = {8, strlen(channel), len};
    int node = cl_route(cl, channel, lens[1]);
    cl_call_t *call;

    if (node < 0 || !redis_link_ready(cl->nodes[node]->cmd) ||
        (call = cl_call_new(cl, 3, argv, lens)) == NULL)
        return bus_publish_fallback(bus, channel, payload, len);
    if (cl_call_send(call, node, 0) != 0) {
        free(call);
        return bus_publish_fallback(bus, channel, payload, len);
    }
    cl_pub_link(cl, call);
    return 0;
}

int bus_cluster_command(bus_t *bus, int key, int argc, const char **argv, const size_t *lens,
                        bus_reply_cb cb, void *arg)
{
    bus_cluster_t *cl = bus->cl;
    int node;
    cl_call_t *call;

    if (key >= 0)
        node = cl_route(cl, argv[key], lens != NULL ? lens[key] : strlen(argv[key]));
    else
        node = cl_route(cl, NULL, 0);
    if (node < 0 || (call = cl_call_new(cl, argc, argv, lens)) == NULL)
        return -1;
    call->cb = cb;
    call->arg = arg;
    if (cl_call_send(call, node, 0) != 0) {
        free(call);
        return -1;
    }
    return 0;
}

/* ---- channels from bus.c ---- */

void bus_cluster_subscribe(bus_t *bus, bus_chan_t *c)
{
    if (bus->cl->have_map)
        cl_place(bus->cl, c);
}

void bus_cluster_unsubscribe(bus_t *bus, bus_chan_t *c)
{
    cl_chan_detach(bus->cl, c);
}

/* ---- life ---- */

int bus_cluster_start(bus_t *bus)
{
    bus_cluster_t *cl = calloc(1, sizeof(*cl));

    if (cl == NULL)
        return -1;
    cl->bus = bus;
    for (int s = 0; s < REDIS_SLOTS; s++)
        cl->owner[s] = -1;
    uv_timer_init(bus->loop, &cl->refresh_timer);
    uv_timer_init(bus->loop, &cl->period_timer);
    uv_timer_init(bus->loop, &cl->late_timer);
    cl->late_timer.data = cl;
    cl->refresh_timer.data = cl;
    cl->period_timer.data = cl;
    bus->cl = cl;
    uv_timer_start(&cl->period_timer, cl_on_period, CL_REFRESH_MS, CL_REFRESH_MS);
    uv_timer_start(&cl->late_timer, cl_on_late, CL_LATE_TICK_MS, CL_LATE_TICK_MS);
    cl_refresh(cl);
    return 0;
}

static void cl_on_close(uv_handle_t *handle)
{
    bus_cluster_t *cl = handle->data;

    if (--cl->open_handles > 0)
        return;
    for (int i = 0; i < cl->nnodes; i++)
        free(cl->nodes[i]);
    free(cl);
}

void bus_cluster_close(bus_t *bus)
{
    bus_cluster_t *cl = bus->cl;

    if (cl == NULL)
        return;
    resolve_cancel(cl->resolving);
    cl->resolving = NULL;
    redis_link_free(cl->probe);
    cl->probe = NULL;
    for (int i = 0; i < cl->nnodes; i++) {
        redis_link_free(cl->nodes[i]->sub);
        cl->nodes[i]->sub = NULL;
        redis_link_free(cl->nodes[i]->cmd);
        cl->nodes[i]->cmd = NULL;
    }
    cl->open_handles = 3;
    uv_close((uv_handle_t *)&cl->refresh_timer, cl_on_close);
    uv_close((uv_handle_t *)&cl->period_timer, cl_on_close);
    uv_close((uv_handle_t *)&cl->late_timer, cl_on_close);
}
