/* dict: string-keyed hash table (see dict.h). */
#include "dict.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* FNV-1a: short keys, no adversary controls the set of channel names. */
static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

dict_t *dict_new(void)
{
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
