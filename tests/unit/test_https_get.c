/*
 * test_https_get: the pure parts of hub/https_get.c (URL, headers,
 * Cache-Control), and its failure paths on loopback with the loop ending
 * empty. The successful fetch over TLS is tested end to end by
 * tests/integration/firebase_keys.test.js.
 */
#include "../../hub/common/https_get.c"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

static void test_urls(void)
{
    char host[HOST_MAX + 1], err[200];
    int port;
    size_t at;

    CHECK(parse_url("https://www.googleapis.com/robot/v1/x?a=b", host, &port, &at, err,
                    sizeof err) == 0 &&
              strcmp(host, "www.googleapis.com") == 0 && port == 443 && at == 26,
          "Google's URL");
    CHECK(parse_url("https://127.0.0.1:8443/k", host, &port, &at, err, sizeof err) == 0 &&
              strcmp(host, "127.0.0.1") == 0 && port == 8443,
          "an IPv4 literal and a port");
    CHECK(parse_url("https://[::1]:9/k", host, &port, &at, err, sizeof err) == 0 &&
              strcmp(host, "::1") == 0 && port == 9,
          "an IPv6 literal");
    static const char *bad[] = {"http://example.com/k",
                                "https://",
                                "https://example.com",
                                "https://ex ample.com/k",
                                "https://example.com:0/k",
                                "https://example.com:99999/k",
                                "https://[::1/k",
                                "https://user@example.com/k",
                                "https://example.com/a b",
                                "https://[nope]/k",
                                NULL};
    for (int i = 0; bad[i]; i++)
        CHECK(https_url_check(bad[i], err, sizeof err) == -1 && err[0], bad[i]);
    CHECK(https_url_check(NULL, err, sizeof err) == -1, "NULL");
}

static void test_headers(void)
{
    const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "cache-control: public, max-age=19977, must-revalidate\r\n"
                     "Content-Length:  42 \r\n";
    size_t len;
    const char *v = header_value(h, h + sizeof h - 1, "content-length:", &len);

    CHECK(v && len == 2 && memcmp(v, "42", 2) == 0, "a header, case-insensitive, trimmed");
    CHECK(!header_value(h, h + sizeof h - 1, "transfer-encoding:", &len), "absent header");
    v = header_value(h, h + sizeof h - 1, "cache-control:", &len);
    CHECK(v && cache_max_age(v, len) == 19977, "Google's Cache-Control");
    CHECK(cache_max_age("max-age=2", 9) == 2, "max-age alone");
    CHECK(cache_max_age("no-store", 8) == -1, "no max-age");
    CHECK(cache_max_age("s-max-age=5", 11) == -1, "not a max-age directive");
    CHECK(cache_max_age("max-age=", 8) == -1, "no number");
    CHECK(cache_max_age("max-age=99999999999999999999999", 31) > 0, "huge, clamped");
}

typedef struct outcome {
    int calls;
    char err[512];
} outcome_t;

static void on_done(void *arg, const https_response_t *res, const char *errmsg)
{
    outcome_t *o = arg;
    o->calls++;
    snprintf(o->err, sizeof o->err, "%s", res ? "(answer)" : errmsg);
}

/* A loopback port with nothing listening on it. */
static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &n) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

static void test_failures(void)
{
    uv_loop_t loop;
    char err[256], url[128];
    outcome_t refused = {0}, cancelled = {0}, unresolved = {0};
    SSL_CTX *ctx = https_ctx_new(NULL, err, sizeof err);

    CHECK(ctx != NULL, "a context on the system CAs");
    CHECK(https_ctx_new("/nonexistent/ca.pem", err, sizeof err) == NULL && strstr(err, "cannot"),
          "a CA file that cannot be read is an error");
    uv_loop_init(&loop);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/keys", closed_port());
    CHECK(https_get_start(&loop, ctx, url, 1024, 5000, on_done, &refused, err, sizeof err),
          "start");
    CHECK(refused.calls == 0, "never calls back on the caller's stack");
    https_get_t *g =
        https_get_start(&loop, ctx, url, 1024, 5000, on_done, &cancelled, err, sizeof err);
    https_get_cancel(g);
    CHECK(https_get_start(&loop, ctx, "https://no-such-host.invalid/k", 1024, 5000, on_done,
                          &unresolved, err, sizeof err),
          "start a name that does not resolve");
    CHECK(!https_get_start(&loop, ctx, "http://x/k", 1024, 5000, on_done, &cancelled, err,
                           sizeof err),
          "a bad URL fails to start, no callback");
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(refused.calls == 1 && strstr(refused.err, "cannot connect to 127.0.0.1"), refused.err);
    CHECK(unresolved.calls == 1 && strstr(unresolved.err, "cannot resolve no-such-host.invalid"),
          unresolved.err);
    CHECK(cancelled.calls == 0, "a cancelled request never calls back");
    CHECK(uv_loop_close(&loop) == 0, "uv_loop_close() == 0");
    SSL_CTX_free(ctx);
}

int main(void)
{
    test_urls();
    test_headers();
    test_failures();
    return check_report();
}
