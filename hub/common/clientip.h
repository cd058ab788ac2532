/*
 * clientip: who the client is, for the per-IP limits and the logs. The TCP
 * peer, unless the peer is a trusted proxy (--trusted-proxies: IPs or CIDRs,
 * none by default); then the right-most address of X-Forwarded-For that is
 * not itself a trusted proxy (the left-most if all are). The entries to the
 * left of it were written by the client and prove nothing. A malformed
 * X-Forwarded-For gives the peer.
 *
 * Addresses come out canonical (inet_ntop), an IPv4-mapped IPv6 peer as plain
 * IPv4. Pure functions, any thread.
 */
#ifndef RN_CLIENTIP_H
#define RN_CLIENTIP_H

#include <stddef.h>

#define CLIENTIP_MAX 46 /* INET6_ADDRSTRLEN */

typedef struct clientip_trust clientip_trust_t;

/*
 * Parses a list of IPs and CIDRs separated by commas or spaces ("" or NULL:
 * nothing trusted). NULL with a message in err when an entry is malformed.
 */
clientip_trust_t *clientip_trust_new(const char *list, char *err, size_t errlen);
void clientip_trust_free(clientip_trust_t *t);

/* 1 when ip (text) is in the trusted list. */
int clientip_trusted(const clientip_trust_t *t, const char *ip);

/*
 * The client's address into out (CLIENTIP_MAX bytes), from the peer's
 * address and the X-Forwarded-For header (NULL when absent). "unknown" when
 * the peer itself cannot be read.
 */
void clientip_pick(const clientip_trust_t *t, const char *peer, const char *xff, char *out);

/*
 * The key a per-IP limit counts under: an IPv4 address as it is, an IPv6
 * one as its /64 (one subscriber's whole allocation). out: CLIENTIP_MAX + 4.
 */
void clientip_limit_key(const char *ip, char *out, size_t outlen);

#endif
