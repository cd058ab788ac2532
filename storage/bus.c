/*
 * bus: Redis pub/sub between hub processes. See bus.h for the contract.
 *
 * A redis-cluster:// URL hands the links to bus_cluster.c (bus_cluster.h):
 * this file then keeps the URL, the channel table (interest counts) and the
 * public entry points, which call into it. Everything below is single Redis.
 *
 * Two links (redis_link.h, the one Redis client both modes share): `sub`, a
 * push link, carries SUBSCRIBE/UNSUBSCRIBE and the messages; `cmd` carries
 * PUBLISH and bus_command(). Each link checks its own health (a PING every
 * ping interval; three unanswered is a loss) and is ready after its first
 * PONG. The sub link's first command, pipelined behind that PING, is one
 * SUBSCRIBE naming every channel with interest; it is ready for the bus
 * once every one of them is confirmed. The bus is up when both are ready.
 *
 * The two links live and die together: a Redis that stopped answering one
 * (frozen, or behind a dead network path that sends no RST) has stopped
 * feeding the other as well, with no error ever showing on that socket. So
 * any loss of either link -- a connect error, a disconnect, a deadline
 * missed, a PING unanswered -- frees both and builds two new ones from one
 * backoff timer (bus_next_backoff, shared with the cluster mode).
 *
 * A link may be freed from inside its own callbacks (redis_link.h), so a
 * loss is handled where it is reported. A failure found inside a call of
 * the user's (bus_subscribe) is deferred to link_timer instead, so that
 * on_link(0) never runs inside one.
 *
 * hiredis would resolve a host name with a blocking getaddrinfo(), and
 * redis_link takes addresses only: a name in the URL is resolved here first
 * (storage/resolve.c, off the loop), again before every reconnect so that a
 * failover that moves it is followed. The resolution runs under the connect
 * deadline; a failure is a failed attempt like any other.
 */
#include "bus.h"

#include "bus_cluster.h"
#include "bus_priv.h"
#include "redis_link.h"
#include "resolve.h"

#include <ctype.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void bus_lost(bus_t *bus);

/* ---- channel table ---- */

static uint32_t bus_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

