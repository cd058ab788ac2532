/*
 * test_resolve: storage/resolve.c, and the PostgreSQL pool given a host name
 * (no server needed: a name that does not resolve must fail fast and cleanly).
 * Every case ends with the loop empty.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "check.h"
#include "pg_pool.h"
#include "resolve.h"

static uv_loop_t loop;

typedef struct outcome {
    int calls;
    int status;
    resolve_result_t res;
} outcome_t;

static void on_resolved(void *arg, int status, const resolve_result_t *res)
{
    outcome_t *o = arg;
    o->calls++;
    o->status = status;
    if (res)
        o->res = *res;
}

static void test_literals(void)
{
    CHECK(resolve_is_literal("127.0.0.1") && resolve_is_literal("::1") &&
              resolve_is_literal("fd00::5"),
          "IP literals need no resolution");
    CHECK(!resolve_is_literal("localhost") && !resolve_is_literal("db.example") &&
              !resolve_is_literal("") && !resolve_is_literal(NULL),
          "names do");
}

static void test_localhost(void)
{
    outcome_t o = {0};
    int err = 0;
    char joined[256];

    CHECK(resolve_start(&loop, "localhost", on_resolved, &o, &err) != NULL, "start");
    CHECK(o.calls == 0, "never calls back on the caller's stack");
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(o.calls == 1 && o.status == 0 && o.res.n >= 1, "localhost resolves, one callback");
    bool v4 = false;
    for (int i = 0; i < o.res.n; i++)
        v4 |= strcmp(o.res.addr[i], "127.0.0.1") == 0;
    CHECK(v4, "to 127.0.0.1 among its addresses");
    CHECK(resolve_join(&o.res, joined, sizeof joined) == 0 && strstr(joined, "127.0.0.1"),
          "joined as a list");
    CHECK(resolve_join(&o.res, joined, 4) == -1, "a short buffer is refused");
}

static void test_unknown_and_cancel(void)
{
    outcome_t bad = {0}, cancelled = {0};
    int err = 0;

    CHECK(resolve_start(&loop, "no-such-host.invalid", on_resolved, &bad, &err) != NULL, "start");
    resolve_req_t *req = resolve_start(&loop, "localhost", on_resolved, &cancelled, &err);
    CHECK(req != NULL, "start another");
    resolve_cancel(req);
    resolve_cancel(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(bad.calls == 1 && bad.status < 0, "a name that does not exist fails, one callback");
    CHECK(cancelled.calls == 0, "a cancelled request never calls back");
}

static char pool_log[512];

static void on_pool_log(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level == PG_LOG_WARN)
        snprintf(pool_log, sizeof pool_log, "%s", msg);
}

static void on_query(void *arg, int status, PGresult *res, const char *errmsg)
{
    (void)arg, (void)status, (void)res, (void)errmsg;
}

static void on_check(uv_timer_t *t)
{
    pg_pool_t *pool = t->data;
    if (!pool_log[0])
        return;
    CHECK(pg_pool_connected(pool) == 0, "no connection");
    CHECK(pg_pool_query(pool, "SELECT 1", 0, NULL, on_query, NULL) == PG_EUNAVAILABLE,
          "queries fail at once (the caller answers 503)");
    pg_pool_close(pool);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_pool_unresolvable(void)
{
    pg_pool_config_t cfg = {
        .conninfo = "postgresql://u@no-such-host.invalid:5432/db", .size = 2, .log = on_pool_log};
    uv_timer_t check;
    pg_pool_t *pool = pg_pool_new(&loop, &cfg);

    CHECK(pool != NULL, "a host name is accepted");
    if (!pool)
        return;
    uv_timer_init(&loop, &check);
    check.data = pool;
    uv_timer_start(&check, on_check, 20, 20);
    uint64_t t0 = uv_now(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_now(&loop) - t0 < 10000, "fails fast: no hang");
    CHECK(strstr(pool_log, "cannot resolve host no-such-host.invalid") != NULL,
          "the log names the host that does not resolve");
}

static void test_pool_host_lists(void)
{
    pg_pool_config_t cfg = {.conninfo = "host=a.example,b.example dbname=x", .size = 1};
    CHECK(pg_pool_new(&loop, &cfg) == NULL, "a list of host names is refused (libpq would block)");
    cfg.conninfo = "host=10.0.0.1,10.0.0.2 port=1 dbname=x connect_timeout=1";
    pg_pool_t *pool = pg_pool_new(&loop, &cfg);
    CHECK(pool != NULL, "a list of addresses is fine");
    pg_pool_close(pool);
    cfg.conninfo = "host=db.example hostaddr=10.0.0.1 port=1 dbname=x";
    pool = pg_pool_new(&loop, &cfg);
    CHECK(pool != NULL, "a name with its hostaddr is left to libpq (no DNS)");
    pg_pool_close(pool);
    uv_run(&loop, UV_RUN_DEFAULT);
}

int main(void)
{
    uv_loop_init(&loop);
    test_literals();
    test_localhost();
    test_unknown_and_cancel();
    test_pool_unresolvable();
    test_pool_host_lists();
    CHECK(uv_loop_close(&loop) == 0, "uv_loop_close() == 0");
    return check_report();
}
