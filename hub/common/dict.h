/*
 * dict: a string-keyed hash table (chained, power-of-two buckets, grows at
 * load 1). Keys are copied; values are the caller's. Keys are hashed with
 * SipHash under a random per-process key, so visitors cannot choose colliding
 * keys. Loop thread only.
 */
#ifndef RN_DICT_H
#define RN_DICT_H

#include <stddef.h>

typedef struct dict dict_t;

dict_t *dict_new(void);
/* Frees the table and its keys, not the values. */
void dict_free(dict_t *d);
void *dict_get(const dict_t *d, const char *key);
/* Sets key to value (replacing). 0, or -1 on allocation failure. */
int dict_set(dict_t *d, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *dict_delete(dict_t *d, const char *key);
size_t dict_size(const dict_t *d);
/* Calls fn for every entry; fn must not change the table. */
void dict_each(const dict_t *d, void (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
