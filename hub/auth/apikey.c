/*
 * apikey: cabinet API keys "rn_<arcade id>_<64 hex>" (see apikey.h).
 *
 * The parser accepts only the exact form apikey_generate() writes: a positive
 * decimal id without sign or leading zero, and 64 lower-case hex digits. One
 * arcade id has one spelling, so the id read from a key always names the row
 * whose hash the key was made for.
 */
#include "apikey.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hex.h"

#define APIKEY_PREFIX "rn_"
#define APIKEY_SECRET_BYTES 32
#define APIKEY_SECRET_HEX (APIKEY_SECRET_BYTES * 2)
#define APIKEY_DIGEST_BYTES 32 /* SHA-256 */

int apikey_generate(long arcade_id, char *out, size_t outlen)
{
    unsigned char secret[APIKEY_SECRET_BYTES];
    char hex[APIKEY_SECRET_HEX + 1];
    int n;

    if (out == NULL || outlen == 0 || arcade_id <= 0)
        return -1;
    if (RAND_bytes(secret, sizeof(secret)) != 1)
        return -1;
    hex_encode(secret, sizeof(secret), hex);
    n = snprintf(out, outlen, APIKEY_PREFIX "%ld_%s", arcade_id, hex);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(hex, sizeof(hex));
    if (n < 0 || (size_t)n >= outlen) {
        OPENSSL_cleanse(out, outlen);
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int apikey_arcade_id(const char *key, long *arcade_id)
{
    const char *p, *digits;
    size_t len, ndigits = 0;
    long id = 0;

    if (key == NULL)
        return -1;
    len = strnlen(key, APIKEY_MAX);
    if (len >= APIKEY_MAX || strncmp(key, APIKEY_PREFIX, sizeof(APIKEY_PREFIX) - 1) != 0)
        return -1;
    digits = p = key + sizeof(APIKEY_PREFIX) - 1;
    while (*p >= '0' && *p <= '9') {
        int d = *p - '0';

        if (id > (LONG_MAX - d) / 10)
            return -1;
        id = id * 10 + d;
        p++;
        ndigits++;
    }
    if (ndigits == 0 || digits[0] == '0' || *p != '_')
        return -1;
    p++;
    for (size_t i = 0; i < APIKEY_SECRET_HEX; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return -1; /* also stops at the NUL of a short key */
    }
    if (p[APIKEY_SECRET_HEX] != '\0')
        return -1;
    if (arcade_id != NULL)
        *arcade_id = id;
    return 0;
}

/* SHA-256 of the key's bytes. 0, or -1 (EVP failure). */
static int key_digest(const char *key, unsigned char md[APIKEY_DIGEST_BYTES])
{
    unsigned int mdlen = 0;

    if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != APIKEY_DIGEST_BYTES)
        return -1;
    return 0;
}

/*
 * On failure (NULL key, EVP error) out is the empty string, which
 * apikey_matches() never accepts as a stored hash.
 */
void apikey_hash_hex(const char *key, char out[APIKEY_HASH_HEX])
{
    unsigned char md[APIKEY_DIGEST_BYTES];

    out[0] = '\0';
    if (key == NULL || key_digest(key, md) != 0)
        return;
    hex_encode(md, sizeof(md), out);
}

/*
 * Compares digests, not hex text, so that upper- and lower-case stored hashes
 * both work and the compare is always exactly 32 bytes. Only the key's format
 * and the stored hash's shape (public facts) decide anything before the
 * constant-time compare.
 */
bool apikey_matches(const char *key, const char *stored_hash_hex)
{
    unsigned char md[APIKEY_DIGEST_BYTES], stored[APIKEY_DIGEST_BYTES];
    bool ok;

    if (key == NULL || stored_hash_hex == NULL || apikey_arcade_id(key, NULL) != 0)
        return false;
    if (strnlen(stored_hash_hex, APIKEY_HASH_HEX) != APIKEY_HASH_HEX - 1)
        return false;
    if (hex_decode(stored_hash_hex, APIKEY_DIGEST_BYTES, stored) != 0)
        return false;
    if (key_digest(key, md) != 0)
        return false;
    ok = CRYPTO_memcmp(md, stored, sizeof(md)) == 0;
    OPENSSL_cleanse(md, sizeof(md));
    return ok;
}
