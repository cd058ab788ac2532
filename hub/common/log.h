/*
 * log: one JSON object per line on stderr, so that log shippers need no
 * parser of ours: {"ts":"2026-11-21T06:05:08.123Z","level":"info","msg":"listening","port":8080}
 */
#ifndef RN_LOG_H
#define RN_LOG_H

#include <jansson.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Lines below this level are dropped (default LOG_INFO). */
void log_set_level(log_level_t level);
/* "debug", "info", "warn", "error" -> level; -1 when unknown. */
int log_level_parse(const char *name);

/*
 * Writes one line: ts, level, msg, then the members of fields (may be NULL).
 * Steals the reference to fields, so json_pack() can be passed inline.
 */
void log_event(log_level_t level, const char *msg, json_t *fields);

#define log_info(msg, fields) log_event(LOG_INFO, (msg), (fields))
#define log_warn(msg, fields) log_event(LOG_WARN, (msg), (fields))
#define log_error(msg, fields) log_event(LOG_ERROR, (msg), (fields))
#define log_debug(msg, fields) log_event(LOG_DEBUG, (msg), (fields))

#endif
