/*
 * test_config: the flag parser's boolean settings (--pg-prepared on|off, the
 * README's "--bus-pg-fallback 0") and their environment variables; the
 * events' retention settings and what config_validate refuses of them.
 */
#include "config.h"

#include <stdlib.h>

#include "check.h"

/* Parses argv (after a command word) over the defaults; returns config_parse_args's result. */
static int parse(hub_config_t *cfg, int argc, char **argv)
{
    config_defaults(cfg);
    return config_parse_args(cfg, argc, argv, 1);
}

static void test_bool_flags(void)
{
    hub_config_t cfg;

    char *a1[] = {"serve", "--pg-prepared", "off", "--pg-pool", "3"};
    CHECK(parse(&cfg, 5, a1) == 5, "--pg-prepared off then another flag: all parsed");
    CHECK(!cfg.pg_prepared && cfg.pg_pool_size == 3, "off, and the next flag still applies");

    char *a2[] = {"serve", "--pg-prepared=on"};
    CHECK(parse(&cfg, 2, a2) == 2 && cfg.pg_prepared, "--pg-prepared=on");

    char *a3[] = {"serve", "--bus-pg-fallback", "0"};
    CHECK(parse(&cfg, 3, a3) == 3 && !cfg.bus_pg_fallback, "--bus-pg-fallback 0 (as README says)");

    char *a4[] = {"serve", "--refund-timed-out", "--pg-pool", "2"};
    CHECK(parse(&cfg, 4, a4) == 4 && cfg.refund_timed_out && cfg.pg_pool_size == 2,
          "a switch alone is on; the next flag is not its value");

    char *a5[] = {"serve", "--pg-prepared", "maybe"};
    CHECK(parse(&cfg, 3, a5) == 2 && cfg.pg_prepared,
          "a word that is no boolean is not taken: it is left as an argument (serve refuses it)");

    char *a6[] = {"serve", "--pg-prepared=maybe"};
    CHECK(parse(&cfg, 2, a6) == -1, "--pg-prepared=maybe is refused");

    char *a7[] = {"serve"};
    CHECK(parse(&cfg, 1, a7) == 1 && cfg.pg_prepared, "prepared statements are on by default");
}

static void test_bool_env(void)
{
    hub_config_t cfg;

    setenv("HUB_PG_PREPARED", "off", 1);
    config_defaults(&cfg);
    CHECK(!cfg.pg_prepared, "HUB_PG_PREPARED=off");
    setenv("HUB_PG_PREPARED", "yes", 1);
    config_defaults(&cfg);
    CHECK(cfg.pg_prepared, "HUB_PG_PREPARED=yes");
    unsetenv("HUB_PG_PREPARED");
}

/* Parses argv over the defaults with a database URL, then validates: config_validate's result. */
static int validate(int argc, char **argv)
{
    hub_config_t cfg;
    char err[256];
    config_defaults(&cfg);
    cfg.database_url = "postgresql://x@127.0.0.1/x";
    if (config_parse_args(&cfg, argc, argv, 1) != argc)
        return -2;
    return config_validate(&cfg, err, sizeof err);
}

static void test_events_retention(void)
{
    hub_config_t cfg;
    char *a0[] = {"serve"};
    CHECK(parse(&cfg, 1, a0) == 1 && cfg.events_keep_hours == 168 &&
              cfg.events_expire_sweep_ms == 60000,
          "acked events are kept 7 days, swept every minute, by default");
    CHECK(validate(1, a0) == 0, "the defaults are valid");

    char *a1[] = {"serve", "--events-keep-hours", "0"};
    CHECK(validate(3, a1) == 0, "0 keeps events forever");
    char *a2[] = {"serve", "--events-keep-hours", "1", "--events-expire-sweep-ms", "100"};
    CHECK(validate(5, a2) == 0, "an hour, swept every 100 ms (the tests' setting)");
    char *a3[] = {"serve", "--events-expire-sweep-ms", "99"};
    CHECK(validate(3, a3) == -1, "a sweep more often than every 100 ms is refused");
    char *a4[] = {"serve", "--events-keep-hours", "1", "--call-deadline-s", "1801"};
    CHECK(validate(5, a4) == -1,
          "a keep shorter than a call can last (twice its deadline) is refused: rn_call_due");
    char *a5[] = {"serve", "--events-keep-hours", "1", "--call-deadline-s", "1800"};
    CHECK(validate(5, a5) == 0, "a keep of exactly twice the call deadline is fine");
    char *a6[] = {"serve", "--events-keep-hours", "876001"};
    CHECK(validate(3, a6) == -1, "more than 100 years is refused (PostgreSQL's timestamps)");
    char *a7[] = {"serve", "--events-keep-hours", "-1"};
    CHECK(validate(3, a7) == -2, "a negative keep is not a value");
}

int main(void)
{
    unsetenv("HUB_PG_PREPARED");
    unsetenv("HUB_BUS_PG_FALLBACK");
    unsetenv("HUB_REFUND_TIMED_OUT");
    unsetenv("HUB_EVENTS_KEEP_HOURS");
    unsetenv("HUB_EVENTS_EXPIRE_SWEEP_MS");
    unsetenv("HUB_CALL_DEADLINE_S");
    test_bool_flags();
    test_bool_env();
    test_events_retention();
    return check_report();
}
