/*
 * test_config: the flag parser's boolean settings (--pg-prepared on|off, the
 * README's "--bus-pg-fallback 0") and their environment variables.
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

int main(void)
{
    unsetenv("HUB_PG_PREPARED");
    unsetenv("HUB_BUS_PG_FALLBACK");
    unsetenv("HUB_REFUND_TIMED_OUT");
    test_bool_flags();
    test_bool_env();
    return check_report();
}
