/*
 * deploy: every hub process's gauges on Redis, read back as one view of the
 * deployment (see deploy.h).
 */
#include "deploy.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "metrics.h"

#define DEPLOY_EXPIRE_MS "10000" /* the hash when nobody writes any more */

struct deploy {
    char id[128];
    int64_t started_ms;
    unsigned long long last_messages; /* in + out at the previous tick */
    int64_t last_ms;
    json_t *own;    /* this process's latest gauges */
    json_t *others; /* the other live processes' gauges, from the last read */
    bus_t *bus;     /* of the last tick, for the HDELs of a reply it answered */
    bool inflight;  /* an HGETALL is out: the reply owns a reference to us */
    bool closed;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

deploy_t *deploy_new(void)
{
    deploy_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    char host[64] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0)
        strcpy(host, "localhost");
    snprintf(d->id, sizeof d->id, "%s:%ld", host, (long)getpid());
    d->started_ms = wall_ms();
    d->others = json_array();
    return d;
}

/* The slowest delivery's p99 over the event kinds: commit -> ack, in ms. */
static double worst_p99(const json_t *delivery)
{
    const char *kind;
    json_t *h;
    double worst = 0;
    json_object_foreach ((json_t *)delivery, kind, h) {
        double p = json_number_value(json_object_get(h, "p99_ms"));
        if (p > worst)
            worst = p;
    }
    return worst;
}

/* This process's gauges now (new reference). */
static json_t *own_gauges(deploy_t *d, const json_t *stats, int64_t now)
{
    unsigned long long msgs =
        (unsigned long long)json_integer_value(json_object_get(stats, "messages_in")) +
        (unsigned long long)json_integer_value(json_object_get(stats, "messages_out"));
    double rate = 0;
    if (d->last_ms && now > d->last_ms && msgs >= d->last_messages)
        rate = (double)(msgs - d->last_messages) * 1000.0 / (double)(now - d->last_ms);
    d->last_messages = msgs;
    d->last_ms = now;
    return json_pack("{s:s, s:i, s:i, s:I, s:I, s:O, s:f, s:f}", "id", d->id, "pid", (int)getpid(),
                     "worker", metrics_worker_index(), "started_at_ms", (json_int_t)d->started_ms,
                     "at_ms", (json_int_t)now, "connections", json_object_get(stats, "connections"),
                     "messages_per_s", rate, "commit_ack_p99_ms",
                     worst_p99(json_object_get(stats, "delivery")));
}

static void on_written(void *arg, struct redisReply *reply)
{
    (void)arg;
    (void)reply;
}

/* Deletes a field of a process gone for DEPLOY_DROP_MS (fire and forget). */
static void drop_field(bus_t *bus, const char *field, size_t len)
{
    const char *argv[] = {"HDEL", DEPLOY_KEY, field};
    size_t lens[] = {4, sizeof DEPLOY_KEY - 1, len};
    (void)bus_command(bus, 1, 3, argv, lens, on_written, NULL);
}

/* HGETALL's reply: the other processes' fresh gauges replace the last read. */
static void on_read(void *arg, struct redisReply *reply)
{
    deploy_t *d = arg;
    d->inflight = false;
    if (d->closed) {
        deploy_close(d);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    json_t *others = json_array();
    int64_t now = wall_ms();
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *f = reply->element[i], *v = reply->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            !strcmp(f->str, d->id))
            continue;
        json_t *g = json_loadb(v->str, v->len, 0, NULL);
        int64_t at = (int64_t)json_integer_value(json_object_get(g, "at_ms"));
        if (g && json_is_object(g) && at + DEPLOY_STALE_MS >= now)
            json_array_append(others, g);
        else if (at + DEPLOY_DROP_MS < now)
            drop_field(d->bus, f->str, f->len);
        json_decref(g);
    }
    json_decref(d->others);
    d->others = others;
}

void deploy_tick(deploy_t *d, bus_t *bus, const json_t *stats)
{
    int64_t now = wall_ms();
    json_t *own = own_gauges(d, stats, now);
    if (!own)
        return;
    json_decref(d->own);
    d->own = own;
    if (!bus || !bus_is_up(bus) || d->inflight) {
        if (!bus || !bus_is_up(bus)) {
            json_decref(d->others); /* Redis away: this process alone */
            d->others = json_array();
        }
        return;
    }
    char *text = json_dumps(own, JSON_COMPACT);
    if (!text)
        return;
    const char *set[] = {"HSET", DEPLOY_KEY, d->id, text};
    size_t set_lens[] = {4, sizeof DEPLOY_KEY - 1, strlen(d->id), strlen(text)};
    const char *expire[] = {"PEXPIRE", DEPLOY_KEY, DEPLOY_EXPIRE_MS};
    size_t expire_lens[] = {7, sizeof DEPLOY_KEY - 1, sizeof DEPLOY_EXPIRE_MS - 1};
    const char *get[] = {"HGETALL", DEPLOY_KEY};
    size_t get_lens[] = {7, sizeof DEPLOY_KEY - 1};
    (void)bus_command(bus, 1, 4, set, set_lens, on_written, NULL);
    (void)bus_command(bus, 1, 3, expire, expire_lens, on_written, NULL);
    free(text);
    d->bus = bus;
    if (bus_command(bus, 1, 2, get, get_lens, on_read, d) == 0)
        d->inflight = true;
}

json_t *deploy_json(const deploy_t *d)
{
    json_t *procs = json_array(), *conns = json_object();
    double rate = 0;
    if (d->own)
        json_array_append(procs, d->own);
    size_t i;
    json_t *g;
    json_array_foreach (d->others, i, g)
        json_array_append(procs, g);
    json_array_foreach (procs, i, g) {
        const char *kind;
        json_t *n;
        json_object_foreach (json_object_get(g, "connections"), kind, n) {
            json_int_t sum = json_integer_value(json_object_get(conns, kind));
            json_object_set_new(conns, kind, json_integer(sum + json_integer_value(n)));
        }
        rate += json_number_value(json_object_get(g, "messages_per_s"));
    }
    return json_pack("{s:o, s:{s:I, s:o, s:f}}", "processes", procs, "total", "processes",
                     (json_int_t)json_array_size(procs), "connections", conns, "messages_per_s",
                     rate);
}

long deploy_players_online(const deploy_t *d)
{
    json_t *all = deploy_json(d);
    long n = (long)json_integer_value(
        json_object_get(json_object_get(json_object_get(all, "total"), "connections"), "player"));
    json_decref(all);
    return n;
}

long deploy_processes(const deploy_t *d)
{
    return (long)json_array_size(d->others) + 1;
}

void deploy_close(deploy_t *d)
{
    if (!d)
        return;
    if (d->inflight) {
        d->closed = true; /* freed by on_read, which bus_close() calls at the latest */
        return;
    }
    json_decref(d->own);
    json_decref(d->others);
    free(d);
}
