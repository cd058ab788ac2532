/*
 * Unit tests for protocol/envelope: decode checks in their documented order,
 * the error each bad frame gets, the id echo, encode with headroom and the
 * reply builders. Every check counts (check.h); the summary line says how
 * many failed, and the exit status is non-zero if any did.
 */
#include "check.h"
#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every check here is its own description. */
#define EXPECT(cond) CHECK((cond), #cond)

/* Decodes a buffer of explicit length; the caller checks then clears env. */
static int dec_n(const char *buf, size_t len, size_t max_bytes, int max_depth, envelope_t *env)
{
    envelope_limits_t lim = {.max_bytes = max_bytes, .max_depth = max_depth};
    return envelope_decode(buf, len, &lim, env);
}

/* Decodes s with default limits, keeps only the verdict. */
static int verdict(const char *s)
{
    envelope_t env;
    int rc = envelope_decode(s, strlen(s), NULL, &env);
    envelope_clear(&env);
    return rc;
}

/* Decodes s with a depth limit, keeps only the verdict. */
static int verdict_depth(const char *s, int max_depth)
{
    envelope_t env;
    int rc = dec_n(s, strlen(s), 0, max_depth, &env);
    envelope_clear(&env);
    return rc;
}

/* true when a failed decode left env cleared, id echo aside. */
static bool cleared(const envelope_t *env)
{
    return env->body == NULL && env->type_name == NULL && env->type == RN_MSG_UNKNOWN;
}

/* Encodes msg with no headroom and compares with the expected text. */
static bool encodes_as(json_t *msg, const char *expect)
{
    char *buf;
    size_t len;
    bool ok = msg != NULL && envelope_encode(msg, 0, &buf, &len) == 0;
    if (ok) {
        ok = len == strlen(expect) && memcmp(buf, expect, len) == 0;
        if (!ok)
            fprintf(stderr, "  got %.*s\n  expected %s\n", (int)len, buf, expect);
        free(buf);
    }
    json_decref(msg);
    return ok;
}

