#!/usr/bin/env bash
# Benchmark (not a test): the SQL of one reservation + its cancel, run directly
# by pgbench (tests/bench/reserve.pgbench), without the hub. What the queue
# transitions cost in PostgreSQL: the ceiling for reservations/s through a hub.
# Starts its own ephemeral PostgreSQL (scripts/services.sh, RN_EPHEMERAL=1),
# applies the migrations the hub binary embeds (retronova-hub migrate) and
# storage/demo.sql, adds arcades and users with a million tickets each and
# warms up (tests/bench/reserve_setup.sh, shared with reserve_callgrind.sh,
# which counts the instructions of the same pair), then runs pgbench with 1 and with 4
# clients and prints pairs/s (one pair = one rn_reserve + one rn_cancel) and
# the latency of each statement. Ends with the audit of the books (rn_audit)
# and stops PostgreSQL.
#
#   tests/bench/reserve_pgbench.sh [SECONDS]
#   env: RN_HUB_BIN (default build/retronova-hub: its migrations are the ones
#        measured), ARCADES (32; clients are spread over them round robin),
#        CLIENTS ("1 4": the pgbench client counts to run), ROUNDS (2 per
#        client count), PGBENCH_MODE (prepared: as the hub sends with its
#        default --pg-prepared on, each statement prepared once per
#        connection and run by name; extended: an unnamed statement per call,
#        as the hub with --pg-prepared off; simple to compare), WARMUP (3 s;
#        0: none, measure the cold plans), KEEP=1 leaves
#        PostgreSQL running (its URL is printed) for EXPLAIN / auto_explain.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
hub="${RN_HUB_BIN:-$src/build/retronova-hub}"
seconds="${1:-${BENCH_SECONDS:-10}}"
arcades="${ARCADES:-32}"
clients="${CLIENTS:-1 4}"
rounds="${ROUNDS:-2}"
mode="${PGBENCH_MODE:-prepared}" # what the hub sends (--pg-prepared on)
warmup="${WARMUP:-3}"
[[ -x "$hub" ]] || { echo "no hub binary at $hub (set RN_HUB_BIN)" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "pgbench not found (postgresql client)" >&2; exit 2; }

users=4 # the warm-up runs 4 clients
for c in $clients; do if ((c > users)); then users=$c; fi; done

# shellcheck source=tests/bench/ephemeral_pg.sh
. "$src/tests/bench/ephemeral_pg.sh"
# shellcheck source=tests/bench/reserve_setup.sh
. "$src/tests/bench/reserve_setup.sh"
migrations="$(psql_q -c "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations" 2>/dev/null || echo '?')"
echo "reserve_pgbench: $hub (migrations $migrations), $arcades arcades, ${seconds} s per run," \
     "warm-up ${warmup} s, pgbench -M $mode, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for c in $clients; do
    for ((round = 1; round <= rounds; round++)); do
        out="$(pgbench -n -M "$mode" -r -c "$c" -j "$(( c < 2 ? c : 2 ))" -T "$seconds" \
                   -D narcades="$arcades" -f "$src/tests/bench/reserve.pgbench" "$url" 2>&1)" ||
            { echo "$out" >&2; exit 1; }
        tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")"
        failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")"
        lat="$(awk '/^ *[0-9.]+ +[0-9]+ +SELECT/ {printf "%s%s ms", (n++ ? ", cancel " : "reserve "), $1}' <<<"$out")"
        printf '  -c %-2s round %d: %8.1f pairs/s (%s; failed %s; load %s)\n' \
            "$c" "$round" "$tps" "$lat" "${failed:-0}" "$(cut -d' ' -f1 /proc/loadavg)"
    done
done
audit="$(psql_q -c "SELECT count(*) FROM rn_audit()")"
echo "audit: $audit problem(s)"
[[ "$audit" == 0 ]]
