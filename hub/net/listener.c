/* listener: a SO_REUSEPORT listening socket feeding lws (see listener.h). */
#include "listener.h"

#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define ACCEPTS_PER_TURN 64 /* bounded, so a connection storm cannot starve the loop */

struct listener {
    uv_poll_t poll;
    int fd;
    struct lws_vhost *vhost;
};

static int parse_addr(const char *addr, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    if (uv_ip4_addr(addr, port, (struct sockaddr_in *)ss) == 0) {
        *len = sizeof(struct sockaddr_in);
        return 0;
    }
    if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)ss) == 0) {
        *len = sizeof(struct sockaddr_in6);
        return 0;
    }
    return -1;
}

static int open_socket(const struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (ss->ss_family == AF_INET6) /* "::" means IPv6 only, as lws does with --listen */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Accepts what is waiting (up to a bound) and gives each socket to lws. */
static void on_readable(uv_poll_t *poll, int status, int events)
{
    listener_t *l = poll->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("accept", json_pack("{s:s}", "error", strerror(errno)));
            return;
        }
        /* lws closes fd itself when it cannot adopt it */
        if (!lws_adopt_socket_vhost(l->vhost, fd))
            log_warn("lws refused an accepted socket", NULL);
    }
}

listener_t *listener_new(uv_loop_t *loop, const char *addr, int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (!addr || parse_addr(addr, port, &ss, &len) != 0) {
        snprintf(err, errlen, "--listen must be an IP address with --workers");
        return NULL;
    }
    listener_t *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->fd = open_socket(&ss, len);
    if (l->fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", addr, port, strerror(errno));
        free(l);
        return NULL;
    }
    if (uv_poll_init(loop, &l->poll, l->fd) != 0) {
        snprintf(err, errlen, "cannot poll the listening socket");
        close(l->fd);
        free(l);
        return NULL;
    }
    l->poll.data = l;
    return l;
}

void listener_start(listener_t *l, struct lws_vhost *vhost)
{
    l->vhost = vhost;
    if (!vhost) {
        log_error("no vhost to accept for", NULL);
        return;
    }
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void on_closed(uv_handle_t *h)
{
    listener_t *l = h->data;
    close(l->fd);
    free(l);
}

void listener_close(listener_t *l)
{
    if (l)
        uv_close((uv_handle_t *)&l->poll, on_closed);
}
