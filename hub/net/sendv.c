/* sendv: one sendmsg() to a plain socket, lws keeps the rest (see sendv.h). */
#include "sendv.h"

#include <errno.h>
#include <sys/socket.h>

int sendv_fd(struct lws *wsi)
{
    return lws_is_ssl(wsi) || lws_get_network_wsi(wsi) != wsi ? -1 : (int)lws_get_socket_fd(wsi);
}

ssize_t sendv(struct lws *wsi, int fd, struct iovec *iov, unsigned n)
{
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n};
    ssize_t sent = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        sent = 0;
    }
    size_t skip = (size_t)sent;
    for (unsigned i = 0; i < n; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        unsigned char *rest = (unsigned char *)iov[i].iov_base + skip;
        if (lws_write(wsi, rest, iov[i].iov_len - skip, LWS_WRITE_HTTP) < 0)
            return -1;
        skip = 0;
    }
    return sent;
}
