/* clientip: trusted proxies and X-Forwarded-For (see clientip.h). */
#include "clientip.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One trusted network, as 16 bytes (IPv4 mapped into IPv6) and a prefix length. */
typedef struct net {
    unsigned char addr[16];
    int bits;
} net_t;

struct clientip_trust {
    size_t n;
    net_t nets[];
};

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Text to 16 bytes; *v4 says whether it was IPv4 (or IPv4-mapped). 0 or -1. */
static int parse_ip(const char *s, unsigned char out[16], int *v4)
{
    struct in_addr a4;

    if (inet_pton(AF_INET, s, &a4) == 1) {
        memcpy(out, v4mapped, 12);
        memcpy(out + 12, &a4, 4);
        *v4 = 1;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out) != 1)
        return -1;
    *v4 = memcmp(out, v4mapped, 12) == 0;
    return 0;
}

static void format_ip(const unsigned char addr[16], char *out, size_t outlen)
{
    if (memcmp(addr, v4mapped, 12) == 0)
        inet_ntop(AF_INET, addr + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, addr, out, (socklen_t)outlen);
}

static int in_net(const net_t *net, const unsigned char addr[16])
{
    int full = net->bits / 8, rest = net->bits % 8;

    if (memcmp(net->addr, addr, (size_t)full) != 0)
        return 0;
    return rest == 0 || ((net->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

static int parse_net(const char *s, net_t *net)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);
    int v4;
    long bits;
    char *end;

    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (parse_ip(buf, net->addr, &v4) != 0)
        return -1;
    net->bits = 128;
    if (slash) {
        bits = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || bits < 0 || bits > (v4 ? 32 : 128))
            return -1;
        net->bits = (int)(v4 ? bits + 96 : bits);
    }
    return 0;
}

clientip_trust_t *clientip_trust_new(const char *list, char *err, size_t errlen)
{
    char *copy = strdup(list ? list : ""), *save = NULL, *tok;
    size_t max = 1;
    clientip_trust_t *t;

    for (const char *p = copy ? copy : ""; *p; p++)
        max += *p == ',' || *p == ' ';
    t = copy ? calloc(1, sizeof(*t) + max * sizeof(net_t)) : NULL;
    if (!t) {
        snprintf(err, errlen, "out of memory");
        free(copy);
        return NULL;
    }
    for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (parse_net(tok, &t->nets[t->n]) != 0) {
            snprintf(err, errlen, "trusted proxy \"%s\" is not an IP or a CIDR", tok);
            free(copy);
            free(t);
            return NULL;
        }
        t->n++;
    }
    free(copy);
    return t;
}

void clientip_trust_free(clientip_trust_t *t)
{
    free(t);
}

static int trusted_addr(const clientip_trust_t *t, const unsigned char addr[16])
{
    for (size_t i = 0; t && i < t->n; i++)
        if (in_net(&t->nets[i], addr))
            return 1;
    return 0;
}

int clientip_trusted(const clientip_trust_t *t, const char *ip)
{
    unsigned char addr[16];
    int v4;

    return parse_ip(ip, addr, &v4) == 0 && trusted_addr(t, addr);
}

/*
 * Walks X-Forwarded-For from the right. 0 with the client in addr, or -1
 * when an entry is malformed.
 */
static int from_xff(const clientip_trust_t *t, const char *xff, unsigned char addr[16])
{
    const char *end = xff + strlen(xff);
    int v4;

    while (end > xff) {
        const char *start = end;
        char item[64];
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b == a || (size_t)(b - a) >= sizeof item)
            return -1;
        memcpy(item, a, (size_t)(b - a));
        item[b - a] = '\0';
        if (parse_ip(item, addr, &v4) != 0)
            return -1;
        if (!trusted_addr(t, addr) || start == xff)
            return 0; /* the first untrusted hop, or the left-most */
        end = start - 1;
    }
    return -1;
}

void clientip_pick(const clientip_trust_t *t, const char *peer, const char *xff, char *out)
{
    unsigned char addr[16], client[16];
    int v4;

    if (!peer || parse_ip(peer, addr, &v4) != 0) {
        snprintf(out, CLIENTIP_MAX, "unknown");
        return;
    }
    if (xff && *xff && trusted_addr(t, addr) && from_xff(t, xff, client) == 0)
        memcpy(addr, client, sizeof addr);
    format_ip(addr, out, CLIENTIP_MAX);
}

void clientip_limit_key(const char *ip, char *out, size_t outlen)
{
    unsigned char addr[16];
    char text[CLIENTIP_MAX];
    int v4;

    if (parse_ip(ip, addr, &v4) != 0 || v4) {
        snprintf(out, outlen, "%s", ip);
        return;
    }
    memset(addr + 8, 0, 8);
    format_ip(addr, text, sizeof text);
    snprintf(out, outlen, "%s/64", text);
}
