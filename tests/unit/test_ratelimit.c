/*
 * test_ratelimit: the local buckets a process falls back on without Redis
 * (no bus here): sizes, all-or-none takes, refunds, refill, and a loop that
 * closes clean. The shared Redis buckets are tested over the wire in
 * tests/integration/limits.test.js.
 */
#include "ratelimit.h"

#include <string.h>

#include "check.h"

static int answers, allowed_n;
static unsigned last_retry;

static void on_answer(void *arg, int allowed, unsigned retry_after_ms)
{
    (void)arg;
    answers++;
    allowed_n += allowed;
    last_retry = retry_after_ms;
}

/* One take; 1 allowed, 0 refused, -1 when the answer did not come at once. */
static int take(ratelimit_t *rl, const rl_key_t *keys, int n)
{
    int before = answers, ok = allowed_n;
    ratelimit_take(rl, keys, n, on_answer, NULL);
    return answers == before + 1 ? allowed_n - ok : -1;
}

static void on_refilled(uv_timer_t *t)
{
    ratelimit_t *rl = t->data;
    rl_key_t k = {LIMIT_TOKEN, "1.2.3.4"};
    CHECK(take(rl, &k, 1) == 1, "a token is back after period/burst");
    CHECK(take(rl, &k, 1) == 0, "only one");
    ratelimit_close(rl);
    uv_close((uv_handle_t *)t, NULL);
}

int main(void)
{
    uv_loop_t loop;
    uv_timer_t timer;
    char err[128];
    const char *specs[LIMIT_COUNT] = {
        [LIMIT_TOKEN] = "3/1", [LIMIT_PROMO] = "1/60", [LIMIT_REST_IP] = "0"};

    uv_loop_init(&loop);
    specs[LIMIT_WS_IP] = "nope";
    CHECK(ratelimit_new(&loop, NULL, specs, err, sizeof err) == NULL && strstr(err, "ws_ip"),
          "a malformed setting is refused, named");
    specs[LIMIT_WS_IP] = NULL;
    ratelimit_t *rl = ratelimit_new(&loop, NULL, specs, err, sizeof err);
    CHECK(rl != NULL, "new");

    rl_key_t ip = {LIMIT_TOKEN, "1.2.3.4"}, other = {LIMIT_TOKEN, "5.6.7.8"};
    CHECK(take(rl, &ip, 1) == 1 && take(rl, &ip, 1) == 1 && take(rl, &ip, 1) == 1,
          "the bucket's 3 tokens");
    CHECK(take(rl, &ip, 1) == 0, "the fourth is refused");
    CHECK(last_retry >= 1 && last_retry <= 334, "retry after about a third of a second");
    CHECK(take(rl, &other, 1) == 1, "another key has its own bucket");

    rl_key_t off = {LIMIT_REST_IP, "1.2.3.4"};
    for (int i = 0; i < 100; i++)
        CHECK(take(rl, &off, 1) == 1, "a limit set to 0 is off");
    CHECK(!ratelimit_enabled(rl, LIMIT_REST_IP) && ratelimit_enabled(rl, LIMIT_TOKEN), "enabled");

    rl_key_t user = {LIMIT_PROMO, "u1"};
    rl_key_t both[2] = {{LIMIT_PROMO, "u1"}, {LIMIT_TOKEN, "9.9.9.9"}};
    CHECK(take(rl, &user, 1) == 1 && take(rl, &user, 1) == 0, "1/60: one, then refused");
    CHECK(take(rl, both, 2) == 0, "all or none: one empty bucket refuses the take");
    rl_key_t fresh = {LIMIT_TOKEN, "9.9.9.9"};
    CHECK(take(rl, &fresh, 1) == 1 && take(rl, &fresh, 1) == 1 && take(rl, &fresh, 1) == 1,
          "... and the other bucket was not charged");
    ratelimit_refund(rl, LIMIT_PROMO, "u1");
    CHECK(take(rl, &user, 1) == 1, "a refund gives the token back");

    uv_timer_init(&loop, &timer);
    timer.data = rl;
    uv_timer_start(&timer, on_refilled, 400, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "every handle closed");
    return check_report();
}
