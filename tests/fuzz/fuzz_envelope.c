/*
 * libFuzzer target for protocol/envelope. Besides "no crash, no leak, no UB",
 * it holds the decoder to its contract on every input:
 *   - utf8_valid() agrees with decode's bad_utf8 verdict;
 *   - a decoded body is never nested deeper than the limit, and a too_deep
 *     verdict on valid JSON really was too deep (the pre-scan is exact);
 *   - failures leave the envelope cleared (id echo aside), and a readable id
 *     is in [0, 2^53];
 *   - what decodes re-encodes, and the encoding decodes to the same message.
 * Any broken invariant aborts, so libFuzzer records the input.
 */
#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_BYTES 4096
#define FUZZ_MAX_DEPTH 8
#define FUZZ_HEADROOM 16

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant broken: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Nesting depth of a JSON value: a scalar is 0, {} or [] is 1. */
static int json_depth(const json_t *v)
{
    int max = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach ((json_t *)v, k, child) {
            int d = json_depth(child);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach (v, i, child) {
            int d = json_depth(child);
            if (d > max)
                max = d;
        }
        return max + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const envelope_limits_t lim = {.max_bytes = FUZZ_MAX_BYTES, .max_depth = FUZZ_MAX_DEPTH};
    envelope_t env;

    int rc = envelope_decode(buf, size, &lim, &env);
    bool valid = utf8_valid(buf, size);

    REQUIRE(rc <= ENV_OK && rc >= ENV_EID);
    REQUIRE(envelope_err_code(rc) != NULL);
    REQUIRE((rc == ENV_ETOOBIG) == (size > FUZZ_MAX_BYTES));
    if (size <= FUZZ_MAX_BYTES)
        REQUIRE((rc == ENV_EUTF8) == !valid);
    if (env.has_id)
        REQUIRE(env.id >= 0 && env.id <= (INT64_C(1) << 53));

    if (rc == ENV_EDEPTH) {
        /* jansson nests up to 2048 on its own: if it can parse this, it must
         * really be deeper than our limit. */
        json_t *v = json_loadb(buf, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
        if (v != NULL)
            REQUIRE(json_depth(v) > FUZZ_MAX_DEPTH);
        json_decref(v);
    }

    if (rc != ENV_OK) {
        REQUIRE(env.body == NULL && env.type_name == NULL && env.type == RN_MSG_UNKNOWN);
        /* Only a missing type leaves a readable id behind: every other
         * failure comes before parsing, or finds no object or no valid id. */
        if (rc != ENV_ETYPE)
            REQUIRE(!env.has_id);
        envelope_clear(&env);
        return 0;
    }

    REQUIRE(valid);
    REQUIRE(json_is_object(env.body));
    REQUIRE(json_depth(env.body) <= FUZZ_MAX_DEPTH);
    REQUIRE(env.type_name != NULL);
    REQUIRE(strlen(env.type_name) == json_string_length(json_object_get(env.body, "type")));
    if (env.type != RN_MSG_UNKNOWN)
        REQUIRE(strcmp(envelope_type_name(env.type), env.type_name) == 0);

    char *out = NULL;
    size_t len = 0;
    REQUIRE(envelope_encode(env.body, FUZZ_HEADROOM, &out, &len) == 0);
    REQUIRE(out != NULL && len > 0 && out[FUZZ_HEADROOM + len] == '\0');
    memset(out, 0x5A, FUZZ_HEADROOM); /* the headroom is ours to write */

    /* Encoding may be longer than the input (1e2 becomes 100.0), so the size cap
     * is lifted for the re-decode; depth and everything else must hold as is. */
    const envelope_limits_t relim = {.max_bytes = SIZE_MAX, .max_depth = FUZZ_MAX_DEPTH};
    envelope_t again;
    REQUIRE(envelope_decode(out + FUZZ_HEADROOM, len, &relim, &again) == ENV_OK);
    REQUIRE(again.type == env.type);
    REQUIRE(strcmp(again.type_name, env.type_name) == 0);
    REQUIRE(again.has_id == env.has_id && again.id == env.id);
    REQUIRE(json_equal(again.body, env.body));

    envelope_clear(&again);
    free(out);
    envelope_clear(&env);
    return 0;
}
