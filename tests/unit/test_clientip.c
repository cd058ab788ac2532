/*
 * test_clientip: trusted proxies, X-Forwarded-For and the per-IP limit key;
 * and the parser of the limits' "N/SECONDS" settings.
 */
#include "clientip.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ratelimit.h"

static const char *pick(const clientip_trust_t *t, const char *peer, const char *xff)
{
    static char out[CLIENTIP_MAX];
    clientip_pick(t, peer, xff, out);
    return out;
}

static void test_trust_list(void)
{
    char err[128];
    clientip_trust_t *t = clientip_trust_new("10.0.0.0/8, 192.168.1.7,fd00::/8", err, sizeof err);
    CHECK(t != NULL, "a list of CIDRs and IPs");
    CHECK(clientip_trusted(t, "10.200.3.4"), "inside a /8");
    CHECK(clientip_trusted(t, "::ffff:10.1.2.3"), "IPv4-mapped inside a /8");
    CHECK(clientip_trusted(t, "192.168.1.7") && !clientip_trusted(t, "192.168.1.8"), "one IP");
    CHECK(clientip_trusted(t, "fd12::1") && !clientip_trusted(t, "fe80::1"), "IPv6 CIDR");
    CHECK(!clientip_trusted(t, "11.0.0.1") && !clientip_trusted(t, "junk"), "outside, junk");
    clientip_trust_free(t);
    CHECK(clientip_trust_new("10.0.0.0/33", err, sizeof err) == NULL, "IPv4 prefix over 32");
    CHECK(clientip_trust_new("example.com", err, sizeof err) == NULL, "a host name");
    CHECK((t = clientip_trust_new("", err, sizeof err)) != NULL &&
              !clientip_trusted(t, "127.0.0.1"),
          "empty: nothing trusted");
    clientip_trust_free(t);
}

static void test_pick(void)
{
    char err[128];
    clientip_trust_t *none = clientip_trust_new(NULL, err, sizeof err);
    clientip_trust_t *t = clientip_trust_new("127.0.0.1,10.0.0.0/8", err, sizeof err);

    CHECK(!strcmp(pick(none, "::ffff:127.0.0.1", "1.2.3.4"), "127.0.0.1"),
          "untrusted peer: XFF ignored, mapped IPv4 shown plain");
    CHECK(!strcmp(pick(t, "127.0.0.1", "1.2.3.4"), "1.2.3.4"), "trusted peer: XFF");
    CHECK(!strcmp(pick(t, "127.0.0.1", "6.6.6.6, 1.2.3.4"), "1.2.3.4"),
          "right-most untrusted: what the client prepended is ignored");
    CHECK(!strcmp(pick(t, "127.0.0.1", "1.2.3.4, 10.0.0.5 ,10.1.1.1"), "1.2.3.4"),
          "trusted hops on the right are skipped");
    CHECK(!strcmp(pick(t, "127.0.0.1", "10.0.0.5, 10.1.1.1"), "10.0.0.5"),
          "all trusted: the left-most");
    CHECK(!strcmp(pick(t, "127.0.0.1", "1.2.3.4, junk"), "127.0.0.1"), "malformed: the peer");
    CHECK(!strcmp(pick(t, "127.0.0.1", "1.2.3.4:80"), "127.0.0.1"), "with a port: the peer");
    CHECK(!strcmp(pick(t, "127.0.0.1", "1.2.3.4,,10.0.0.5"), "127.0.0.1"), "empty entry: the peer");
    CHECK(!strcmp(pick(t, "127.0.0.1", "2001:DB8::1"), "2001:db8::1"), "IPv6, canonical");
    CHECK(!strcmp(pick(t, NULL, "1.2.3.4"), "unknown"), "no peer");
    clientip_trust_free(none);
    clientip_trust_free(t);
}

static void test_limit_key(void)
{
    char out[CLIENTIP_MAX + 4];
    clientip_limit_key("1.2.3.4", out, sizeof out);
    CHECK(!strcmp(out, "1.2.3.4"), "IPv4 as it is");
    clientip_limit_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", out, sizeof out);
    CHECK(!strcmp(out, "2001:db8:1:2::/64"), "IPv6 by its /64");
}

static void test_specs(void)
{
    unsigned burst, period;
    CHECK(ratelimit_parse("10/60", &burst, &period) == 0 && burst == 10 && period == 60000, "N/S");
    CHECK(ratelimit_parse("0", &burst, &period) == 0 && burst == 0, "0 is off");
    CHECK(ratelimit_parse("10", &burst, &period) == -1, "no period");
    CHECK(ratelimit_parse("10/0", &burst, &period) == -1, "zero period");
    CHECK(ratelimit_parse("0/60", &burst, &period) == -1, "zero tokens");
    CHECK(ratelimit_parse("10/60x", &burst, &period) == -1, "junk");
    CHECK(ratelimit_parse("-1/60", &burst, &period) == -1, "negative");
}

int main(void)
{
    test_trust_list();
    test_pick();
    test_limit_key();
    test_specs();
    return check_report();
}