static void test_every_type(void)
{
    static const struct {
        const char *frame;
        rn_msg_type_t type;
        const char *name;
    } cases[] = {
        {"{\"type\":\"auth\",\"id\":1,\"token\":\"t\"}", RN_MSG_AUTH, "auth"},
        {"{\"type\":\"ping\",\"id\":2}", RN_MSG_PING, "ping"},
        {"{\"type\":\"subscribe\",\"id\":3,\"ch\":\"arcade:3\"}", RN_MSG_SUBSCRIBE, "subscribe"},
        {"{\"id\":4,\"type\":\"unsubscribe\",\"ch\":\"arcade:3\"}", RN_MSG_UNSUBSCRIBE,
         "unsubscribe"},
        {"{\"type\":\"resume\",\"id\":5,\"since\":41}", RN_MSG_RESUME, "resume"},
        {"{\"type\":\"ack\",\"id\":6,\"event_id\":42}", RN_MSG_ACK, "ack"},
        {"{\"type\":\"unlock\",\"id\":7,\"code\":\"123456\"}", RN_MSG_UNLOCK, "unlock"},
        {"{\"type\":\"game_started\",\"id\":8,\"reservation_id\":9}", RN_MSG_GAME_STARTED,
         "game_started"},
        {"{\"type\":\"game_over\",\"id\":9,\"reservation_id\":9,\"scores\":[{\"player\":1,"
         "\"score\":1200}]}",
         RN_MSG_GAME_OVER, "game_over"},
        {" \n{\"type\":\"status\",\"id\":10,\"state\":\"idle\"}\r\n\t", RN_MSG_STATUS, "status"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        envelope_t env;
        EXPECT(envelope_decode(cases[i].frame, strlen(cases[i].frame), NULL, &env) == ENV_OK);
        EXPECT(env.type == cases[i].type);
        EXPECT(env.type_name != NULL && strcmp(env.type_name, cases[i].name) == 0);
        EXPECT(env.has_id && env.id == (int64_t)i + 1);
        EXPECT(json_is_object(env.body));
        EXPECT(envelope_type_name(cases[i].type) != NULL &&
               strcmp(envelope_type_name(cases[i].type), cases[i].name) == 0);
        envelope_clear(&env);
        EXPECT(env.body == NULL && !env.has_id);
    }
    EXPECT(envelope_type_name(RN_MSG_UNKNOWN) == NULL);
    EXPECT(envelope_type_name((rn_msg_type_t)999) == NULL);
}

static void test_id(void)
{
    envelope_t env;
    const char *s = "{\"type\":\"ping\"}";
    EXPECT(envelope_decode(s, strlen(s), NULL, &env) == ENV_OK);
    EXPECT(!env.has_id && env.id == 0);
    envelope_clear(&env);

    s = "{\"type\":\"ping\",\"id\":0}";
    EXPECT(envelope_decode(s, strlen(s), NULL, &env) == ENV_OK);
    EXPECT(env.has_id && env.id == 0);
    envelope_clear(&env);

    s = "{\"type\":\"ping\",\"id\":9007199254740992}"; /* 2^53: the largest allowed */
    EXPECT(envelope_decode(s, strlen(s), NULL, &env) == ENV_OK);
    EXPECT(env.has_id && env.id == (INT64_C(1) << 53));
    envelope_clear(&env);

    static const char *bad[] = {
        "{\"type\":\"ping\",\"id\":-1}",
        "{\"type\":\"ping\",\"id\":1.5}",
        "{\"type\":\"ping\",\"id\":1.0}",
        "{\"type\":\"ping\",\"id\":1e3}",
        "{\"type\":\"ping\",\"id\":\"7\"}",
        "{\"type\":\"ping\",\"id\":9007199254740993}",
        "{\"type\":\"ping\",\"id\":9223372036854775807}",
        "{\"type\":\"ping\",\"id\":true}",
        "{\"type\":\"ping\",\"id\":null}",
        "{\"type\":\"ping\",\"id\":[1]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EXPECT(envelope_decode(bad[i], strlen(bad[i]), NULL, &env) == ENV_EID);
        EXPECT(cleared(&env) && !env.has_id);
        envelope_clear(&env);
    }

    /* Beyond int64 the parser itself refuses the number. */
    EXPECT(verdict("{\"type\":\"ping\",\"id\":100000000000000000000}") == ENV_EJSON);

    /* A readable id is echoed even when the frame fails after parsing. */
    s = "{\"id\":12}";
    EXPECT(envelope_decode(s, strlen(s), NULL, &env) == ENV_ETYPE);
    EXPECT(cleared(&env) && env.has_id && env.id == 12);
    envelope_clear(&env);
    s = "{\"id\":13,\"type\":5}";
    EXPECT(envelope_decode(s, strlen(s), NULL, &env) == ENV_ETYPE);
    EXPECT(cleared(&env) && env.has_id && env.id == 13);
    envelope_clear(&env);
    /* type is judged before id; an unreadable id is not echoed. */
    s = "{\"id\":-4}";
    EXPECT(envelope_decode(s, strlen(s), NULL, &env) == ENV_ETYPE);
    EXPECT(cleared(&env) && !env.has_id);
    envelope_clear(&env);
}

/* {"type":"ping","p":"xxx..."} padded to exactly n bytes (n >= 24). */
static char *frame_of_size(size_t n)
{
    const char *head = "{\"type\":\"ping\",\"p\":\"";
    size_t hl = strlen(head);
    char *f = malloc(n);
    memcpy(f, head, hl);
    memset(f + hl, 'x', n - hl - 2);
    f[n - 2] = '"';
    f[n - 1] = '}';
    return f;
}

static void test_size(void)
{
    envelope_t env;
    char *f = frame_of_size(100);
    EXPECT(dec_n(f, 100, 100, 0, &env) == ENV_OK);
    EXPECT(env.type == RN_MSG_PING);
    envelope_clear(&env);
    EXPECT(dec_n(f, 100, 99, 0, &env) == ENV_ETOOBIG);
    EXPECT(cleared(&env) && !env.has_id);
    free(f);

    /* Default cap: 16 KiB. */
    f = frame_of_size(16384);
    EXPECT(envelope_decode(f, 16384, NULL, &env) == ENV_OK);
    envelope_clear(&env);
    free(f);
    f = frame_of_size(16385);
    EXPECT(envelope_decode(f, 16385, NULL, &env) == ENV_ETOOBIG);
    free(f);

    /* Size comes first: an oversized frame is too_big whatever else is wrong. */
    char junk[64];
    memset(junk, 0xff, sizeof junk);
    EXPECT(dec_n(junk, sizeof junk, 63, 0, &env) == ENV_ETOOBIG);
    EXPECT(dec_n(junk, sizeof junk, 64, 0, &env) == ENV_EUTF8);
}

static void test_utf8(void)
{
    static const char *bad[] = {
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong, C1 lead */
        "\xe0\x80\xaf",     /* overlong, 3 bytes */
        "\xf0\x80\x80\xaf", /* overlong, 4 bytes */
        "\xed\xa0\x80",     /* U+D800 */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xe2\x82",         /* truncated euro sign */
        "\xf0\x9f\x98",     /* truncated emoji */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* lead byte beyond the range */
        "\x80",             /* lone continuation */
        "\xbf",             /* lone continuation */
        "\xe2\x28\xa1",     /* bad second byte */
        "\xe2\x82\x28",     /* bad third byte */
        "\xff",
        "\xfe",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EXPECT(!utf8_valid(bad[i], strlen(bad[i])));
        char frame[64];
        int n = snprintf(frame, sizeof frame, "{\"type\":\"ping\",\"s\":\"%s\"}", bad[i]);
        envelope_t env;
        EXPECT(dec_n(frame, (size_t)n, 0, 0, &env) == ENV_EUTF8);
        EXPECT(cleared(&env));
        /* Also where the ASCII fast path has to stop mid-word. */
        n = snprintf(frame, sizeof frame, "{\"type\":\"ping\",\"sss\":\"abcdefghij%sxyz\"}",
                     bad[i]);
        EXPECT(dec_n(frame, (size_t)n, 0, 0, &env) == ENV_EUTF8);
    }
    /* A truncated sequence at the very end of the buffer. */
    EXPECT(!utf8_valid("abcdefgh\xe2\x82", 10));
    EXPECT(!utf8_valid("\xc3", 1));

    static const char *good[] = {
        "\xc3\xa9",         /* é */
        "\xe2\x82\xac",     /* € */
        "\xf0\x9f\x98\x80", /* 😀 */
        "\xc2\x80",         /* U+0080 */
        "\xed\x9f\xbf",     /* U+D7FF */
        "\xee\x80\x80",     /* U+E000 */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF */
        "plain ascii, longer than eight bytes",
        "",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        EXPECT(utf8_valid(good[i], strlen(good[i])));
        char frame[96];
        int n = snprintf(frame, sizeof frame, "{\"type\":\"ping\",\"s\":\"%s\"}", good[i]);
        envelope_t env;
        EXPECT(dec_n(frame, (size_t)n, 0, 0, &env) == ENV_OK);
        json_t *s = json_object_get(env.body, "s");
        EXPECT(json_is_string(s) && strcmp(json_string_value(s), good[i]) == 0);
        envelope_clear(&env);
    }
    EXPECT(utf8_valid(NULL, 0));

    /* U+0000 is well-formed UTF-8 (no 1007 for it), but raw it is not JSON,
     * and escaped it is refused so that strings stay C strings. */
    EXPECT(utf8_valid("a\0b", 3));
    const char nul_in_string[] = "{\"type\":\"ping\",\"s\":\"a\0b\"}";
    EXPECT(dec_n(nul_in_string, sizeof nul_in_string - 1, 0, 0, &(envelope_t){0}) == ENV_EJSON);
    const char nul_after[] = "{\"type\":\"ping\"}\0";
    EXPECT(dec_n(nul_after, sizeof nul_after - 1, 0, 0, &(envelope_t){0}) == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\",\"s\":\"a\\u0000b\"}") == ENV_EJSON);
    /* Escaped lone surrogates cannot sneak invalid UTF-8 into a string. */
    EXPECT(verdict("{\"type\":\"ping\",\"s\":\"\\ud800\"}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\",\"s\":\"\\ud83d\\ude00\"}") == ENV_OK);

    /* UTF-8 is judged before depth. */
    EXPECT(verdict_depth("{\"a\":[[[[[[\"\xc0\xaf\"]]]]]]}", 2) == ENV_EUTF8);
}

