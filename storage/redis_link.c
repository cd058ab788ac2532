/*
 * redis_link: a RESP connection on our loop, hiredis used only to format
 * commands and read replies. See redis_link.h.
 *
 * A redisContext in non-blocking mode owns the socket and both buffers;
 * redisBufferRead moves bytes in when uv_poll says the socket is readable,
 * and redisGetReplyFromReader hands out whole replies.
 *
 * Writes: a command is appended to the output buffer and a uv_prepare_t is
 * started. libuv runs it after this turn's callbacks and before it waits in
 * epoll, so every command queued in one loop turn leaves in one write(2),
 * with no WRITABLE event waited for. Only what the socket does not take
 * (EAGAIN) makes us watch WRITABLE, until it is gone. So the poll mask stays
 * READABLE from connect to close in the usual case: in libuv each
 * uv_poll_start() costs an EPOLL_CTL_DEL and an EPOLL_CTL_ADD, which a mask
 * toggled around every command (hiredis's async layer) paid per command.
 *
 * The struct's memory is released only in the close callbacks of its three
 * handles, so a user callback may free the link while we are still inside
 * one of its loops: `lost` stops those loops.
 */
#include "redis_link.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

enum { REDIS_LINK_PING_MISSES = 3 };

typedef struct redis_link_call {
    struct redis_link_call *next;
    redis_link_reply_cb cb;
    void *arg;
    int own_ping; /* our health check: the reply is ours */
} redis_link_call_t;

struct redis_link {
    uv_loop_t *loop;
    redisContext *c;
    uv_poll_t poll;
    uv_timer_t timer;   /* connect deadline, then the ping interval */
    uv_prepare_t flush; /* active while queued bytes wait for the end of the loop turn */
    int events;
    int connected; /* the TCP connect finished */
    int ready;
    int lost;   /* lost or freed: nothing more is read, written or called back */
    int broken; /* a command could not be queued: lost at the next tick */
    int freed;  /* redis_link_free() ran */
    int open_handles;
    int ping_ms;
    int timeout_ms;
    int ping_outstanding;
    uint64_t ping_sent;
    redis_link_state_cb on_state;
    redis_link_reply_cb on_push;
    void *arg;
    redis_link_call_t *head, *tail;
};

static void redis_link_on_poll(uv_poll_t *handle, int status, int events);
static void redis_link_on_flush(uv_prepare_t *handle);

/* READABLE; WRITABLE too while connecting or while the socket holds our bytes back. */
static void redis_link_watch(redis_link_t *link)
{
    int events = UV_READABLE;

    if (link->lost)
        return;
    if (!link->connected || sdslen(link->c->obuf) > 0)
        events |= UV_WRITABLE;
    if (events != link->events) {
        link->events = events;
        uv_poll_start(&link->poll, events, redis_link_on_poll);
    }
}

/* Bytes were queued: they leave at the end of this loop turn, or on the WRITABLE awaited. */
static void redis_link_schedule(redis_link_t *link)
{
    if (!link->lost && link->connected && !(link->events & UV_WRITABLE))
        uv_prepare_start(&link->flush, redis_link_on_flush);
}

/* Every call still waiting gets NULL, oldest first. */
static void redis_link_fail_calls(redis_link_t *link)
{
    redis_link_call_t *call;

    while ((call = link->head) != NULL) {
        link->head = call->next;
        if (link->head == NULL)
            link->tail = NULL;
        if (call->cb != NULL)
            call->cb(call->arg, NULL);
        free(call);
    }
}

static void redis_link_lose(redis_link_t *link)
{
    if (link->lost)
        return;
    link->lost = 1;
    link->ready = 0;
    uv_poll_stop(&link->poll);
    uv_timer_stop(&link->timer);
    uv_prepare_stop(&link->flush);
    redis_link_fail_calls(link);
    if (link->on_state != NULL)
        link->on_state(link->arg, link, 0);
}

