# Sourced by the SQL benchmarks (reserve_pgbench.sh, reserve_callgrind.sh, reports.sh): an
# ephemeral PostgreSQL of their own (scripts/services.sh, RN_EPHEMERAL=1) on a
# random free port, with the migrations of the hub binary $hub and
# storage/demo.sql applied. Sets dir, port, url, psql_q and bench_arcades; stops PostgreSQL
# and removes dir at exit, unless KEEP=1 (then prints how to stop it).
# Needs $src (the checkout) and $hub.

dir="$(mktemp -d /tmp/rn-bench-pg-XXXXXX)"
chmod 0755 "$dir"
export RN_EPHEMERAL=1
url=""
ephemeral_pg_stop() {
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "PostgreSQL left running: ${url:-?} (stop: scripts/services.sh pg-stop $dir)"
    else
        "$src/scripts/services.sh" pg-stop "$dir" || true
        rm -rf "$dir"
    fi
}
trap ephemeral_pg_stop EXIT
for try in 1 2 3 4 5; do # a random free port: another run may hold the first one
    port=$((20000 + RANDOM % 20000))
    "$src/scripts/services.sh" pg-start "$dir" "$port" 2>/dev/null && break
    ((try < 5)) || { echo "PostgreSQL did not start (see $dir/postgres.log)" >&2; exit 1; }
    "$src/scripts/services.sh" pg-stop "$dir" || true
done
url="$("$src/scripts/services.sh" pg-url "$dir" "$port")"
psql_q() { psql -X -q -tA -v ON_ERROR_STOP=1 -d "$url" "$@"; }
# Arcades 4..$1 ("Bench N", offline) beside the demo's 1..3, the id sequence after them.
bench_arcades() {
    psql_q >/dev/null <<SQL
INSERT INTO arcades (id, name, status)
SELECT g, 'Bench ' || g, 'offline' FROM generate_series(4, greatest(3, $1)) g
ON CONFLICT DO NOTHING;
SELECT setval(pg_get_serial_sequence('arcades', 'id'), (SELECT max(id) FROM arcades));
SQL
}

"$hub" migrate --database-url "$url" >/dev/null
psql_q -f "$src/storage/demo.sql" >/dev/null
