/*
 * game_timeout: games past their maximum duration end as timed_out.
 *
 * A game has a maximum duration (games.max_duration_s, else --game-max-s);
 * past it plus --game-grace-s the reservation ends as timed_out (no score,
 * refunded when --refund-timed-out) and the next player is called. Every
 * process, every --game-timeout-sweep-ms, asks PostgreSQL which playing
 * reservations are due (rn_game_timeouts_due) and ends each one in its own
 * transaction (rn_game_timeout, under its arcade's row lock). The SQL is
 * conditional, so two processes sweeping at once end each game once. It
 * needs no cabinet: a cabinet killed mid-game leaves nobody else to do it.
 *
 * The same tick closes the arcades whose opening hours ended: their waiting
 * reservations are voided and refunded (rn_arcades_closing_due, then
 * rn_arcade_close per arcade, conditional likewise).
 *
 * Loop thread only. A failed query is simply tried again at the next tick.
 */
#ifndef RN_GAME_TIMEOUT_H
#define RN_GAME_TIMEOUT_H

#include "hub.h"

typedef struct game_timeout game_timeout_t;

/* Starts the periodic sweep. NULL on allocation failure. */
game_timeout_t *game_timeout_new(hub_t *hub);
/* Stops it (answers still in flight only publish). NULL is fine. */
void game_timeout_close(game_timeout_t *gt);

#endif