static void test_depth(void)
{
    /* max 4: exactly four levels pass, five fail. */
    EXPECT(verdict_depth("{\"type\":\"ping\",\"a\":{\"b\":{\"c\":{}}}}", 4) == ENV_OK);
    EXPECT(verdict_depth("{\"type\":\"ping\",\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", 4) == ENV_EDEPTH);
    EXPECT(verdict_depth("{\"type\":\"ping\",\"a\":[[[1]]]}", 4) == ENV_OK);
    EXPECT(verdict_depth("{\"type\":\"ping\",\"a\":[[[[1]]]]}", 4) == ENV_EDEPTH);
    /* Depth is nesting, not a count: siblings do not add up. */
    EXPECT(verdict_depth("{\"type\":\"ping\",\"a\":[[1],[2],[3],[4],[5]],\"b\":{\"c\":[]}}", 3) ==
           ENV_OK);
    /* Brackets inside strings do not count, nor do those behind escaped quotes. */
    EXPECT(verdict_depth("{\"type\":\"ping\",\"s\":\"[[[[{{{{]]}}\"}", 1) == ENV_OK);
    EXPECT(verdict_depth("{\"type\":\"ping\",\"s\":\"\\\"[[[[\\\"{{\"}", 1) == ENV_OK);
    EXPECT(verdict_depth("{\"type\":\"ping\",\"[[[\":\"}}}\"}", 1) == ENV_OK);
    /* An escaped backslash does not escape the closing quote after it. */
    EXPECT(verdict_depth("{\"type\":\"ping\",\"s\":\"a\\\\\",\"b\":[1]}", 1) == ENV_EDEPTH);
    EXPECT(verdict_depth("{\"type\":\"ping\",\"s\":\"a\\\\\",\"b\":[1]}", 2) == ENV_OK);

    /* Default: 16. */
    char deep[128];
    size_t n = 0;
    for (int i = 0; i < 15; i++)
        deep[n++] = '[';
    n += (size_t)sprintf(deep + n, "%s", "{\"type\":\"ping\"}");
    for (int i = 0; i < 15; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    EXPECT(verdict(deep) == ENV_ENOTOBJ); /* 16 deep: parsed, then not an object */
    memmove(deep + 1, deep, n + 1);
    deep[0] = '[';
    deep[n + 1] = ']';
    deep[n + 2] = '\0';
    EXPECT(verdict(deep) == ENV_EDEPTH); /* 17 deep */
    EXPECT(verdict_depth(deep, 17) == ENV_ENOTOBJ);

    /* A depth failure comes before parsing: no id to echo. */
    envelope_t env;
    const char *s = "{\"id\":3,\"type\":\"ping\",\"a\":[[1]]}";
    EXPECT(dec_n(s, strlen(s), 0, 2, &env) == ENV_EDEPTH);
    EXPECT(cleared(&env) && !env.has_id);
}

static void test_structure(void)
{
    EXPECT(verdict("{\"type\":\"ping\",\"type\":\"auth\"}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\",\"a\":{\"x\":1,\"x\":2}}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\",\"a\":{\"x\":1},\"b\":{\"x\":2}}") == ENV_OK);

    EXPECT(verdict("[{\"type\":\"ping\"}]") == ENV_ENOTOBJ);
    EXPECT(verdict("[]") == ENV_ENOTOBJ);
    EXPECT(verdict("42") == ENV_ENOTOBJ);
    EXPECT(verdict("-1.5e3") == ENV_ENOTOBJ);
    EXPECT(verdict("\"ping\"") == ENV_ENOTOBJ);
    EXPECT(verdict("null") == ENV_ENOTOBJ);
    EXPECT(verdict("true") == ENV_ENOTOBJ);

    EXPECT(verdict("{}") == ENV_ETYPE);
    EXPECT(verdict("{\"id\":1,\"kind\":\"ping\"}") == ENV_ETYPE);
    EXPECT(verdict("{\"type\":null}") == ENV_ETYPE);
    EXPECT(verdict("{\"type\":1}") == ENV_ETYPE);
    EXPECT(verdict("{\"type\":[\"ping\"]}") == ENV_ETYPE);
    EXPECT(verdict("{\"type\":{\"name\":\"ping\"}}") == ENV_ETYPE);

    EXPECT(verdict("{\"type\":\"ping\"} x") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\"}{}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\"},") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\"}}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\"} \r\n\t") == ENV_OK);
    EXPECT(verdict("") == ENV_EJSON);
    EXPECT(verdict("   ") == ENV_EJSON);
    EXPECT(verdict("{\"type\":") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\"") == ENV_EJSON);
    EXPECT(verdict("{type:\"ping\"}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\",}") == ENV_EJSON);
    EXPECT(verdict("{'type':'ping'}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\",\"n\":NaN}") == ENV_EJSON);
    EXPECT(verdict("{\"type\":\"ping\",\"n\":1e400}") == ENV_EJSON);
    EXPECT(dec_n(NULL, 0, 0, 0, &(envelope_t){0}) == ENV_EJSON);
}

