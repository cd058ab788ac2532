/* dict: string-keyed hash table (see dict.h). */
#include "dict.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
} entry_t;

struct dict {
    entry_t **buckets;
    size_t nbuckets, size;
};

/*
 * SipHash-1-3 under a key drawn once per process: the keys are user ids and
 * client addresses that a visitor chooses, and an unkeyed hash would let one
 * pick a set of keys that all land in one bucket (hash flooding).
 */
static uint64_t sip_key[2];

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
    do {                                                                                           \
        v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);                                  \
        v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                                     \
        v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                                     \
        v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);                                  \
    } while (0)

static uint64_t siphash13(const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ sip_key[0], v1 = 0x646f72616e646f6dULL ^ sip_key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ sip_key[0], v3 = 0x7465646279746573ULL ^ sip_key[1];
    uint64_t b = (uint64_t)len << 56, m;
    size_t i;
    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&m, in + i, 8); /* little-endian hosts only, as everything here */
        v3 ^= m;
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_of(const char *s)
{
    return siphash13((const unsigned char *)s, strlen(s));
}

/* The key is drawn by the first dict_new (loop thread, start-up). */
static void sip_key_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    if (getrandom(sip_key, sizeof sip_key, 0) != (ssize_t)sizeof sip_key) {
        /* No entropy yet (early boot): the address of a stack object and the time still
         * differ per process, which is all that is asked of this key. */
        int here;
        sip_key[0] = (uint64_t)(uintptr_t)&here ^ (uint64_t)time(NULL);
        sip_key[1] = rotl(sip_key[0], 29) ^ 0x9e3779b97f4a7c15ULL;
    }
}

dict_t *dict_new(void)
{
    sip_key_init();
    dict_t *d = calloc(1, sizeof *d);
    if (d && !(d->buckets = calloc(16, sizeof *d->buckets))) {
        free(d);
        return NULL;
    }
    if (d)
        d->nbuckets = 16;
    return d;
}

void dict_free(dict_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nbuckets; i++)
        for (entry_t *e = d->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(d->buckets);
    free(d);
}

static entry_t **find(const dict_t *d, const char *key, uint64_t h)
{
    entry_t **p = &d->buckets[h & (d->nbuckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
        p = &(*p)->next;
    return p;
}

void *dict_get(const dict_t *d, const char *key)
{
    entry_t *e = *find(d, key, hash_of(key));
    return e ? e->value : NULL;
}

static void grow(dict_t *d)
{
    size_t n = d->nbuckets * 2;
    entry_t **b = calloc(n, sizeof *b);
    if (!b)
        return; /* stay at this size: slower, still correct */
    for (size_t i = 0; i < d->nbuckets; i++)
        for (entry_t *e = d->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;
}

int dict_set(dict_t *d, const char *key, void *value)
{
    uint64_t h = hash_of(key);
    entry_t **p = find(d, key, h);
    if (*p) {
        (*p)->value = value;
        return 0;
    }
    size_t len = strlen(key);
    entry_t *e = malloc(sizeof *e + len + 1);
    if (!e)
        return -1;
    e->next = NULL;
    e->hash = h;
    e->value = value;
    memcpy(e->key, key, len + 1);
    *p = e;
    if (++d->size > d->nbuckets)
        grow(d);
    return 0;
}

void *dict_delete(dict_t *d, const char *key)
{
    entry_t **p = find(d, key, hash_of(key)), *e = *p;
    if (!e)
        return NULL;
    void *value = e->value;
    *p = e->next;
    free(e);
    d->size--;
    return value;
}

size_t dict_size(const dict_t *d)
{
    return d->size;
}

void dict_each(const dict_t *d, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < d->nbuckets; i++)
        for (entry_t *e = d->buckets[i]; e; e = e->next)
            fn(e->key, e->value, arg);
}
