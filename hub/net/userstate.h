/*
 * userstate: which users are deleted, known to every hub process without a
 * query per request. Each process keeps the set of deleted uids: loaded from
 * PostgreSQL at start and again whenever the bus comes back (a message may
 * have been missed), and kept current by the admin routes: a delete or a
 * restore is applied here at once (this process's sockets of that user close
 * with 4003 even while Redis is down) and announced on USERSTATE_CHANNEL to
 * the other processes, which do the same.
 *
 * Until the first load has answered, nobody counts as deleted. Loop thread
 * only.
 */
#ifndef RN_USERSTATE_H
#define RN_USERSTATE_H

#include <stdbool.h>
#include <stddef.h>

#include "hub.h"

#define USERSTATE_CHANNEL "rn:users"

typedef struct userstate userstate_t;

/* Starts the first load. NULL on allocation failure. */
userstate_t *userstate_new(hub_t *hub);
/* Stops its timer; frees itself in the close callback (its query may still answer: ignored). */
void userstate_close(userstate_t *us);

bool userstate_is_deleted(const userstate_t *us, const char *uid);

/* Loads the set again (the bus came back). */
void userstate_reload(userstate_t *us);

/* An admin deleted (or restored) uid: applied here, then announced to the other processes. */
void userstate_announce(userstate_t *us, const char *uid, bool deleted);

/* A message on USERSTATE_CHANNEL (borrowed). */
void userstate_on_bus_message(userstate_t *us, const char *payload, size_t len);

#endif