static int redis_link_push_call(redis_link_t *link, redis_link_reply_cb cb, void *arg, int own)
{
    redis_link_call_t *call = malloc(sizeof(*call));

    if (call == NULL)
        return -1;
    call->next = NULL;
    call->cb = cb;
    call->arg = arg;
    call->own_ping = own;
    if (link->tail != NULL)
        link->tail->next = call;
    else
        link->head = call;
    link->tail = call;
    return 0;
}

static int redis_link_ping(redis_link_t *link)
{
    if (redisAppendCommand(link->c, "PING") != REDIS_OK)
        return -1;
    /* A push link matches its PONG by shape; a command link by order. */
    if (link->on_push == NULL && redis_link_push_call(link, NULL, NULL, 1) != 0)
        return -1;
    link->ping_outstanding = 1;
    link->ping_sent = uv_now(link->loop);
    redis_link_schedule(link);
    return 0;
}

static void redis_link_on_timer(uv_timer_t *timer)
{
    redis_link_t *link = timer->data;

    /* Broken (redis_link_command), or the connect or the first PONG missed its deadline. */
    if (link->broken || !link->ready) {
        redis_link_lose(link);
        return;
    }
    if (link->ping_outstanding) {
        if (uv_now(link->loop) - link->ping_sent >=
            (uint64_t)link->ping_ms * REDIS_LINK_PING_MISSES)
            redis_link_lose(link);
        return;
    }
    if (redis_link_ping(link) != 0)
        redis_link_lose(link);
}

static void redis_link_pong(redis_link_t *link)
{
    link->ping_outstanding = 0;
    if (link->ready || link->broken)
        return;
    link->ready = 1;
    uv_timer_start(&link->timer, redis_link_on_timer, (uint64_t)link->ping_ms,
                   (uint64_t)link->ping_ms);
    if (link->on_state != NULL)
        link->on_state(link->arg, link, 1);
}

/* A push link's PONG: +PONG before any SSUBSCRIBE, ["pong", ""] after. */
static int redis_link_is_pong(const redisReply *r)
{
    if (r->type == REDIS_REPLY_STATUS)
        return strcasecmp(r->str, "PONG") == 0;
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcasecmp(r->element[0]->str, "pong") == 0;
}

static void redis_link_dispatch(redis_link_t *link, redisReply *reply)
{
    redis_link_call_t *call;

    if (link->on_push != NULL) {
        if (redis_link_is_pong(reply))
            redis_link_pong(link);
        else if (link->ready)
            link->on_push(link->arg, reply);
        return;
    }
    if ((call = link->head) == NULL) { /* a reply nobody asked for: out of step */
        redis_link_lose(link);
        return;
    }
    link->head = call->next;
    if (link->head == NULL)
        link->tail = NULL;
    if (call->own_ping) {
        if (reply->type == REDIS_REPLY_ERROR) /* LOADING, NOAUTH: cannot carry us */
            redis_link_lose(link);
        else
            redis_link_pong(link);
    } else if (call->cb != NULL) {
        call->cb(call->arg, reply);
    }
    free(call);
}

static void redis_link_read(redis_link_t *link)
{
    void *reply;

    if (redisBufferRead(link->c) != REDIS_OK) {
        redis_link_lose(link);
        return;
    }
    while (!link->lost) {
        if (redisGetReplyFromReader(link->c, &reply) != REDIS_OK) {
            redis_link_lose(link);
            return;
        }
        if (reply == NULL)
            return;
        redis_link_dispatch(link, reply);
        freeReplyObject(reply);
    }
}

/* Writes the output buffer until it is empty or the socket says EAGAIN. 0, or -1: lost. */
static int redis_link_send(redis_link_t *link)
{
    size_t left;

    while ((left = sdslen(link->c->obuf)) > 0) {
        if (redisBufferWrite(link->c, NULL) != REDIS_OK) {
            redis_link_lose(link);
            return -1;
        }
        if (sdslen(link->c->obuf) == left) /* EAGAIN (or EINTR): WRITABLE tells us when */
            break;
    }
    return 0;
}

/* The end of a loop turn in which commands were queued: one write for all of them. */
static void redis_link_on_flush(uv_prepare_t *handle)
{
    redis_link_t *link = handle->data;

    uv_prepare_stop(&link->flush);
    if (!link->lost && redis_link_send(link) == 0)
        redis_link_watch(link);
}

