/* resolve: host names resolved in libuv's thread pool (see resolve.h). */
#include "resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct resolve_req {
    uv_getaddrinfo_t gai;
    resolve_cb cb; /* NULL once cancelled */
    void *arg;
};

bool resolve_is_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return host && (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1);
}

/* Copies the distinct numeric addresses of ai into out; returns how many. */
static int collect(const struct addrinfo *ai, resolve_result_t *out)
{
    out->n = 0;
    for (; ai && out->n < RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
        char *dst = out->addr[out->n];
        const void *src = ai->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            !inet_ntop(ai->ai_family, src, dst, RESOLVE_ADDR_LEN))
            continue;
        bool dup = false;
        for (int i = 0; i < out->n && !dup; i++)
            dup = strcmp(out->addr[i], dst) == 0;
        if (!dup)
            out->n++;
    }
    return out->n;
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *ai)
{
    resolve_req_t *req = gai->data;
    resolve_result_t res;

    if (req->cb) {
        if (status == 0 && collect(ai, &res) == 0)
            status = UV_EAI_NODATA;
        req->cb(req->arg, status, status == 0 ? &res : NULL);
    }
    uv_freeaddrinfo(ai);
    free(req);
}

resolve_req_t *resolve_start(uv_loop_t *loop, const char *host, resolve_cb cb, void *arg, int *err)
{
    struct addrinfo hints;
    resolve_req_t *req = calloc(1, sizeof *req);
    int rc;

    if (!req) {
        *err = UV_ENOMEM;
        return NULL;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    req->cb = cb;
    req->arg = arg;
    req->gai.data = req;
    rc = uv_getaddrinfo(loop, &req->gai, on_resolved, host, NULL, &hints);
    if (rc != 0) {
        free(req);
        *err = rc;
        return NULL;
    }
    return req;
}

void resolve_cancel(resolve_req_t *req)
{
    if (!req)
        return;
    req->cb = NULL;
    /* Fails once the lookup runs in its thread: on_resolved then frees req. */
    uv_cancel((uv_req_t *)&req->gai);
}

int resolve_join(const resolve_result_t *res, char *buf, size_t len)
{
    size_t used = 0;

    if (len == 0)
        return -1;
    buf[0] = '\0';
    for (int i = 0; i < res->n; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? "," : "", res->addr[i]);
        if (n < 0 || (size_t)n >= len - used)
            return -1;
        used += (size_t)n;
    }
    return 0;
}
