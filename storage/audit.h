/*
 * audit: the check of the ticket books behind `retronova-hub audit`.
 *
 * Runs rn_audit() (storage/migrations/0004_tickets.sql), which verifies that
 * for every user tickets_balance = sum(ledger.delta) and each ledger row's
 * balance_after is the running sum, and that every succeeded purchase, promo
 * use and reservation debit has exactly its one ledger row and every refund
 * is where the reservation's state says it must be.
 *
 * Blocking (PQexec): an operator command, run without a loop.
 */
#ifndef RN_AUDIT_H
#define RN_AUDIT_H

#include <stdio.h>

/*
 * Connects with conninfo, writes one line per discrepancy to out
 * ("<kind>: <detail>") and then "N discrepancies". Returns the process exit
 * code: 0 when the books balance, 1 when they do not, 2 when the check could
 * not run (message on err).
 */
int audit_run(const char *conninfo, FILE *out, FILE *err);

#endif
