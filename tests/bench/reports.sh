#!/usr/bin/env bash
# Benchmark (not a test): the business numbers' SQL (storage/sql/07_reports.sql)
# on a large history, without the hub. Starts its own ephemeral PostgreSQL
# (scripts/services.sh, RN_EPHEMERAL=1), applies the migrations the hub binary
# embeds (retronova-hub migrate) and storage/demo.sql, then generates ROWS
# ledger rows over DAYS days with what they refer to: 30 % purchase credits
# (succeeded purchases), 60 % reservation debits (reservations: 70 % completed
# with scores' timings, 15 % cancelled and refunded, 15 % expired), 10 %
# refunds; users, arcades and games to spread them. After VACUUM ANALYZE it
# times, best of RUNS runs each: rn_admin_stats, and each report over 1 day,
# 30 days and 366 days (all arcades), and over 30 days for one arcade.
#
#   tests/bench/reports.sh
#   env: RN_HUB_BIN (default build/retronova-hub), ROWS (1000000), DAYS (90),
#        USERS (20000), ARCADES (40), RUNS (3), KEEP=1 leaves PostgreSQL up.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
hub="${RN_HUB_BIN:-$src/build/retronova-hub}"
rows="${ROWS:-1000000}"
days="${DAYS:-90}"
users="${USERS:-20000}"
arcades="${ARCADES:-40}"
runs="${RUNS:-3}"
[[ -x "$hub" ]] || { echo "no hub binary at $hub (set RN_HUB_BIN)" >&2; exit 2; }

# shellcheck source=tests/bench/ephemeral_pg.sh
. "$src/tests/bench/ephemeral_pg.sh"
started=$(date +%s)
# Rows are written straight (not through rn_ledger_post): a history, not a
# load; balance_after is not meaningful here, the reports do not read it.
bench_arcades "$arcades"
psql_q <<SQL >/dev/null
INSERT INTO users (firebase_uid, pseudo, tickets_balance)
SELECT 'bench-' || g, 'bench' || g, g % 50 FROM generate_series(1, $users) g;
CREATE TEMP TABLE b AS SELECT min(id) - 1 AS base FROM users WHERE firebase_uid LIKE 'bench-%';
-- purchases: 30 % of the rows
WITH p AS (
    INSERT INTO purchases (user_id, offer_id, tickets, price_cents, currency, provider, status,
                           created_at)
    SELECT b.base + 1 + g % $users, 1 + g % 3, 10, 500, 'EUR', 'bench',
           'succeeded', now() - (g % $days) * interval '1 day' - (g % 86400) * interval '1 second'
    FROM generate_series(1, ($rows * 3 / 10)) g, b
    RETURNING id, user_id, tickets, created_at)
INSERT INTO ledger (user_id, delta, balance_after, kind, purchase_id, created_at)
SELECT user_id, tickets, tickets, 'purchase', id, created_at FROM p;
-- reservations: 60 % of the rows (one debit each)
INSERT INTO reservations (arcade_id, game_id, user_id, status, unlock_code, cost, created_at,
                          called_at, started_at, ended_at)
SELECT 1 + g % $arcades, 2 + g % 3, b.base + 1 + (g * 7) % $users,
       CASE WHEN g % 20 < 14 THEN 'completed' WHEN g % 20 < 17 THEN 'cancelled' ELSE 'expired' END,
       '123456', 1, t, t + interval '90 seconds',
       CASE WHEN g % 20 < 14 THEN t + interval '120 seconds' END,
       CASE WHEN g % 20 < 14 THEN t + interval '300 seconds' END
FROM generate_series(1, ($rows * 6 / 10)) g, b,
     LATERAL (SELECT now() - (g % $days) * interval '1 day'
                           - (g % 86400) * interval '1 second' AS t) x;
INSERT INTO ledger (user_id, delta, balance_after, kind, reservation_id, created_at)
SELECT user_id, -cost, 0, 'reservation', id, created_at FROM reservations;
-- refunds: the cancelled ones, and expired ones up to 10 % of the rows
INSERT INTO ledger (user_id, delta, balance_after, kind, reservation_id, created_at)
SELECT user_id, cost, cost, 'refund', id, created_at + interval '60 seconds'
FROM reservations WHERE status IN ('cancelled', 'expired')
ORDER BY id LIMIT ($rows / 10);
VACUUM ANALYZE;
SQL
count="$(psql_q -c "SELECT count(*) FROM ledger")"
echo "reports: $hub, $count ledger rows over $days days," \
     "$(psql_q -c "SELECT count(*) FROM reservations") reservations, generated in" \
     "$(($(date +%s) - started)) s; best of $runs; $(nproc) cores, load average" \
     "$(cut -d' ' -f1-3 /proc/loadavg)"

# Best wall time of RUNS runs of one statement, in ms (psql's \timing).
best_ms() {
    local sql="$1" best="" t
    for ((i = 0; i < runs; i++)); do
        t="$(psql -X -q -v ON_ERROR_STOP=1 -d "$url" -o /dev/null \
                 -c '\timing on' -c "$sql" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)"
        [[ -n "$t" ]] || { echo "failed: $sql" >&2; return 1; }
        if [[ -z "$best" ]] || awk "BEGIN{exit !($t < $best)}"; then best="$t"; fi
    done
    echo "$best"
}

printf '%-40s %10s\n' "query" "best ms"
printf '%-40s %10s\n' "rn_admin_stats" "$(best_ms "SELECT rn_admin_stats('{}')")"
for kind in revenue plays queues; do
    for span in 0 29 365; do
        sql="SELECT rn_admin_report('$kind', current_date - $span, current_date, NULL, NULL)"
        printf '%-40s %10s\n' "$kind, $((span + 1)) day(s)" "$(best_ms "$sql")"
    done
    sql="SELECT rn_admin_report('$kind', current_date - 29, current_date, 1, NULL)"
    printf '%-40s %10s\n' "$kind, 30 days, one arcade" "$(best_ms "$sql")"
done
# the reports must still sum to the ledger
check="$(psql_q -c "SELECT (rn_admin_report('revenue', current_date - 365, current_date, NULL, NULL)
                            -> 'body' -> 'totals' ->> 'tickets_net')::bigint
                         = (SELECT -sum(delta) FROM ledger WHERE kind IN ('reservation', 'refund')
                            AND created_at >= (current_date - 365)::timestamp AT TIME ZONE 'UTC')")"
[[ "$check" == t ]] || { echo "revenue report does not sum to the ledger" >&2; exit 1; }
echo "revenue report over 366 days sums to the ledger: ok"
