/* fanout: channel -> local sessions (see fanout.h). */
#include "fanout.h"

#include <stdlib.h>
#include <string.h>

#include "dict.h"

typedef struct member member_t; /* struct member, as session.h names it */
typedef struct channel {
    char *name;
    member_t *head;
    size_t count;
} channel_t;

/* One session in one channel: on the channel's list and on the session's. */
struct member {
    session_t *session;
    channel_t *channel;
    member_t *prev, *next; /* channel list */
    member_t *s_next;      /* the session's memberships */
};

struct fanout {
    bus_t *bus;
    dict_t *channels;
};

fanout_t *fanout_new(bus_t *bus)
{
    fanout_t *f = calloc(1, sizeof *f);
    if (!f || !(f->channels = dict_new())) {
        free(f);
        return NULL;
    }
    f->bus = bus;
    return f;
}

void fanout_detach_bus(fanout_t *f)
{
    f->bus = NULL;
}

void fanout_free(fanout_t *f)
{
    if (f)
        dict_free(f->channels);
    free(f);
}

static member_t *find_member(const session_t *s, const char *channel)
{
    for (member_t *m = *session_members((session_t *)s); m; m = m->s_next)
        if (strcmp(m->channel->name, channel) == 0)
            return m;
    return NULL;
}

size_t fanout_size(const fanout_t *f, const char *channel)
{
    channel_t *ch = dict_get(f->channels, channel);
    return ch ? ch->count : 0;
}

size_t fanout_count_prefix(const session_t *s, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);
    for (member_t *m = *session_members((session_t *)s); m; m = m->s_next)
        n += strncmp(m->channel->name, prefix, len) == 0;
    return n;
}

int fanout_is_member(const fanout_t *f, const session_t *s, const char *channel)
{
    (void)f;
    return find_member(s, channel) != NULL;
}

int fanout_join(fanout_t *f, session_t *s, const char *channel)
{
    if (find_member(s, channel))
        return 0;
    channel_t *ch = dict_get(f->channels, channel);
    if (!ch) {
        if (!(ch = calloc(1, sizeof *ch)) || !(ch->name = strdup(channel)) ||
            dict_set(f->channels, channel, ch) != 0) {
            if (ch)
                free(ch->name);
            free(ch);
            return -1;
        }
        if (f->bus)
            bus_subscribe(f->bus, channel);
    }
    member_t *m = calloc(1, sizeof *m);
    if (!m)
        return -1;
    m->session = s;
    m->channel = ch;
    m->next = ch->head;
    if (ch->head)
        ch->head->prev = m;
    ch->head = m;
    ch->count++;
    member_t **list = session_members(s);
    m->s_next = *list;
    *list = m;
    return 0;
}

/* Unlinks m from its channel; the last member takes the channel with it. */
static void unlink_member(fanout_t *f, member_t *m)
{
    channel_t *ch = m->channel;
    if (m->prev)
        m->prev->next = m->next;
    else
        ch->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    if (--ch->count == 0) {
        dict_delete(f->channels, ch->name);
        if (f->bus)
            bus_unsubscribe(f->bus, ch->name);
        free(ch->name);
        free(ch);
    }
    free(m);
}

void fanout_leave(fanout_t *f, session_t *s, const char *channel)
{
    for (member_t **p = session_members(s); *p; p = &(*p)->s_next) {
        if (strcmp((*p)->channel->name, channel) == 0) {
            member_t *m = *p;
            *p = m->s_next;
            unlink_member(f, m);
            return;
        }
    }
}

void fanout_leave_all(fanout_t *f, session_t *s)
{
    member_t **list = session_members(s);
    while (*list) {
        member_t *m = *list;
        *list = m->s_next;
        unlink_member(f, m);
    }
}

size_t fanout_deliver(fanout_t *f, const char *channel, msgbuf_t *b)
{
    channel_t *ch = dict_get(f->channels, channel);
    size_t n = 0;
    for (member_t *m = ch ? ch->head : NULL, *next; m; m = next, n++) {
        next = m->next; /* a send may close (4009) but never frees on this stack */
        session_send(m->session, b);
    }
    return n;
}

void fanout_each(fanout_t *f, const char *channel, void (*fn)(session_t *s, void *arg), void *arg)
{
    channel_t *ch = dict_get(f->channels, channel);
    for (member_t *m = ch ? ch->head : NULL, *next; m; m = next) {
        next = m->next;
        fn(m->session, arg);
    }
}

typedef struct each_channel_ctx {
    void (*fn)(const char *channel, void *arg);
    void *arg;
} each_channel_ctx_t;

static void call_channel(const char *key, void *value, void *arg)
{
    (void)value;
    each_channel_ctx_t *ctx = arg;
    ctx->fn(key, ctx->arg);
}

void fanout_each_channel(fanout_t *f, void (*fn)(const char *channel, void *arg), void *arg)
{
    each_channel_ctx_t ctx = {fn, arg};
    dict_each(f->channels, call_channel, &ctx);
}
