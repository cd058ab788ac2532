/*
 * apikey: cabinet API keys.
 *
 * A key is "rn_<arcade id>_<64 hex digits>": 32 bytes from the CSPRNG after
 * the arcade id, so the hub can find the arcade row and then compare the
 * SHA-256 of the whole key against the stored hash in constant time
 * (CRYPTO_memcmp). The key itself is shown once and never stored.
 */
#ifndef RN_APIKEY_H
#define RN_APIKEY_H

#include <stdbool.h>
#include <stddef.h>

#define APIKEY_MAX 96      /* bytes, including the NUL */
#define APIKEY_HASH_HEX 65 /* 64 hex digits + NUL */

/* Writes a fresh key for arcade_id into out. 0, or -1 (CSPRNG failure, small buffer). */
int apikey_generate(long arcade_id, char *out, size_t outlen);

/* Reads the arcade id out of a key. 0, or -1 when the key is malformed. */
int apikey_arcade_id(const char *key, long *arcade_id);

/* Lower-case hex SHA-256 of key. */
void apikey_hash_hex(const char *key, char out[APIKEY_HASH_HEX]);

/* Constant-time: does key hash to stored_hash_hex? */
bool apikey_matches(const char *key, const char *stored_hash_hex);

#endif
