/* server: the lws context, vhost and protocols (see server.h). */
#include "server.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "session.h"

/*
 * The per-connection rx buffer lws allocates for every WebSocket. Small on
 * purpose (memory per idle socket): larger messages arrive in fragments that
 * session.c reassembles up to --max-frame.
 */
#define WS_RX_BUFFER 1024

/*
 * The most lws hands to one send(). Without it lws 4.1 sends at most
 * rx_buffer_size (+ LWS_PRE + 4) bytes at a time and copies the rest of the
 * frame aside for later POLLOUT turns, so every message over ~1 KiB would cost
 * a copy and one WRITEABLE round trip per KiB. It allocates nothing: frames
 * are written from the session's shared buffers, and the kernel takes what
 * fits in the socket.
 */
#define TX_PACKET (256 * 1024) /* REST answers too: they were sent 4 KiB per turn */

struct server {
    struct lws_context *ctx; /* set NULL by lws when teardown completes (pcontext) */
    uv_loop_t *loop;
    listener_t *listener; /* --workers: our own SO_REUSEPORT socket (listener.h) */
    struct lws_protocols protocols[3];
};

/*
 * No lws keepalive: the sessions ping and hang up themselves (session.c,
 * --ws-ping-ms). lws 4.1 keeps one validity timer per connection in a sorted
 * list, and every ping, pong or re-arm inserts by walking it from the head:
 * O(sockets) each, a third of a core at 19,000 idle sockets, 69 % of the
 * hub's CPU in lws_dll2_add_sorted (tests/bench/sockets45k.mjs). A zero
 * hangup turns the timer off (a NULL policy would take lws's default).
 */
static const lws_retry_bo_t no_validity_timer = {
    .secs_since_valid_ping = 0,
    .secs_since_valid_hangup = 0,
};

/*
 * What lws logs about one bad request (a header over its limit, a full header
 * buffer, too many fragments): any client can cause these, so they go to the
 * rate-limited info line instead of one warning or error per request.
 */
static bool per_request_complaint(const char *line)
{
    static const char *const known[] = {"Ran out of header data space",
                                        "exceeds limit",
                                        "More hdr frags",
                                        "Duplicated method",
                                        "Unknown method",
                                        "lws_parse failed"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strstr(line, known[i]))
            return true;
    return false;
}

static void lws_log_to_json(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (per_request_complaint(line)) {
        char detail[128];
        snprintf(detail, sizeof detail, "%.*s", (int)(n < 127 ? n : 127), line);
        if (!strstr(line, "exceeds limit")) /* a truncated header still gets our 431 */
            metrics_http_refused(HTTP_REFUSED_LWS);
        http_log_refused("lws refused the request", detail);
        return;
    }
    log_event(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "lws",
              json_pack("{s:s%}", "detail", line, n));
}

/*
 * lws 4.1 loads its libuv support as a plugin and dlclose()s it when the
 * context is destroyed, while uv close callbacks inside it are still pending
 * on our loop: the next uv_run() would jump into unmapped code. Holding our
 * own RTLD_NODELETE reference keeps the plugin mapped for the process's life.
 */
static void pin_uv_plugin(void)
{
    if (!dlopen("libwebsockets-evlib_uv.so", RTLD_NOW | RTLD_NODELETE))
        log_warn("cannot pin the lws libuv plugin", json_pack("{s:s}", "error", dlerror()));
}

/*
 * lws 4.1 takes `iface` as an interface name or an IP literal. With IPv6
 * enabled, an IPv4 literal is written by inet_pton(AF_INET) into the
 * sockaddr_in6 it has prepared, at sin_addr's offset, which is
 * sin6_flowinfo: sin6_addr stays zero and the hub binds [::], every
 * interface. So an IPv4 address gets an IPv4-only vhost, whose sockaddr_in
 * the literal lands in correctly; an IPv6 literal keeps IPv6 (it parses
 * right there). config_validate has already refused anything else.
 */
static bool listen_is_ipv4(const char *addr)
{
    struct in_addr a4;
    return addr && inet_pton(AF_INET, addr, &a4) == 1;
}

/* --workers: the port is bound here, with SO_REUSEPORT, before lws exists. */
static int bind_port(server_t *srv, const hub_config_t *cfg)
{
    char err[256];
    srv->listener = listener_new(srv->loop, cfg->listen, cfg->port, err, sizeof err);
    if (srv->listener)
        return 0;
    log_error("cannot listen",
              json_pack("{s:s, s:i, s:s}", "listen", cfg->listen, "port", cfg->port, "error", err));
    return -1;
}

