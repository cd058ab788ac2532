/*
 * envelope: protocol v1 frame codec. See envelope.h for the contract and
 * PROTOCOL.md for the wire format.
 *
 * Every inbound frame passes here, so the checks run cheapest first and each
 * one bounds the cost of the next: the size cap bounds all the scans, UTF-8 is
 * checked by us so that a bad frame gets 1007 rather than a parser message, and
 * the depth pre-scan keeps jansson's recursive parser (its own limit is 2048)
 * from ever descending further than we allow.
 */
#include "envelope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ENV_DEFAULT_MAX_BYTES 16384
#define ENV_DEFAULT_MAX_DEPTH 16
#define ENV_MAX_ID ((json_int_t)1 << 53) /* largest integer a JS number holds exactly */

/* Indexed by rn_msg_type_t; lengths kept so that lookup never runs strcmp. */
static const struct {
    const char *name;
    size_t len;
} msg_types[] = {
    [RN_MSG_UNKNOWN] = {NULL, 0},
    [RN_MSG_AUTH] = {"auth", 4},
    [RN_MSG_PING] = {"ping", 4},
    [RN_MSG_SUBSCRIBE] = {"subscribe", 9},
    [RN_MSG_UNSUBSCRIBE] = {"unsubscribe", 11},
    [RN_MSG_RESUME] = {"resume", 6},
    [RN_MSG_ACK] = {"ack", 3},
    [RN_MSG_UNLOCK] = {"unlock", 6},
    [RN_MSG_GAME_STARTED] = {"game_started", 12},
    [RN_MSG_GAME_OVER] = {"game_over", 9},
    [RN_MSG_STATUS] = {"status", 6},
};
#define MSG_TYPE_COUNT (sizeof(msg_types) / sizeof(msg_types[0]))

/*
 * Well-formed UTF-8 per Unicode table 3-7. U+0000 is well-formed and accepted
 * here (RFC 6455 would not let us close 1007 for it); a raw NUL is never valid
 * JSON, so the parser rejects it as bad_json instead.
 */
bool utf8_valid(const char *str, size_t n)
{
    if (n == 0)
        return true; /* str may be NULL: NULL + 0 is undefined in C */
    const unsigned char *s = (const unsigned char *)str;
    const unsigned char *end = s + n;

    while (s < end) {
        /* Most frames are ASCII: skip eight bytes at a time while no high bit is set. */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, sizeof w);
            if (w & UINT64_C(0x8080808080808080))
                break;
            s += 8;
        }
        if (s == end)
            break;

        unsigned char c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }

        /* lo..hi bound the second byte: that is where overlongs, surrogates and
         * code points above U+10FFFF show up. Later bytes are plain 80..BF. */
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* U+D800..DFFF */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* > U+10FFFF */
        } else {
            return false; /* continuation byte, C0/C1 overlong lead, F5..FF */
        }

        if ((size_t)(end - s) <= need)
            return false; /* truncated */
        if (s[1] < lo || s[1] > hi)
            return false;
        for (size_t i = 2; i <= need; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
        }
        s += need + 1;
    }
    return true;
}

/*
 * true when [ and { nest deeper than max_depth outside strings. Exact for
 * valid JSON; for invalid JSON the verdict does not matter, the parser
 * rejects it anyway. Bytes of multi-byte UTF-8 are all >= 0x80, so a byte scan
 * never mistakes part of a character for a quote or a bracket.
 */
static bool too_deep(const char *buf, size_t len, int max_depth)
{
    int depth = 0;
    bool in_string = false;

    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped byte can be neither quote nor terminator */
            else if (c == '"')
                in_string = false;
            continue;
        }
        switch (c) {
        case '"':
            in_string = true;
            break;
        case '[':
        case '{':
            if (++depth > max_depth)
                return true;
            break;
        case ']':
        case '}':
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
    }
    return false;
}

static rn_msg_type_t lookup_type(const char *name, size_t len)
{
    for (size_t t = 1; t < MSG_TYPE_COUNT; t++) {
        if (msg_types[t].len == len && memcmp(msg_types[t].name, name, len) == 0)
            return (rn_msg_type_t)t;
    }
    return RN_MSG_UNKNOWN;
}