static void test_unknown_type(void)
{
    static const char *names[] = {"launch_missiles", "pin", "pings", "PING", "", "ping "};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char frame[96];
        int n = snprintf(frame, sizeof frame, "{\"id\":5,\"type\":\"%s\"}", names[i]);
        envelope_t env;
        EXPECT(dec_n(frame, (size_t)n, 0, 0, &env) == ENV_OK);
        EXPECT(env.type == RN_MSG_UNKNOWN);
        EXPECT(env.type_name != NULL && strcmp(env.type_name, names[i]) == 0);
        EXPECT(env.has_id && env.id == 5 && env.body != NULL);
        envelope_clear(&env);
    }
}

static void test_encode(void)
{
    const char *s =
        "{\"id\":31, \"type\":\"game_over\", \"reservation_id\":7,"
        " \"scores\":[{\"player\":\"demo-alice\",\"score\":1200},"
        "{\"player\":\"demo-bob\",\"score\":900}], \"note\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}";
    const char *compact = "{\"id\":31,\"type\":\"game_over\",\"reservation_id\":7,"
                          "\"scores\":[{\"player\":\"demo-alice\",\"score\":1200},"
                          "{\"player\":\"demo-bob\",\"score\":900}],\"note\":\"caf\xc3\xa9 "
                          "\xf0\x9f\x98\x80\"}";
    envelope_t env;
    EXPECT(envelope_decode(s, strlen(s), NULL, &env) == ENV_OK);

    char *buf = NULL;
    size_t len = 0;
    EXPECT(envelope_encode(env.body, 16, &buf, &len) == 0);
    EXPECT(buf != NULL && len == strlen(compact));
    if (buf != NULL) {
        EXPECT(memcmp(buf + 16, compact, strlen(compact)) == 0);
        EXPECT(buf[16 + len] == '\0');
        /* The headroom is the caller's: writing it (as lws does) leaves the JSON intact. */
        memset(buf, 0xA5, 16);
        EXPECT(memcmp(buf + 16, compact, len) == 0);

        envelope_t again;
        EXPECT(envelope_decode(buf + 16, len, NULL, &again) == ENV_OK);
        EXPECT(again.type == RN_MSG_GAME_OVER && again.has_id && again.id == 31);
        EXPECT(json_equal(again.body, env.body));
        envelope_clear(&again);
        free(buf);
    }
    envelope_clear(&env);

    /* No headroom. */
    json_t *o = json_pack("{s:s}", "type", "pong");
    EXPECT(envelope_encode(o, 0, &buf, &len) == 0);
    EXPECT(len == 15 && memcmp(buf, "{\"type\":\"pong\"}", 15) == 0);
    free(buf);
    json_decref(o);

    /* Larger than the first buffer, many times over: the same bytes as json_dumps. */
    for (size_t size = 100; size <= 200000; size *= 7) {
        char *pad = malloc(size + 1);
        memset(pad, 'x', size);
        pad[size] = '\0';
        o = json_pack("{s:s, s:[i, i, {s:b}], s:s}", "type", "queue", "n", 1, 2, "ok", 1, "pad",
                      pad);
        char *want = json_dumps(o, JSON_COMPACT);
        EXPECT(want != NULL && envelope_encode(o, 16, &buf, &len) == 0);
        EXPECT(buf != NULL && len == strlen(want) && memcmp(buf + 16, want, len) == 0 &&
               buf[16 + len] == '\0');
        free(buf);
        free(want);
        free(pad);
        json_decref(o);
    }

    /* A scalar is not a message. */
    o = json_integer(3);
    buf = (char *)1;
    EXPECT(envelope_encode(o, 16, &buf, &len) == -1);
    EXPECT(buf == NULL && len == 0);
    json_decref(o);
    EXPECT(envelope_encode(NULL, 16, &buf, &len) == -1);
}