/*
 * Binds the address the way lws will (SO_REUSEADDR; SO_REUSEPORT only with
 * --workers) and lets it go: a port taken by another process, or an address
 * not on this machine, is a fatal start-up error with its reason, instead of
 * lws's context without a listener. 0, or -1 after logging. An address that
 * is not a literal IP is left to lws.
 */
static int can_bind(const hub_config_t *cfg)
{
    struct sockaddr_storage ss;
    const char *ip = cfg->listen && *cfg->listen ? cfg->listen : "0.0.0.0";
    if (uv_ip4_addr(ip, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(ip, cfg->port, (struct sockaddr_in6 *)&ss) != 0)
        return 0;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, err = 0;
    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (cfg->workers > 1)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0)
        err = errno;
    close(fd);
    if (!err)
        return 0;
    log_error("cannot listen", json_pack("{s:s, s:i, s:s}", "listen", ip, "port", cfg->port,
                                         "error", strerror(err)));
    return -1;
}

server_t *server_new(hub_t *hub, const hub_config_t *cfg)
{
    if (can_bind(cfg) != 0)
        return NULL;
    server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->loop = hub_loop(hub);
    srv->protocols[0] = (struct lws_protocols){.name = "http",
                                               .callback = http_callback,
                                               .per_session_data_size = http_pss_size(),
                                               .tx_packet_size = TX_PACKET};
    srv->protocols[1] = (struct lws_protocols){.name = "retronova.v1",
                                               .callback = session_callback,
                                               .per_session_data_size = session_pss_size(),
                                               .rx_buffer_size = WS_RX_BUFFER,
                                               .tx_packet_size = TX_PACKET};

    pin_uv_plugin();
    lws_set_log_level(getenv("HUB_LWS_DEBUG") ? 0xfff : LLL_ERR | LLL_WARN, lws_log_to_json);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *foreign_loops[] = {srv->loop};
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.foreign_loops = foreign_loops;
    info.pcontext = &srv->ctx;
    info.port = cfg->port;
    info.iface = cfg->listen;
    info.protocols = srv->protocols;
    info.vhost_name = "retronova";
    info.user = hub;
    info.retry_and_idle_policy = &no_validity_timer;
    info.timeout_secs = 30;
    static struct lws_token_limits token_limits; /* lws keeps the pointer */
    http_token_limits(&token_limits);
    info.token_limits = &token_limits;
    info.max_http_header_data = HTTP_AH_SIZE;
    if (listen_is_ipv4(cfg->listen))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (cfg->workers > 1) /* lws listens on nothing: listener.c accepts for it */
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    if (cfg->tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = cfg->tls_cert;
        info.ssl_private_key_filepath = cfg->tls_key;
        info.alpn = "http/1.1";
    }
    if (cfg->workers > 1 && bind_port(srv, cfg) != 0) {
        free(srv);
        return NULL;
    }
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        listener_close(srv->listener);
        log_error("cannot listen",
                  json_pack("{s:s, s:i}", "listen", cfg->listen, "port", cfg->port));
        free(srv);
        return NULL;
    }
    /*
     * lws 4.1 logs a bind failure ("ERROR on binding ... 98", "Failed to
     * create default vhost") and still returns the context, serving nothing,
     * and tearing that context down crashes inside lws. can_bind() catches
     * the usual cases first; this is the last resort: exit at once.
     */
    if (!lws_get_vhost_by_name(srv->ctx, info.vhost_name)) {
        log_error("cannot listen", json_pack("{s:s, s:i, s:s}", "listen", cfg->listen, "port",
                                             cfg->port, "error", "lws could not bind"));
        fflush(NULL);
        _exit(1);
    }
    if (srv->listener) /* our vhost, created with the context */
        listener_start(srv->listener, lws_get_vhost_by_name(srv->ctx, "retronova"));
    log_info("listening", json_pack("{s:s, s:i, s:b}", "listen", cfg->listen, "port", cfg->port,
                                    "tls", cfg->tls_cert != NULL));
    return srv;
}

void server_destroy(server_t *srv)
{
    listener_close(srv->listener);
    srv->listener = NULL;
    if (srv->ctx)
        lws_context_destroy(srv->ctx);
}

void server_finish(server_t *srv, uv_loop_t *loop)
{
    if (srv->ctx) /* lws 4.1 completes a foreign-loop teardown on a second call */
        lws_context_destroy(srv->ctx);
    uv_run(loop, UV_RUN_DEFAULT);
    free(srv);
}
