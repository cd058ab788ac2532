/*
 * redis_slot: CRC16 key slots, the CLUSTER SLOTS table and MOVED/ASK
 * targets. See redis_slot.h.
 */
#include "redis_slot.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint16_t redis_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned redis_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len), *close;

    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1)
            return redis_crc16(open + 1, (size_t)(close - open - 1)) & (REDIS_SLOTS - 1);
    }
    return redis_crc16(key, len) & (REDIS_SLOTS - 1);
}

int redis_slot_map_find(const redis_slot_map_t *map, const char *host, int port)
{
    for (int i = 0; i < map->nnodes; i++)
        if (map->node[i].port == port && strcmp(map->node[i].host, host) == 0)
            return i;
    return -1;
}

/* One [start, end, [host, port, ...], replicas...] entry. */
static int redis_slot_map_entry(redis_slot_map_t *map, const redisReply *e, const char *asked_host,
                                const char **err)
{
    const redisReply *m, *host, *port;
    const char *h;
    int idx;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2) {
        *err = "cluster slots: malformed entry";
        return -1;
    }
    m = e->element[2];
    host = m->element[0];
    port = m->element[1];
    if (e->element[0]->integer < 0 || e->element[1]->integer >= REDIS_SLOTS ||
        e->element[0]->integer > e->element[1]->integer || host->type != REDIS_REPLY_STRING ||
        port->type != REDIS_REPLY_INTEGER || port->integer < 1 || port->integer > 65535) {
        *err = "cluster slots: bad range or address";
        return -1;
    }
    h = host->len == 0 ? asked_host : host->str;
    if (h == NULL || strlen(h) >= INET6_ADDRSTRLEN) {
        *err = "cluster slots: bad host";
        return -1;
    }
    if ((idx = redis_slot_map_find(map, h, (int)port->integer)) < 0) {
        if (map->nnodes == REDIS_MAP_MAX_NODES) {
            *err = "cluster slots: too many masters";
            return -1;
        }
        idx = map->nnodes++;
        strcpy(map->node[idx].host, h);
        map->node[idx].port = (int)port->integer;
    }
    for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
        map->owner[s] = (int16_t)idx;
    return 0;
}

int redis_slot_map_parse(redis_slot_map_t *map, const redisReply *reply, const char *asked_host,
                         const char **err)
{
    const char *dummy;

    if (err == NULL)
        err = &dummy;
    map->nnodes = 0;
    map->complete = 0;
    for (int s = 0; s < REDIS_SLOTS; s++)
        map->owner[s] = -1;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        *err = reply != NULL && reply->type == REDIS_REPLY_ERROR ? "cluster slots: error reply"
                                                                 : "cluster slots: not an array";
        return -1;
    }
    for (size_t i = 0; i < reply->elements; i++)
        if (redis_slot_map_entry(map, reply->element[i], asked_host, err) != 0)
            return -1;
    map->complete = 1;
    for (int s = 0; s < REDIS_SLOTS; s++)
        if (map->owner[s] < 0)
            map->complete = 0;
    return 0;
}

int redis_redirect_parse(const char *err, size_t len, unsigned *slot, redis_addr_t *addr)
{
    char text[128], *p, *colon, *end;
    unsigned long s, port;
    int kind;

    if (len >= sizeof(text))
        return 0;
    memcpy(text, err, len);
    text[len] = '\0';
    if (strncmp(text, "MOVED ", 6) == 0)
        kind = 1, p = text + 6;
    else if (strncmp(text, "ASK ", 4) == 0)
        kind = 2, p = text + 4;
    else
        return 0;
    s = strtoul(p, &end, 10);
    if (end == p || *end != ' ' || s >= REDIS_SLOTS)
        return 0;
    p = end + 1;
    if ((colon = strrchr(p, ':')) == NULL)
        return 0;
    port = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || port < 1 || port > 65535)
        return 0;
    *colon = '\0';
    if (*p == '[' && colon > p && colon[-1] == ']') {
        p++;
        colon[-1] = '\0';
    }
    if (strlen(p) >= sizeof(addr->host))
        return 0;
    strcpy(addr->host, p);
    addr->port = (int)port;
    *slot = (unsigned)s;
    return kind;
}
