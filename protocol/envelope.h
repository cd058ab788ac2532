/*
 * envelope: the WebSocket protocol v1 message codec (subprotocol
 * "retronova.v1"; see PROTOCOL.md). One UTF-8 JSON object per text frame.
 *
 * Knows nothing of sockets: it turns bytes into a checked message and a JSON
 * value into bytes. Decoding enforces the size cap before anything else, then
 * UTF-8 validity, then a nesting depth cap, then parses with an explicit length
 * and duplicate keys rejected. Strings in a decoded body never hold U+0000
 * ("\u0000" is bad_json), so each is also a safe C string.
 */
#ifndef RN_ENVELOPE_H
#define RN_ENVELOPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Client -> server message types. RN_MSG_UNKNOWN: well-formed, type not known. */
typedef enum rn_msg_type {
    RN_MSG_UNKNOWN = 0,
    RN_MSG_AUTH,
    RN_MSG_PING,
    RN_MSG_SUBSCRIBE,
    RN_MSG_UNSUBSCRIBE,
    RN_MSG_RESUME,
    RN_MSG_ACK,
    RN_MSG_UNLOCK,
    RN_MSG_GAME_STARTED,
    RN_MSG_GAME_OVER,
    RN_MSG_STATUS,
} rn_msg_type_t;

/* Decode failures (negative); envelope_err_code() names each for the wire. */
enum {
    ENV_OK = 0,
    ENV_ETOOBIG = -1, /* over limits.max_bytes: close 1009 */
    ENV_EUTF8 = -2,   /* not UTF-8: close 1007 */
    ENV_EJSON = -3,   /* not JSON */
    ENV_EDEPTH = -4,  /* nested deeper than limits.max_depth */
    ENV_ENOTOBJ = -5, /* not a JSON object */
    ENV_ETYPE = -6,   /* "type" missing or not a string */
    ENV_EID = -7,     /* "id" present but not an integer in [0, 2^53] */
};

typedef struct envelope_limits {
    size_t max_bytes; /* default 16384 when 0 */
    int max_depth;    /* default 16 when 0 */
} envelope_limits_t;

typedef struct envelope {
    rn_msg_type_t type;
    const char *type_name; /* points into body; valid while body lives */
    bool has_id;
    int64_t id;
    json_t *body; /* the whole object; owned, released by envelope_clear() */
} envelope_t;

/*
 * Decodes one frame. ENV_OK fills out (the caller calls envelope_clear); any
 * other return leaves out cleared. When the frame had a readable integer "id",
 * out->has_id/out->id are set even on failure, so the error reply can echo it.
 */
int envelope_decode(const char *buf, size_t len, const envelope_limits_t *limits, envelope_t *out);
void envelope_clear(envelope_t *env);

/* Wire code of a decode failure: "too_big", "bad_utf8", "bad_json", ...;
 * "ok" for ENV_OK and "bad_request" for anything else. Never NULL. */
const char *envelope_err_code(int err);
/* Name of a message type ("subscribe"), or NULL for RN_MSG_UNKNOWN. */
const char *envelope_type_name(rn_msg_type_t type);

/* true when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const char *s, size_t n);

/*
 * Serialises msg compactly into a fresh malloc'd buffer with `headroom` unused
 * bytes in front (LWS_PRE for the socket layer). On success *buf is the
 * allocation, the JSON starts at *buf + headroom and is *len bytes long,
 * followed by a NUL not counted in *len (for logs). msg must be an object or
 * an array. 0, or -1 (then *buf is NULL).
 */
int envelope_encode(const json_t *msg, size_t headroom, char **buf, size_t *len);

/* {"id":id,"type":"ok"} (no id when !has_id). New reference, add fields to it. */
json_t *envelope_ok(bool has_id, int64_t id);
/* {"id":id,"type":"error","code":code,"message":message}; no id when !has_id,
 * no message when message is NULL. New reference, NULL on allocation failure. */
json_t *envelope_error(bool has_id, int64_t id, const char *code, const char *message);

#endif