/* WRITABLE: the connect finished, or the socket takes what it held back. */
static void redis_link_write(redis_link_t *link)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (!link->connected) {
        if (getsockopt(link->c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            redis_link_lose(link);
            return;
        }
        link->connected = 1;
        link->c->flags |= REDIS_CONNECTED;
    }
    uv_prepare_stop(&link->flush); /* written here instead */
    if (redis_link_send(link) == 0)
        redis_link_watch(link);
}

static void redis_link_on_poll(uv_poll_t *handle, int status, int events)
{
    redis_link_t *link = handle->data;

    if (status < 0) { /* POLLERR: a refused connect, a reset */
        redis_link_lose(link);
        return;
    }
    if (!link->lost && (events & UV_WRITABLE))
        redis_link_write(link);
    if (!link->lost && (events & UV_READABLE) && link->connected)
        redis_link_read(link);
}

static void redis_link_on_close(uv_handle_t *handle)
{
    redis_link_t *link = handle->data;

    if (--link->open_handles == 0)
        free(link);
}

redis_link_t *redis_link_new(uv_loop_t *loop, const redis_link_config_t *cfg)
{
    redis_link_t *link = calloc(1, sizeof(*link));

    if (link == NULL)
        return NULL;
    if (cfg->path != NULL)
        link->c = redisConnectUnixNonBlock(cfg->path);
    else
        link->c = redisConnectNonBlock(cfg->host, cfg->port);
    if (link->c == NULL || link->c->err != 0 || uv_poll_init(loop, &link->poll, link->c->fd) != 0) {
        if (link->c != NULL)
            redisFree(link->c);
        free(link);
        return NULL;
    }
    link->loop = loop;
    link->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 2000;
    link->ping_ms = cfg->ping_ms > 0 ? cfg->ping_ms : 1000;
    link->on_state = cfg->on_state;
    link->on_push = cfg->on_push;
    link->arg = cfg->arg;
    link->poll.data = link;
    uv_timer_init(loop, &link->timer);
    link->timer.data = link;
    uv_prepare_init(loop, &link->flush);
    link->flush.data = link;
    link->open_handles = 3;
    /* The first command is our PING: its answer makes the link ready. */
    if (redis_link_ping(link) != 0) {
        redis_link_free(link);
        return NULL;
    }
    redis_link_watch(link); /* WRITABLE says the connect finished */
    uv_timer_start(&link->timer, redis_link_on_timer, (uint64_t)link->timeout_ms, 0);
    return link;
}

int redis_link_command(redis_link_t *link, int argc, const char **argv, const size_t *lens,
                       redis_link_reply_cb cb, void *arg)
{
    if (link->lost || link->broken || argc < 1)
        return -1;
    if (link->on_push == NULL && redis_link_push_call(link, cb, arg, 0) != 0)
        return -1;
    if (redisAppendCommandArgv(link->c, argc, argv, lens) != REDIS_OK) {
        /*
         * Out of memory, and the context is marked failed: lost, on the next
         * tick, as no callback may run inside this call.
         */
        if (link->on_push == NULL)
            link->tail->cb = NULL;
        link->broken = 1;
        uv_timer_start(&link->timer, redis_link_on_timer, 0, 0);
        return -1;
    }
    redis_link_schedule(link);
    return 0;
}

int redis_link_ready(const redis_link_t *link)
{
    return link != NULL && link->ready;
}

void redis_link_free(redis_link_t *link)
{
    if (link == NULL || link->freed)
        return;
    link->freed = 1;
    link->on_state = NULL; /* no state callback from here on */
    link->on_push = NULL;
    redis_link_lose(link);
    /* Closing the poll handle stops the watch at once, so the fd may go now. */
    uv_close((uv_handle_t *)&link->poll, redis_link_on_close);
    uv_close((uv_handle_t *)&link->timer, redis_link_on_close);
    uv_close((uv_handle_t *)&link->flush, redis_link_on_close);
    redisFree(link->c);
    link->c = NULL;
}