static void test_builders(void)
{
    EXPECT(encodes_as(envelope_ok(true, 7), "{\"id\":7,\"type\":\"ok\"}"));
    EXPECT(encodes_as(envelope_ok(true, 0), "{\"id\":0,\"type\":\"ok\"}"));
    EXPECT(encodes_as(envelope_ok(false, 7), "{\"type\":\"ok\"}"));
    EXPECT(encodes_as(envelope_ok(true, INT64_C(1) << 53),
                      "{\"id\":9007199254740992,\"type\":\"ok\"}"));

    /* The ok reply is the base that handlers add their fields to. */
    json_t *ok = envelope_ok(true, 1);
    json_object_set_new(ok, "uid", json_string("demo-alice"));
    json_object_set_new(ok, "role", json_string("player"));
    EXPECT(encodes_as(ok, "{\"id\":1,\"type\":\"ok\",\"uid\":\"demo-alice\",\"role\":\"player\"}"));

    EXPECT(
        encodes_as(envelope_error(true, 7, "bad_code", "wrong unlock code"),
                   "{\"id\":7,\"type\":\"error\",\"code\":\"bad_code\",\"message\":\"wrong unlock "
                   "code\"}"));
    EXPECT(encodes_as(envelope_error(false, 0, "bad_json", "not JSON"),
                      "{\"type\":\"error\",\"code\":\"bad_json\",\"message\":\"not JSON\"}"));
    EXPECT(encodes_as(envelope_error(true, 2, "unknown_type", NULL),
                      "{\"id\":2,\"type\":\"error\",\"code\":\"unknown_type\"}"));
    EXPECT(encodes_as(envelope_error(true, 2, "x", "quote \" and \\ and \xc3\xa9"),
                      "{\"id\":2,\"type\":\"error\",\"code\":\"x\",\"message\":\"quote \\\" and "
                      "\\\\ and \xc3\xa9\"}"));
    /* Strings jansson refuses (NULL, invalid UTF-8) give NULL, not a half reply. */
    EXPECT(envelope_error(true, 2, NULL, "m") == NULL);
    EXPECT(envelope_error(true, 2, "x", "\xc0\xaf") == NULL);

    /* The failing decode's echo feeds the error reply directly. */
    envelope_t env;
    const char *s = "{\"id\":44,\"type\":17}";
    int rc = envelope_decode(s, strlen(s), NULL, &env);
    EXPECT(encodes_as(envelope_error(env.has_id, env.id, envelope_err_code(rc), "type"),
                      "{\"id\":44,\"type\":\"error\",\"code\":\"no_type\",\"message\":\"type\"}"));
}