int envelope_decode(const char *buf, size_t len, const envelope_limits_t *limits, envelope_t *out)
{
    size_t max_bytes = ENV_DEFAULT_MAX_BYTES;
    int max_depth = ENV_DEFAULT_MAX_DEPTH;
    if (limits != NULL) {
        if (limits->max_bytes > 0)
            max_bytes = limits->max_bytes;
        if (limits->max_depth > 0)
            max_depth = limits->max_depth;
    }

    memset(out, 0, sizeof *out);

    if (len > max_bytes)
        return ENV_ETOOBIG;
    if (!utf8_valid(buf, len))
        return ENV_EUTF8;
    if (too_deep(buf, len, max_depth))
        return ENV_EDEPTH;

    /* No JSON_DISABLE_EOF_CHECK: trailing bytes after the object are an error.
     * JSON_DECODE_ANY so that a bare scalar is reported as not_object. "\u0000"
     * stays rejected (no JSON_ALLOW_NUL): every string is a safe C string. */
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL)
        return ENV_EJSON;
    if (!json_is_object(root)) {
        json_decref(root);
        return ENV_ENOTOBJ;
    }

    /* Read id before judging type, so that a reply to a bad type can echo it. */
    int id_err = ENV_OK;
    json_t *id = json_object_get(root, "id");
    if (id != NULL) {
        json_int_t v = json_is_integer(id) ? json_integer_value(id) : -1;
        if (v >= 0 && v <= ENV_MAX_ID) {
            out->has_id = true;
            out->id = (int64_t)v;
        } else {
            id_err = ENV_EID;
        }
    }

    json_t *type = json_object_get(root, "type");
    if (!json_is_string(type)) {
        json_decref(root);
        return ENV_ETYPE;
    }
    if (id_err != ENV_OK) {
        json_decref(root);
        return id_err;
    }

    out->type_name = json_string_value(type);
    out->type = lookup_type(out->type_name, json_string_length(type));
    out->body = root;
    return ENV_OK;
}

void envelope_clear(envelope_t *env)
{
    if (env == NULL)
        return;
    json_decref(env->body);
    memset(env, 0, sizeof *env);
}

const char *envelope_err_code(int err)
{
    switch (err) {
    case ENV_OK:
        return "ok";
    case ENV_ETOOBIG:
        return "too_big";
    case ENV_EUTF8:
        return "bad_utf8";
    case ENV_EJSON:
        return "bad_json";
    case ENV_EDEPTH:
        return "too_deep";
    case ENV_ENOTOBJ:
        return "not_object";
    case ENV_ETYPE:
        return "no_type";
    case ENV_EID:
        return "bad_id";
    default:
        return "bad_request";
    }
}

const char *envelope_type_name(rn_msg_type_t type)
{
    if ((size_t)type >= MSG_TYPE_COUNT)
        return NULL;
    return msg_types[type].name;
}

/* The growing buffer envelope_encode() dumps into: headroom, then the JSON so far. */
typedef struct dump_buf {
    char *p;
    size_t used, cap; /* used counts the headroom */
} dump_buf_t;

#define DUMP_FIRST 512

/* json_dump_callback's writer: appends, doubling the buffer (keeping room for the NUL). */
static int dump_append(const char *chunk, size_t size, void *data)
{
    dump_buf_t *d = data;
    if (size > SIZE_MAX / 4 || d->used > SIZE_MAX / 4)
        return -1;
    if (d->used + size + 1 > d->cap) {
        size_t cap = d->cap;
        while (d->used + size + 1 > cap)
            cap *= 2;
        char *p = realloc(d->p, cap);
        if (p == NULL)
            return -1;
        d->p = p;
        d->cap = cap;
    }
    memcpy(d->p + d->used, chunk, size);
    d->used += size;
    return 0;
}

int envelope_encode(const json_t *msg, size_t headroom, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;

    /*
     * One pass into a buffer that grows: json_dumpb(NULL) to measure first
     * and then again to write formatted every message twice (a third of the
     * hub's instructions per REST request went to encoding JSON).
     */
    if (headroom > SIZE_MAX / 4)
        return -1;
    dump_buf_t d = {malloc(headroom + DUMP_FIRST), headroom, headroom + DUMP_FIRST};
    if (d.p == NULL)
        return -1;
    if (json_dump_callback(msg, dump_append, &d, JSON_COMPACT) != 0 || d.used == headroom) {
        free(d.p);
        return -1;
    }
    d.p[d.used] = '\0';
    if (d.cap - d.used > DUMP_FIRST) { /* give back what the last doubling left over */
        char *p = realloc(d.p, d.used + 1);
        if (p != NULL)
            d.p = p;
    }
    *buf = d.p;
    *len = d.used - headroom;
    return 0;
}

/* Starts a reply: {"id":id,"type":type} (id first, as clients read it first). */
static json_t *reply_new(bool has_id, int64_t id, const char *type)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    if (has_id && json_object_set_new(o, "id", json_integer((json_int_t)id)) != 0)
        goto fail;
    if (json_object_set_new(o, "type", json_string(type)) != 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

json_t *envelope_ok(bool has_id, int64_t id)
{
    return reply_new(has_id, id, "ok");
}

json_t *envelope_error(bool has_id, int64_t id, const char *code, const char *message)
{
    json_t *o = reply_new(has_id, id, "error");
    if (o == NULL)
        return NULL;
    if (json_object_set_new(o, "code", json_string(code)) != 0)
        goto fail;
    if (message != NULL && json_object_set_new(o, "message", json_string(message)) != 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}
