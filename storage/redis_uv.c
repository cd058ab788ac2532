/*
 * redis_uv: hiredis async context <-> uv_poll_t. See redis_uv.h.
 */
#include "redis_uv.h"

#include <stdlib.h>

typedef struct redis_uv {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has called cleanup */
    int events;            /* UV_READABLE | UV_WRITABLE that hiredis asked for */
} redis_uv_t;

static void redis_uv_on_poll(uv_poll_t *handle, int status, int events)
{
    redis_uv_t *p = handle->data;

    if (status < 0) {
        /*
         * POLLERR: libuv has already stopped the handle. hiredis finds the
         * error itself (getsockopt(SO_ERROR) while connecting, read(2) once
         * connected) and then frees the context through its callbacks. If it
         * keeps the context after all, listen again for what it wants.
         */
        if (p->ac != NULL && !(p->ac->c.flags & REDIS_CONNECTED))
            redisAsyncHandleWrite(p->ac);
        else if (p->ac != NULL)
            redisAsyncHandleRead(p->ac);
        if (p->ac != NULL && p->events != 0)
            uv_poll_start(&p->poll, p->events, redis_uv_on_poll);
        return;
    }
    /* Each call may free the context: cleanup clears p->ac, p stays alive. */
    if (p->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void redis_uv_update(redis_uv_t *p, int add, int del)
{
    int events = (p->events | add) & ~del;

    if (events == p->events || uv_is_closing((uv_handle_t *)&p->poll))
        return;
    p->events = events;
    /* A failed start leaves the context silent; the caller's timers catch that. */
    if (events != 0)
        uv_poll_start(&p->poll, events, redis_uv_on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void redis_uv_add_read(void *privdata)
{
    redis_uv_update(privdata, UV_READABLE, 0);
}

static void redis_uv_del_read(void *privdata)
{
    redis_uv_update(privdata, 0, UV_READABLE);
}

static void redis_uv_add_write(void *privdata)
{
    redis_uv_update(privdata, UV_WRITABLE, 0);
}

static void redis_uv_del_write(void *privdata)
{
    redis_uv_update(privdata, 0, UV_WRITABLE);
}

static void redis_uv_on_close(uv_handle_t *handle)
{
    free(handle->data);
}

/* Called by hiredis while it frees the context, before it closes the socket. */
static void redis_uv_cleanup(void *privdata)
{
    redis_uv_t *p = privdata;

    p->ac = NULL;
    if (!uv_is_closing((uv_handle_t *)&p->poll))
        uv_close((uv_handle_t *)&p->poll, redis_uv_on_close);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    redis_uv_t *p;
    int rc;

    if (ac->ev.data != NULL)
        return UV_EBUSY;
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return UV_ENOMEM;
    /* On failure the handle was never registered with the loop: plain free. */
    if ((rc = uv_poll_init(loop, &p->poll, ac->c.fd)) != 0) {
        free(p);
        return rc;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = redis_uv_add_read;
    ac->ev.delRead = redis_uv_del_read;
    ac->ev.addWrite = redis_uv_add_write;
    ac->ev.delWrite = redis_uv_del_write;
    ac->ev.cleanup = redis_uv_cleanup;
    return 0;
}