static void test_err_codes(void)
{
    EXPECT(strcmp(envelope_err_code(ENV_OK), "ok") == 0);
    EXPECT(strcmp(envelope_err_code(ENV_ETOOBIG), "too_big") == 0);
    EXPECT(strcmp(envelope_err_code(ENV_EUTF8), "bad_utf8") == 0);
    EXPECT(strcmp(envelope_err_code(ENV_EJSON), "bad_json") == 0);
    EXPECT(strcmp(envelope_err_code(ENV_EDEPTH), "too_deep") == 0);
    EXPECT(strcmp(envelope_err_code(ENV_ENOTOBJ), "not_object") == 0);
    EXPECT(strcmp(envelope_err_code(ENV_ETYPE), "no_type") == 0);
    EXPECT(strcmp(envelope_err_code(ENV_EID), "bad_id") == 0);
    EXPECT(strcmp(envelope_err_code(-99), "bad_request") == 0);
    EXPECT(strcmp(envelope_err_code(1), "bad_request") == 0);
}

static void test_clear(void)
{
    envelope_t env = {0};
    envelope_clear(&env);
    envelope_clear(&env);
    envelope_clear(NULL);
    EXPECT(env.body == NULL);
}

int main(void)
{
    test_every_type();
    test_id();
    test_size();
    test_utf8();
    test_depth();
    test_structure();
    test_unknown_type();
    test_encode();
    test_builders();
    test_err_codes();
    test_clear();

    return check_report();
}
