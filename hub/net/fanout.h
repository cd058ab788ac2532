/*
 * fanout: which local sessions listen to which bus channel.
 *
 * Channels are the bus's names: rn:user:<uid>, rn:cabinet:<arcade id>,
 * rn:arcade:<id>, rn:admin. The first local session to join a channel
 * subscribes this process on Redis; the last to leave unsubscribes it. A
 * message for a channel is one msgbuf handed to every member.
 */
#ifndef RN_FANOUT_H
#define RN_FANOUT_H

#include <stddef.h>

#include "bus.h"
#include "msgbuf.h"
#include "session.h"

typedef struct fanout fanout_t;

fanout_t *fanout_new(bus_t *bus);
/* From now on joins and leaves no longer touch the bus (it is closing). */
void fanout_detach_bus(fanout_t *f);
/* Frees the index; every session must have left. */
void fanout_free(fanout_t *f);

/* Adds s to channel (a second join is a no-op). 0, or -1 on allocation failure. */
int fanout_join(fanout_t *f, session_t *s, const char *channel);
/* Removes s from channel; not a member: no-op. */
void fanout_leave(fanout_t *f, session_t *s, const char *channel);
/* Removes s from every channel it joined (on close). */
void fanout_leave_all(fanout_t *f, session_t *s);
/* Is s a member of channel? */
int fanout_is_member(const fanout_t *f, const session_t *s, const char *channel);

/* How many local sessions are in channel. */
size_t fanout_size(const fanout_t *f, const char *channel);
/* How many channels starting with prefix s has joined. */
size_t fanout_count_prefix(const session_t *s, const char *prefix);

/* Queues b on every member of channel; returns how many. */
size_t fanout_deliver(fanout_t *f, const char *channel, msgbuf_t *b);
/* Calls fn for every member of channel. */
void fanout_each(fanout_t *f, const char *channel, void (*fn)(session_t *s, void *arg), void *arg);
/* Calls fn for every channel with members (for a resynchronisation). */
void fanout_each_channel(fanout_t *f, void (*fn)(const char *channel, void *arg), void *arg);

#endif
