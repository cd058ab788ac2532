/*
 * ops: the operator commands of retronova-hub that talk to PostgreSQL. Each
 * opens its own connection and blocks (PQexec): they run without a loop,
 * never inside the hub.
 *
 * ops_audit (`retronova-hub audit`) runs rn_audit()
 * (storage/sql/02_tickets.sql), which verifies that for every user
 * tickets_balance = sum(ledger.delta) and each ledger row's balance_after is
 * the running sum, and that every succeeded purchase, promo use and
 * reservation debit has exactly its one ledger row and every refund is where
 * the reservation's state says it must be.
 *
 * ops_rotate_cabinet_key (`retronova-hub cabinet-key`) stores a new key hash
 * through rn_admin_arcade_rotate_key, the same function the admin REST route
 * uses (its audit row's actor is "cli").
 */
#ifndef RN_OPS_H
#define RN_OPS_H

#include <stdio.h>

/*
 * Connects with conninfo, writes one line per discrepancy to out
 * ("<kind>: <detail>") and then "N discrepancies". Returns the process exit
 * code: 0 when the books balance, 1 when they do not, 2 when the check could
 * not run (message on err).
 */
int ops_audit(const char *conninfo, FILE *out, FILE *err);

/*
 * Sets arcade_id's key hash (hex SHA-256). 0, or -1 with a message on err
 * (no such arcade, database unreachable).
 */
int ops_rotate_cabinet_key(const char *conninfo, long arcade_id, const char *key_hash_hex,
                           FILE *err);

#endif
