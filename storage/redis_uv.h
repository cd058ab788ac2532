/*
 * redis_uv: runs a hiredis async context on a libuv loop through one
 * uv_poll_t on the context's socket.
 *
 * hiredis's own adapters/libuv.h drops poll errors: when connect(2) fails,
 * libuv reports POLLERR as an error status, the adapter returns, libuv has
 * stopped the handle and hiredis never learns that the connect failed. Here
 * an error status is handed to hiredis like an event (a write event while
 * connecting, a read event afterwards) so that it reads the socket error and
 * calls the connect or disconnect callback.
 */
#ifndef RN_REDIS_UV_H
#define RN_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/*
 * Attaches ac (its socket must be open: check ac->err first) to loop. Call it
 * before redisAsyncSetConnectCallback, which starts watching for the connect.
 * Returns 0, or a negative libuv error code with ac untouched (free it with
 * redisAsyncFree). The adapter belongs to ac from then on: hiredis's cleanup
 * hook closes the poll handle when the context is freed, and the adapter's
 * memory is released in the handle's close callback, so run the loop after
 * the last context is gone before uv_loop_close().
 */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
