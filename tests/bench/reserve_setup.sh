# Sourced by reserve_pgbench.sh and reserve_callgrind.sh after ephemeral_pg.sh:
# the reservation benchmarks' data and warm-up. Adds arcades 4..$arcades with
# Neon Racer on slot 9, $users bench users (bench-1 ..) with a million tickets
# each (through the ledger, so rn_audit balances), then warms up (WARMUP
# seconds of tests/bench/reserve.pgbench on 4 clients, then VACUUM ANALYZE: a
# live database has statistics, and plans cached while the tables were empty
# scan them sequentially until an ANALYZE). Needs $src, $url, psql_q,
# $arcades, $users, $mode (pgbench -M) and $warmup.
bench_arcades "$arcades"
psql_q <<SQL >/dev/null
INSERT INTO arcade_games (arcade_id, slot, game_id)
SELECT g, 9, 3 FROM generate_series(1, $arcades) g ON CONFLICT DO NOTHING;
INSERT INTO users (firebase_uid, pseudo)
SELECT 'bench-' || g, 'bench' || g FROM generate_series(1, $users) g;
WITH u AS (UPDATE users SET tickets_balance = 1000000 WHERE firebase_uid LIKE 'bench-%'
           RETURNING id, tickets_balance)
INSERT INTO ledger (user_id, delta, balance_after, kind, reason)
SELECT id, 1000000, tickets_balance, 'adjustment', 'bench' FROM u;
VACUUM ANALYZE;
SQL

if ((warmup > 0)); then
    pgbench -n -M "$mode" -c 4 -j 2 -T "$warmup" -D narcades="$arcades" \
        -f "$src/tests/bench/reserve.pgbench" "$url" >/dev/null 2>&1 ||
        { echo "warm-up failed" >&2; exit 1; }
    psql_q -c "VACUUM ANALYZE" >/dev/null
fi
