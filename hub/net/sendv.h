/*
 * sendv: writes to a connection's plain socket ourselves, around lws
 * (session_out.c for WebSocket frames, http.c for REST answers).
 *
 * Why: lws_write() is meant for a WRITEABLE callback, and every
 * lws_callback_on_writable() and the drop of POLLOUT before the callback is
 * a change of the socket's poll mask, which lws 4.1's libuv plugin makes with
 * uv_poll_start(): an EPOLL_CTL_DEL + ADD each. A socket that takes what we
 * write needs none of that: one sendmsg() of every buffer, at once.
 *
 * What the kernel does not take is handed to lws as raw bytes (lws_write
 * LWS_WRITE_HTTP, which an HTTP/1 and a WebSocket connection both send as
 * they are). lws 4.1 then keeps a copy (buflist_out), asks for POLLOUT
 * itself, sends it before any WRITEABLE callback of that connection, and an
 * lws_http_transaction_completed() called meanwhile waits until it is out.
 * Nothing of ours or of lws's can cut into it. While lws holds such a rest
 * (lws_partial_buffered), everything else must go through lws too.
 *
 * Loop thread only.
 */
#ifndef RN_SENDV_H
#define RN_SENDV_H

#include <libwebsockets.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * The socket to write to directly, or -1 when lws must do the writing: TLS,
 * or a stream inside a multiplexed (h2) connection.
 */
int sendv_fd(struct lws *wsi);

/*
 * Sends the n buffers of iov (n <= IOV_MAX) in order on fd, wsi's socket
 * (sendv_fd), in one sendmsg(); lws gets what the kernel did not take and
 * copies it. The buffers are borrowed for the call. Returns how many bytes
 * the kernel took (less than the total: lws holds the rest), or -1 when the
 * connection is unusable (the caller has it closed).
 */
ssize_t sendv(struct lws *wsi, int fd, struct iovec *iov, unsigned n);

#endif
