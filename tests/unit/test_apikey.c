/*
 * test_apikey: cabinet API key format, parsing and hash comparison.
 */
#include "apikey.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* Does key have exactly the documented shape for arcade id? */
static int has_format(const char *key, long id)
{
    char prefix[32];
    size_t plen, len = strlen(key);

    snprintf(prefix, sizeof(prefix), "rn_%ld_", id);
    plen = strlen(prefix);
    if (len != plen + 64 || strncmp(key, prefix, plen) != 0)
        return 0;
    for (size_t i = plen; i < len; i++) {
        if (!isdigit((unsigned char)key[i]) && !(key[i] >= 'a' && key[i] <= 'f'))
            return 0;
    }
    return 1;
}

static void test_generate(void)
{
    static const long ids[] = {1, 42, 1000000, LONG_MAX};
    char k1[APIKEY_MAX], k2[APIKEY_MAX], small[40];
    long id;

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        CHECK(apikey_generate(ids[i], k1, sizeof(k1)) == 0, "generate");
        CHECK(has_format(k1, ids[i]), "generated key has the documented format");
        id = -1;
        CHECK(apikey_arcade_id(k1, &id) == 0 && id == ids[i], "key parses back to its arcade id");
    }
    CHECK(apikey_generate(7, k1, sizeof(k1)) == 0 && apikey_generate(7, k2, sizeof(k2)) == 0,
          "generate twice");
    CHECK(strcmp(k1, k2) != 0, "two keys for one arcade differ");
    CHECK(apikey_generate(0, k1, sizeof(k1)) == -1, "arcade id 0 refused");
    CHECK(apikey_generate(-3, k1, sizeof(k1)) == -1, "negative arcade id refused");
    CHECK(apikey_generate(7, small, sizeof(small)) == -1, "small buffer refused");
    CHECK(apikey_generate(7, NULL, 0) == -1, "NULL buffer refused");
}

static void test_hash(void)
{
    char key[APIKEY_MAX], other[APIKEY_MAX], hash[APIKEY_HASH_HEX], hash2[APIKEY_HASH_HEX];
    char upper[APIKEY_HASH_HEX], bad[APIKEY_HASH_HEX + 2];
    size_t n;

    CHECK(apikey_generate(12, key, sizeof(key)) == 0, "generate");
    apikey_hash_hex(key, hash);
    CHECK(strlen(hash) == 64, "hash is 64 hex digits");
    for (size_t i = 0; i < 64; i++)
        CHECK(isdigit((unsigned char)hash[i]) || (hash[i] >= 'a' && hash[i] <= 'f'),
              "hash is lower-case hex");
    apikey_hash_hex(key, hash2);
    CHECK(strcmp(hash, hash2) == 0, "hash is deterministic");

    /* Known answer: SHA-256("abc"). */
    apikey_hash_hex("abc", hash2);
    CHECK(strcmp(hash2, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
          "SHA-256 known answer");

    CHECK(apikey_matches(key, hash), "key matches its hash");
    for (size_t i = 0; i < 64; i++)
        upper[i] = (char)toupper((unsigned char)hash[i]);
    upper[64] = '\0';
    CHECK(apikey_matches(key, upper), "upper-case stored hash matches too");

    /* One changed character in the secret part, and in the id part. */
    strcpy(other, key);
    n = strlen(other);
    other[n - 1] = other[n - 1] == '0' ? '1' : '0';
    CHECK(!apikey_matches(other, hash), "key with one changed secret char does not match");
    strcpy(other, key);
    other[3] = '3'; /* rn_12_ -> rn_32_ */
    CHECK(!apikey_matches(other, hash), "key with one changed id char does not match");

    /* One changed character in the stored hash. */
    strcpy(hash2, hash);
    hash2[10] = hash2[10] == 'a' ? 'b' : 'a';
    CHECK(!apikey_matches(key, hash2), "stored hash with one changed char does not match");

    /* Stored hashes of the wrong shape. */
    strcpy(bad, hash);
    bad[63] = '\0';
    CHECK(!apikey_matches(key, bad), "63-char stored hash refused");
    strcpy(bad, hash);
    strcat(bad, "0");
    CHECK(!apikey_matches(key, bad), "65-char stored hash refused");
    strcpy(bad, hash);
    bad[5] = 'g';
    CHECK(!apikey_matches(key, bad), "non-hex stored hash refused");
    CHECK(!apikey_matches(key, ""), "empty stored hash refused");
    CHECK(!apikey_matches(key, NULL), "NULL stored hash refused");
    CHECK(!apikey_matches(NULL, hash), "NULL key refused");

    /* The hash of a malformed key never matches, even its own hash. */
    apikey_hash_hex("rn_12_abc", hash2);
    CHECK(!apikey_matches("rn_12_abc", hash2), "malformed key never matches");

    apikey_hash_hex(NULL, hash2);
    CHECK(hash2[0] == '\0', "hash of NULL is empty");
}

static void test_malformed(void)
{
    char key[APIKEY_MAX], buf[2 * APIKEY_MAX];
    const char *secret;
    long id = 99;

    CHECK(apikey_generate(5, key, sizeof(key)) == 0, "generate");
    secret = strchr(key + 3, '_') + 1;

    static const char *const bad_fixed[] = {
        "",
        "rn_",
        "rn__",
        "rn_5",
        "rn_5_",
        "5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "RN_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn-5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_x_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_5x_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_-5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_+5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_05_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_0_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn__0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_ 5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_99999999999999999999_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
        "rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF",
        "rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
        "rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        "rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef ",
        "rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef_x",
        "rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
    };
    for (size_t i = 0; i < sizeof(bad_fixed) / sizeof(bad_fixed[0]); i++) {
        id = 99;
        if (apikey_arcade_id(bad_fixed[i], &id) != -1 || id != 99) {
            check_failed++;
            fprintf(stderr, "FAIL malformed key accepted: \"%s\"\n", bad_fixed[i]);
        } else {
            check_passed++;
        }
    }
    CHECK(apikey_arcade_id("rn_5_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                           &id) == 0 &&
              id == 5,
          "well-formed literal key parses");
    CHECK(apikey_arcade_id(NULL, &id) == -1, "NULL key refused");

    /* No prefix, short secret, trailing junk, built from a real key. */
    CHECK(apikey_arcade_id(key + 3, &id) == -1, "key without prefix refused");
    snprintf(buf, sizeof(buf), "rn_5_%.*s", 63, secret);
    CHECK(apikey_arcade_id(buf, &id) == -1, "short secret refused");
    snprintf(buf, sizeof(buf), "%sff", key);
    CHECK(apikey_arcade_id(buf, &id) == -1, "trailing junk refused");
    snprintf(buf, sizeof(buf), "rn_five_%s", secret);
    CHECK(apikey_arcade_id(buf, &id) == -1, "non-numeric id refused");

    /* A very long string is refused without reading past the cap. */
    memset(buf, '1', sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = '\0';
    memcpy(buf, "rn_", 3);
    CHECK(apikey_arcade_id(buf, &id) == -1, "overlong key refused");
}

int main(void)
{
    test_generate();
    test_hash();
    test_malformed();
    return check_report();
}
