/*
 * test_dict: the string-keyed table under fan-out, queues and cabinets:
 * set/replace/get/delete, growth past many doublings with every key still
 * found, iteration visiting each entry once, and keys that differ only in
 * their last byte or length (the SipHash tail).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dict.h"

static void count_entry(const char *key, void *value, void *arg)
{
    size_t *seen = arg;
    /* values are 1 + the key's number: each visited once, with its own value */
    CHECK((uintptr_t)value == (uintptr_t)strtoul(key + 4, NULL, 10) + 1, "each: value of its key");
    seen[0]++;
    seen[1] += (uintptr_t)value;
}

static void test_basics(void)
{
    dict_t *d = dict_new();
    int a = 1, b = 2;
    CHECK(d && dict_size(d) == 0, "new is empty");
    CHECK(dict_get(d, "x") == NULL, "missing key: NULL");
    CHECK(dict_set(d, "x", &a) == 0 && dict_get(d, "x") == &a, "set then get");
    CHECK(dict_set(d, "x", &b) == 0 && dict_get(d, "x") == &b && dict_size(d) == 1,
          "set again replaces, size unchanged");
    CHECK(dict_set(d, "", &a) == 0 && dict_get(d, "") == &a, "the empty key is a key");
    CHECK(dict_delete(d, "nope") == NULL && dict_size(d) == 2, "delete missing: NULL, no change");
    CHECK(dict_delete(d, "x") == &b && dict_get(d, "x") == NULL && dict_size(d) == 1,
          "delete returns the value and removes");
    char key[8] = "abc";
    dict_set(d, key, &a);
    strcpy(key, "zzz"); /* the table kept its own copy */
    CHECK(dict_get(d, "abc") == &a && dict_get(d, "zzz") == NULL, "keys are copied");
    dict_free(d);
}

static void test_growth_and_each(void)
{
    enum { N = 20000 };
    dict_t *d = dict_new();
    char key[32];
    int ok = 1;
    for (uintptr_t i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key:%lu", (unsigned long)i);
        ok &= dict_set(d, key, (void *)(i + 1)) == 0;
    }
    CHECK(ok && dict_size(d) == N, "20,000 keys set");
    for (uintptr_t i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key:%lu", (unsigned long)i);
        ok &= dict_get(d, key) == (void *)(i + 1);
    }
    CHECK(ok, "every key found after growth");
    size_t seen[2] = {0, 0};
    dict_each(d, count_entry, seen);
    CHECK(seen[0] == N && seen[1] == (size_t)N * (N + 1) / 2, "each visits every entry once");
    for (uintptr_t i = 0; i < N; i += 2) {
        snprintf(key, sizeof key, "key:%lu", (unsigned long)i);
        ok &= dict_delete(d, key) == (void *)(i + 1);
    }
    CHECK(ok && dict_size(d) == N / 2, "half deleted");
    for (uintptr_t i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key:%lu", (unsigned long)i);
        ok &= dict_get(d, key) == (i % 2 ? (void *)(i + 1) : NULL);
    }
    CHECK(ok, "the other half still there, the deleted gone");
    dict_free(d);
}

static void test_near_keys(void)
{
    /* Every length from 0 to 40 (the 8-byte blocks and each tail length), and keys that
     * differ in one byte at every position: all distinct entries. */
    dict_t *d = dict_new();
    static char keys[41 * 2][48];
    int ok = 1;
    for (int len = 0; len <= 40; len++) {
        memset(keys[2 * len], 'a', (size_t)len);
        keys[2 * len][len] = '\0';
        memcpy(keys[2 * len + 1], keys[2 * len], (size_t)len + 1);
        if (len)
            keys[2 * len + 1][len - 1] = 'b';
        else
            strcpy(keys[1], "c");
        ok &= dict_set(d, keys[2 * len], keys[2 * len]) == 0;
        ok &= dict_set(d, keys[2 * len + 1], keys[2 * len + 1]) == 0;
    }
    CHECK(ok && dict_size(d) == 82, "82 distinct near keys");
    for (int i = 0; i < 82; i++)
        ok &= dict_get(d, keys[i]) == keys[i];
    CHECK(ok, "each near key maps to itself");
    dict_free(d);
}

int main(void)
{
    test_basics();
    test_growth_and_each();
    test_near_keys();
    return check_report();
}
