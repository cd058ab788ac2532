#!/usr/bin/env bash
# Benchmark (not a test): PostgreSQL's CPU instructions per reservation pair
# (one rn_reserve with an Idempotency-Key + its rn_cancel, the SQL of
# tests/bench/reserve.pgbench), counted by valgrind's callgrind. A count, not
# a time: the same binary, schema and data give the same number whatever else
# the machine is doing, so a change to storage/sql can be judged on a busy
# machine to the percent (reserve_pgbench.sh's pairs/s need a quiet one).
#
# How: an ephemeral PostgreSQL with the hub's migrations and the bench data
# (reserve_setup.sh, warm-up included), stopped; then the same data directory
# is opened twice by `postgres --single` under callgrind, running SMALL and
# then LARGE pairs (one statement each, its own transaction, one per line).
# (LARGE - SMALL) pairs' instructions / their count = instructions per pair,
# without start-up and the first calls' compilation.
#
#   tests/bench/reserve_callgrind.sh
#   env: RN_HUB_BIN (default build/retronova-hub: its migrations and storage/sql
#        are the ones measured), ARCADES (32), SMALL (40), LARGE (240),
#        MODE (prepared, as the hub sends by default; simple: --pg-prepared off),
#        EXTRA_SQL=FILE is run after the migrations (a candidate change,
#        measured without rebuilding the hub),
#        PROFILE=FILE keeps the LARGE run's callgrind profile there
#        (callgrind_annotate --inclusive=yes FILE: where the instructions go)
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
hub="${RN_HUB_BIN:-$src/build/retronova-hub}"
arcades="${ARCADES:-32}"
small="${SMALL:-40}"
large="${LARGE:-240}"
mode_sql="${MODE:-prepared}"
users=4
mode=extended
warmup=3
[[ -x "$hub" ]] || { echo "no hub binary at $hub (set RN_HUB_BIN)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 2; }

# shellcheck source=tests/bench/ephemeral_pg.sh
. "$src/tests/bench/ephemeral_pg.sh"
if [[ -n "${EXTRA_SQL:-}" ]]; then psql_q -f "$EXTRA_SQL" >/dev/null; fi
# shellcheck source=tests/bench/reserve_setup.sh
. "$src/tests/bench/reserve_setup.sh"
migrations="$(psql_q -c "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations")"
"$src/scripts/services.sh" pg-stop "$dir" >/dev/null

pg_user="$("$src/scripts/services.sh" pg-user)"
bin="$("$src/scripts/services.sh" pg-bin)"
# One pair per line: reserve (bench user k on arcade k's turn), then cancel
# what it booked, both answers turned into text as the hub receives them.
# MODE=prepared: the pair is PREPAREd once and EXECUTEd (the hub with its
# prepared statements); simple: the statement is parsed and planned on each
# line (the hub's unnamed statements, --pg-prepared off).
pair_sql="SELECT length(rn_cancel(\$1, (a->'body'->'reservation'->>'id')::bigint)::text) + length(a::text) FROM rn_reserve(\$1, \$2, 3, NULL, gen_random_uuid()::text, 'a94a8fe5ccb19ba61c4c0873d391e987982fbbd3a94a8fe5ccb19ba61c4c0873', 120) AS a"
pairs() {
    local n="$1" i u
    if [[ "$mode_sql" == prepared ]]; then echo "PREPARE pair (text, bigint) AS $pair_sql"; fi
    for ((i = 0; i < n; i++)); do
        u="'bench-$((i % users + 1))'"
        if [[ "$mode_sql" == prepared ]]; then
            echo "EXECUTE pair ($u, $((i % arcades + 1)))"
        else
            sed "s/\\\$1/$u/g; s/\\\$2/$((i % arcades + 1))/g" <<<"$pair_sql"
        fi
    done
}
# Instructions of `postgres --single` running $1 pairs.
count() {
    local out="$dir/callgrind.$1" profile=/dev/null
    if [[ "$1" == "$large" && -n "${PROFILE:-}" ]]; then profile="$dir/profile"; fi
    pairs "$1" >"$dir/pairs.sql"
    chmod 0644 "$dir/pairs.sql"
    (cd / && runuser -u "$pg_user" -- valgrind --tool=callgrind --callgrind-out-file="$profile" \
        "$bin/postgres" --single -D "$dir/data" retronova <"$dir/pairs.sql" >"$out.stdout" 2>"$out")
    if grep -q 'ERROR' "$out.stdout"; then
        grep -m3 ERROR "$out.stdout" >&2
        exit 1
    fi
    if [[ "$profile" != /dev/null ]]; then cp "$profile" "$PROFILE"; fi
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out"
}
a="$(count "$small")"
b="$(count "$large")"
echo "reserve_callgrind: $hub (migrations $migrations), $arcades arcades:" \
     "$(( (b - a) / (large - small) )) instructions per pair" \
     "(callgrind, postgres --single, $mode_sql, $small and $large pairs)"