bus_chan_t *bus_chan_find(const bus_t *bus, const char *name, size_t len)
{
    uint32_t h = bus_hash(name, len);

    for (bus_chan_t *c = bus->buckets[h & (bus->nbuckets - 1)]; c != NULL; c = c->next)
        if (c->hash == h && c->len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

static void bus_chan_grow(bus_t *bus)
{
    size_t n = bus->nbuckets * 2;
    bus_chan_t **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < bus->nbuckets; i++) {
        bus_chan_t *c = bus->buckets[i], *next;
        for (; c != NULL; c = next) {
            next = c->next;
            c->next = b[c->hash & (n - 1)];
            b[c->hash & (n - 1)] = c;
        }
    }
    free(bus->buckets);
    bus->buckets = b;
    bus->nbuckets = n;
}

static bus_chan_t *bus_chan_add(bus_t *bus, const char *name, size_t len)
{
    bus_chan_t *c;

    if (bus->nchans >= bus->nbuckets)
        bus_chan_grow(bus);
    if ((c = calloc(1, sizeof(*c) + len + 1)) == NULL)
        return NULL;
    c->hash = bus_hash(name, len);
    c->node = -1;
    c->len = len;
    memcpy(c->name, name, len);
    c->next = bus->buckets[c->hash & (bus->nbuckets - 1)];
    bus->buckets[c->hash & (bus->nbuckets - 1)] = c;
    bus->nchans++;
    return c;
}

static void bus_chan_remove(bus_t *bus, bus_chan_t *chan)
{
    bus_chan_t **p = &bus->buckets[chan->hash & (bus->nbuckets - 1)];

    while (*p != chan)
        p = &(*p)->next;
    *p = chan->next;
    bus->nchans--;
    free(chan);
}

/* ---- links ---- */

static void bus_on_link_timer(uv_timer_t *timer)
{
    bus_lost(timer->data);
}

/* A failure found inside a call of the user's: the loss is handled on the next tick. */
static void bus_fail_soon(bus_t *bus)
{
    if (!bus->closing)
        uv_timer_start(&bus->link_timer, bus_on_link_timer, 0, 0);
}

/* Frees the link (a command waiting there gets its NULL reply now). */
static void bus_link_close(bus_link_t *link)
{
    bus_t *bus = link->bus;
    redis_link_t *rl = link->rl;

    link->rl = NULL; /* first: a reply callback may come back into the bus */
    link->ready = 0;
    link->resub_pending = 0;
    if (link == &bus->sub)
        for (size_t i = 0; i < bus->nbuckets; i++)
            for (bus_chan_t *c = bus->buckets[i]; c != NULL; c = c->next)
                c->subscribed = 0;
    redis_link_free(rl);
}

void bus_went_up(bus_t *bus)
{
    if (bus->up || bus->closing)
        return;
    bus->up = 1;
    bus->backoff_ms = bus->backoff_min_ms;
    if (bus->ever_up)
        bus->reconnects++;
    bus->ever_up = 1;
    if (bus->on_link != NULL)
        bus->on_link(bus->arg, 1);
}

void bus_went_down(bus_t *bus)
{
    int was_up = bus->up;

    bus->up = 0;
    if (was_up && !bus->closing && bus->on_link != NULL)
        bus->on_link(bus->arg, 0);
}

static void bus_link_ready(bus_link_t *link)
{
    bus_t *bus = link->bus;

    link->ready = 1;
    if (bus->sub.ready && bus->cmd.ready) {
        uv_timer_stop(&bus->link_timer);
        bus_went_up(bus);
    }
}

static void bus_on_link_state(void *arg, redis_link_t *rl, int up)
{
    bus_link_t *link = arg;

    (void)rl;
    if (!up)
        bus_lost(link->bus);
    else if (link->resub_pending == 0)
        bus_link_ready(link);
}

/* Every push on the sub link: subscribe/unsubscribe confirmations, messages, errors. */
static void bus_on_push(void *arg, redisReply *reply)
{
    bus_link_t *link = arg;
    bus_t *bus = link->bus;
    redisReply *kind, *chan, *payload;

    if (reply->type == REDIS_REPLY_ERROR) {
        /* A refused SUBSCRIBE (an ACL, say): which channels hold is unknown now. */
        bus_log(bus, 1, "Redis refused a subscription: %s", reply->str);
        bus_lost(bus);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    kind = reply->element[0];
    chan = reply->element[1];
    payload = reply->element[2];
    /* bus_deliver*: only while there is interest (an UNSUBSCRIBE may be in flight). */
    if (strcmp(kind->str, "message") == 0) {
        if (payload->type == REDIS_REPLY_STRING)
            bus_deliver(bus, chan->str, payload->str, payload->len);
    } else if (strcmp(kind->str, "subscribe") == 0) {
        /* The resubscribe went out first, so its confirmations come first. */
        if (link->resub_pending > 0) {
            if (--link->resub_pending == 0)
                bus_link_ready(link);
        } else {
            bus_deliver_gap(bus, chan->str); /* a channel new on this link: catch it up */
        }
    }
}

static int bus_send_chan(bus_t *bus, const char *verb, bus_chan_t *c)
{
    const char *argv[] = {verb, c->name};
    size_t lens[] = {strlen(verb), c->len};

    return redis_link_command(bus->sub.rl, 2, argv, lens, NULL, NULL);
}

/*
 * The first command on a new sub link, behind its PING: one SUBSCRIBE
 * naming every channel with interest (none: the PONG alone makes it ready).
 */
static int bus_resubscribe(bus_t *bus)
{
    const char **argv;
    size_t *lens, n = 1;
    int rc;

    if (bus->nchans == 0)
        return 0;
    argv = malloc((bus->nchans + 1) * sizeof(*argv));
    lens = malloc((bus->nchans + 1) * sizeof(*lens));
    if (argv == NULL || lens == NULL)
        goto fail;
    argv[0] = "SUBSCRIBE";
    lens[0] = strlen(argv[0]);
    for (size_t i = 0; i < bus->nbuckets; i++)
        for (bus_chan_t *c = bus->buckets[i]; c != NULL; c = c->next) {
            argv[n] = c->name;
            lens[n++] = c->len;
        }
    rc = redis_link_command(bus->sub.rl, (int)n, argv, lens, NULL, NULL);
    free(argv);
    free(lens);
    if (rc != 0)
        return -1;
    for (size_t i = 0; i < bus->nbuckets; i++)
        for (bus_chan_t *c = bus->buckets[i]; c != NULL; c = c->next)
            c->subscribed = 1;
    bus->sub.resub_pending = n - 1;
    return 0;
fail:
    free(argv);
    free(lens);
    return -1;
}

redis_link_t *bus_redis_link(bus_t *bus, const char *host, int port, const char *path,
                             redis_link_state_cb on_state, redis_link_reply_cb on_push, void *arg)
{
    redis_link_config_t lc = {.host = host,
                              .port = port,
                              .path = path,
                              .timeout_ms = bus->connect_timeout_ms,
                              .ping_ms = bus->ping_interval_ms,
                              .on_state = on_state,
                              .on_push = on_push,
                              .arg = arg};

    return redis_link_new(bus->loop, &lc);
}

static int bus_link_open(bus_link_t *link, int push)
{
    bus_t *bus = link->bus;

    link->rl = bus_redis_link(bus, bus->host, bus->port, bus->is_unix ? bus->path : NULL,
                              bus_on_link_state, push ? bus_on_push : NULL, link);
    return link->rl != NULL ? 0 : -1;
}

void bus_log(bus_t *bus, int warn, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (bus->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    bus->log(bus->log_arg, warn, line);
}

/* Both links, under one deadline that also covers the resubscribe's confirmations. */
static void bus_open_links(bus_t *bus)
{
    uv_timer_start(&bus->link_timer, bus_on_link_timer, (uint64_t)bus->connect_timeout_ms, 0);
    if (bus_link_open(&bus->sub, 1) != 0 || bus_resubscribe(bus) != 0 ||
        bus_link_open(&bus->cmd, 0) != 0)
        bus_lost(bus);
}

/* The name resolved: connect to one of its addresses (the next one after a failure). */
static void bus_on_resolved(void *arg, int status, const resolve_result_t *res)
{
    bus_t *bus = arg;
    char addrs[sizeof(bus->addrs)];

    bus->resolving = NULL;
    if (status < 0) {
        if (!bus->resolve_failing)
            bus_log(bus, 1, "cannot resolve Redis host %s (retrying): %s", bus->name,
                    uv_strerror(status));
        bus->resolve_failing = 1;
        bus_lost(bus);
        return;
    }
    if (resolve_join(res, addrs, sizeof(addrs)) == 0 && strcmp(addrs, bus->addrs) != 0) {
        bus_log(bus, 0, "Redis host %s resolved to %s", bus->name, addrs);
        memcpy(bus->addrs, addrs, sizeof(addrs));
    }
    bus->resolve_failing = 0;
    memcpy(bus->host, res->addr[bus->pick % (unsigned)res->n], sizeof(bus->host));
    bus_open_links(bus);
}

static void bus_connect(bus_t *bus)
{
    int err = 0;

    if (bus->name[0] == '\0') {
        bus_open_links(bus);
        return;
    }
    /* The connect deadline covers the lookup; bus_lost cancels it. */
    uv_timer_start(&bus->link_timer, bus_on_link_timer, (uint64_t)bus->connect_timeout_ms, 0);
    bus->resolving = resolve_start(bus->loop, bus->name, bus_on_resolved, bus, &err);
    if (bus->resolving == NULL) {
        bus_log(bus, 1, "cannot resolve Redis host %s: %s", bus->name, uv_strerror(err));
        bus_lost(bus);
    }
}

static void bus_on_retry(uv_timer_t *timer)
{
    bus_connect(timer->data);
}

/* Drops both links and schedules the next attempt; tells the user if the link was up. */
static void bus_lost(bus_t *bus)
{
    int was_up = bus->up;

    resolve_cancel(bus->resolving);
    bus->resolving = NULL;
    if (!was_up)
        bus->pick++; /* this address failed: the next attempt tries the name's next one */
    uv_timer_stop(&bus->link_timer);
    bus_link_close(&bus->sub);
    bus_link_close(&bus->cmd); /* a reply callback with NULL may bus_close() */
    if (bus->closing)
        return;
    uv_timer_start(&bus->retry_timer, bus_on_retry, bus_next_backoff(bus), 0);
    bus_went_down(bus);
}

uint64_t bus_next_backoff(bus_t *bus)
{
    /* Jittered (half to all of the backoff): hubs do not reconnect in step. */
    uint64_t delay = (uint64_t)(bus->backoff_ms / 2 + rand() % (bus->backoff_ms / 2 + 1));

    if (bus->backoff_ms > bus->backoff_max_ms / 2)
        bus->backoff_ms = bus->backoff_max_ms;
    else
        bus->backoff_ms *= 2;
    return delay;
}

/* ---- URL ---- */

static int bus_parse_port(const char *s, size_t n, int *port)
{
    long v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

/* A DNS name as RFC 1123 spells it: letters, digits, '-' and '.', at most 253. */
static int bus_host_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.')
            return 0;
    return 1;
}

/*
 * An [IPv6] or IPv4 literal is connected to as is (into host); a name is
 * resolved first (into name, host left empty). Both buffers are as big as
 * struct bus's.
 */
static int bus_set_host(char *hostbuf, char *namebuf, const char *host, size_t n, int bracketed,
                        const char **err)
{
    unsigned char addr[sizeof(struct in6_addr)];

    if (n < INET6_ADDRSTRLEN) {
        memcpy(hostbuf, host, n);
        hostbuf[n] = '\0';
        if (inet_pton(bracketed ? AF_INET6 : AF_INET, hostbuf, addr) == 1)
            return 0;
    }
    if (bracketed) {
        *err = "bus: bad IPv6 address in Redis URL";
        return -1;
    }
    if (!bus_host_name_ok(host, n)) {
        *err = "bus: bad host in Redis URL";
        return -1;
    }
    memcpy(namebuf, host, n);
    namebuf[n] = '\0';
    hostbuf[0] = '\0';
    return 0;
}

/*
 * HOST[:PORT] at *pp, HOST an IPv4 or [IPv6] literal or a name; stops at
 * the first character of stop after it (where *pp is left).
 */
static int bus_parse_addr(const char **pp, const char *stop, char *hostbuf, char *namebuf,
                          int *port, const char **err)
{
    const char *p = *pp, *end, *host;
    size_t hostlen;

    if (*p == '[') {
        host = p + 1;
        if ((end = strchr(host, ']')) == NULL) {
            *err = "bus: unterminated [IPv6] address in Redis URL";
            return -1;
        }
        hostlen = (size_t)(end - host);
        p = end + 1;
    } else {
        host = p;
        hostlen = strcspn(p, ":/,");
        p += hostlen;
    }
    if (hostlen == 0 || hostlen >= sizeof(((bus_t *)0)->name)) {
        *err = "bus: missing or bad host in Redis URL";
        return -1;
    }
    if (bus_set_host(hostbuf, namebuf, host, hostlen, host[-1] == '[', err) != 0)
        return -1;
    *port = 6379;
    if (*p == ':') {
        size_t n = strcspn(++p, stop);
        if (bus_parse_port(p, n, port) != 0) {
            *err = "bus: bad port in Redis URL";
            return -1;
        }
        p += n;
    }
    *pp = p;
    return 0;
}

/* redis-cluster://HOST[:PORT],HOST[:PORT],...: the seeds the topology is read from. */
static int bus_parse_cluster_url(bus_t *bus, const char *p, const char **err)
{
    for (;;) {
        bus_seed_t *seed = &bus->seeds[bus->nseeds];
        if (bus->nseeds == BUS_MAX_SEEDS) {
            *err = "bus: too many seed nodes in Redis Cluster URL (at most 16)";
            return -1;
        }
        if (bus_parse_addr(&p, "/,", seed->host, seed->name, &seed->port, err) != 0)
            return -1;
        bus->nseeds++;
        if (*p == '\0')
            return 0;
        if (*p != ',' || p[1] == '\0') {
            *err = "bus: Redis Cluster URL must be redis-cluster://HOST:PORT[,HOST:PORT...]";
            return -1;
        }
        p++;
    }
}

/*
 * redis://HOST[:PORT][/DB] with an IPv4 or [IPv6] literal or a host name
 * (resolved off the loop before every connect); unix:/path or unix:///path;
 * redis-cluster://HOST[:PORT],... for a Redis Cluster.
 */
static int bus_parse_url(bus_t *bus, const char *url, const char **err)
{
    const char *p;

    if (strncmp(url, "unix:", 5) == 0) {
        p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        if (p[0] != '/') {
            *err = "bus: unix socket path must be absolute (unix:/path)";
            return -1;
        }
        if (strlen(p) >= sizeof(bus->path)) {
            *err = "bus: unix socket path too long";
            return -1;
        }
        bus->is_unix = 1;
        strcpy(bus->path, p);
        return 0;
    }
    if (strncmp(url, "redis-cluster://", 16) == 0) {
        if (strpbrk(url + 16, "@?#/") != NULL) {
            *err = "bus: credentials, options and databases in the Redis URL are not supported";
            return -1;
        }
        return bus_parse_cluster_url(bus, url + 16, err);
    }
    if (strncmp(url, "redis://", 8) != 0) {
        *err = "bus: URL must be redis://HOST:PORT[/db], redis-cluster://HOST:PORT,... or "
               "unix:/path";
        return -1;
    }
    p = url + 8;
    if (strpbrk(p, "@?#") != NULL) {
        *err = "bus: credentials and options in the Redis URL are not supported";
        return -1;
    }
    if (bus_parse_addr(&p, "/", bus->host, bus->name, &bus->port, err) != 0)
        return -1;
    if (*p == '/') {
        /* Pub/sub ignores the database number: checked, then not used. */
        p++;
        if (strspn(p, "0123456789") != strlen(p)) {
            *err = "bus: bad database number in Redis URL";
            return -1;
        }
    } else if (*p != '\0') {
        *err = "bus: trailing characters in Redis URL";
        return -1;
    }
    return 0;
}

/* ---- public ---- */

static int bus_default(int v, int def)
{
    return v > 0 ? v : def;
}

static bus_t *bus_create(uv_loop_t *loop, const bus_config_t *cfg, bus_message_cb on_message,
                         bus_link_cb on_link, void *arg, const char **err)
{
    const char *dummy;
    bus_t *bus;

    if (err == NULL)
        err = &dummy;
    if (loop == NULL || cfg == NULL || cfg->url == NULL) {
        *err = "bus: no loop or no URL";
        return NULL;
    }
    if ((bus = calloc(1, sizeof(*bus))) == NULL) {
        *err = "bus: out of memory";
        return NULL;
    }
    if (bus_parse_url(bus, cfg->url, err) != 0)
        goto fail;
    bus->nbuckets = BUS_INITIAL_BUCKETS;
    if ((bus->buckets = calloc(bus->nbuckets, sizeof(*bus->buckets))) == NULL) {
        *err = "bus: out of memory";
        goto fail;
    }
    bus->loop = loop;
    bus->on_message = on_message;
    bus->on_link = on_link;
    bus->arg = arg;
    bus->log = cfg->log;
    bus->log_arg = arg;
    bus->connect_timeout_ms = bus_default(cfg->connect_timeout_ms, BUS_DEFAULT_CONNECT_TIMEOUT_MS);
    bus->backoff_min_ms = bus_default(cfg->backoff_min_ms, BUS_DEFAULT_BACKOFF_MIN_MS);
    bus->backoff_max_ms = bus_default(cfg->backoff_max_ms, BUS_DEFAULT_BACKOFF_MAX_MS);
    if (bus->backoff_max_ms < bus->backoff_min_ms)
        bus->backoff_max_ms = bus->backoff_min_ms;
    bus->ping_interval_ms = bus_default(cfg->ping_interval_ms, BUS_DEFAULT_PING_INTERVAL_MS);
    bus->backoff_ms = bus->backoff_min_ms;
    bus->sub.bus = bus;
    bus->cmd.bus = bus;

    /* uv_timer_init cannot fail on a live loop; from here on, free only via close. */
    uv_timer_init(loop, &bus->link_timer);
    uv_timer_init(loop, &bus->retry_timer);
    bus->link_timer.data = bus;
    bus->retry_timer.data = bus;

    if (bus->nseeds > 0 && bus_cluster_start(bus) != 0) {
        *err = "bus: out of memory";
        bus_close(bus); /* its timers are live: freed through their close callbacks */
        return NULL;
    }
    if (bus->nseeds == 0)
        bus_connect(bus);
    return bus;
fail:
    free(bus->buckets);
    free(bus);
    return NULL;
}

bus_t *bus_new(uv_loop_t *loop, const bus_config_t *cfg, bus_message_cb on_message,
               bus_link_cb on_link, void *arg, char *err, size_t errlen)
{
    const char *why = NULL;
    bus_t *bus = bus_create(loop, cfg, on_message, on_link, arg, &why);
    if (!bus && err && errlen)
        snprintf(err, errlen, "%s", why ? why : "bus: failed");
    return bus;
}

void bus_set_subscribed_cb(bus_t *bus, bus_subscribed_cb cb)
{
    bus->on_subscribed = cb;
}

int bus_subscribe(bus_t *bus, const char *channel)
{
    size_t len = strlen(channel);
    bus_chan_t *c;

    if (bus->closing)
        return -1;
    if ((c = bus_chan_find(bus, channel, len)) == NULL &&
        (c = bus_chan_add(bus, channel, len)) == NULL)
        return -1;
    if (c->interest++ > 0)
        return 0;
    if (bus->cl != NULL) {
        bus_cluster_subscribe(bus, c);
        return 0;
    }
    /* No sub link yet: the resubscribe of the next one will carry this channel. */
    if (bus->sub.rl != NULL) {
        if (bus_send_chan(bus, "SUBSCRIBE", c) == 0)
            c->subscribed = 1;
        else
            bus_fail_soon(bus);
    }
    return 0;
}

int bus_unsubscribe(bus_t *bus, const char *channel)
{
    bus_chan_t *c = bus_chan_find(bus, channel, strlen(channel));

    if (c == NULL || bus->closing)
        return 0;
    if (--c->interest > 0)
        return 0;
    if (bus->cl != NULL)
        bus_cluster_unsubscribe(bus, c);
    else if (c->subscribed && bus->sub.rl != NULL && bus_send_chan(bus, "UNSUBSCRIBE", c) != 0)
        bus_fail_soon(bus);
    bus_chan_remove(bus, c);
    return 0;
}

/* Redis cannot take it: the other processes hear of it through the fallback. */
int bus_publish_fallback(bus_t *bus, const char *channel, const char *payload, size_t len)
{
    if (bus->fallback != NULL && !bus->closing)
        bus->fallback(bus->fallback_arg, channel, payload, len, false);
    return -1;
}

static int bus_publish_redis(bus_t *bus, const char *channel, const char *payload, size_t len)
{
    const char *argv[] = {"PUBLISH", channel, payload != NULL ? payload : ""};
    size_t lens[] = {7, strlen(channel), len};

    if (bus->cl != NULL && !bus->closing)
        return bus_cluster_publish(bus, channel, argv[2], len);
    if (bus->closing || !bus->cmd.ready)
        return bus_publish_fallback(bus, channel, argv[2], len);
    /* No reply callback: a lost PUBLISH shows up as a lost link. */
    if (redis_link_command(bus->cmd.rl, 3, argv, lens, NULL, NULL) != 0)
        return bus_publish_fallback(bus, channel, argv[2], len);
    return 0;
}

int bus_publish(bus_t *bus, const char *channel, const char *payload, size_t len)
{
    int rc = bus_publish_redis(bus, channel, payload, len);

    if (rc == 0 && bus->fallback_copies && bus->fallback != NULL && !bus->closing)
        bus->fallback(bus->fallback_arg, channel, payload != NULL ? payload : "", len, true);
    return rc;
}

void bus_set_fallback(bus_t *bus, bus_fallback_cb cb, void *arg)
{
    bus->fallback = cb;
    bus->fallback_arg = arg;
}

void bus_set_fallback_copies(bus_t *bus, bool on)
{
    bus->fallback_copies = on;
}

static bus_chan_t *bus_interest(bus_t *bus, const char *channel)
{
    bus_chan_t *c;

    if (bus->closing || channel == NULL)
        return NULL;
    c = bus_chan_find(bus, channel, strlen(channel));
    return c != NULL && c->interest > 0 ? c : NULL;
}

void bus_deliver(bus_t *bus, const char *channel, const char *payload, size_t len)
{
    if (bus_interest(bus, channel) != NULL && bus->on_message != NULL)
        bus->on_message(bus->arg, channel, payload, len);
}

void bus_deliver_gap(bus_t *bus, const char *channel)
{
    bus_chan_t *c = bus_interest(bus, channel);

    if (c != NULL && bus->on_subscribed != NULL)
        bus->on_subscribed(bus->arg, c->name);
}

int bus_command(bus_t *bus, int key, int argc, const char **argv, const size_t *lens,
                bus_reply_cb cb, void *arg)
{
    if (bus->closing || cb == NULL || argc < 1 || key >= argc)
        return -1;
    if (bus->cl != NULL)
        return bus_cluster_command(bus, key, argc, argv, lens, cb, arg);
    if (!bus->cmd.ready)
        return -1;
    return redis_link_command(bus->cmd.rl, argc, argv, lens, cb, arg);
}

int bus_is_up(const bus_t *bus)
{
    return bus->up;
}

unsigned long bus_reconnects(const bus_t *bus)
{
    return bus->reconnects;
}

int bus_ever_up(const bus_t *bus)
{
    return bus->ever_up;
}

static void bus_on_handle_close(uv_handle_t *handle)
{
    bus_t *bus = handle->data;

    if (--bus->open_handles > 0)
        return;
    for (size_t i = 0; i < bus->nbuckets; i++) {
        bus_chan_t *c = bus->buckets[i], *next;
        for (; c != NULL; c = next) {
            next = c->next;
            free(c);
        }
    }
    free(bus->buckets);
    free(bus);
}

void bus_close(bus_t *bus)
{
    if (bus == NULL || bus->closing)
        return;
    bus->closing = 1;
    bus->up = 0;
    bus_cluster_close(bus); /* commands waiting there get their NULL reply now */
    bus->cl = NULL;
    resolve_cancel(bus->resolving);
    bus->resolving = NULL;
    bus->open_handles = 2;
    uv_close((uv_handle_t *)&bus->link_timer, bus_on_handle_close);
    uv_close((uv_handle_t *)&bus->retry_timer, bus_on_handle_close);
    bus_link_close(&bus->sub);
    bus_link_close(&bus->cmd); /* commands waiting there get their NULL reply now */
}
