#!/usr/bin/env bash
# Benchmark (not a test): ticket purchases per second through the hub against
# the same two SQL transactions run directly by pgbench on the same database.
# Starts its own PostgreSQL, Redis and hub (tests/lib/harness.js), prints both
# rates and their ratio (DESIGN.md's target: at least 0.8), then the audit.
#
#   tests/bench/purchases.sh [SECONDS]
#   env: RN_HUB_BIN (default build/retronova-hub; use a build without
#        sanitizers), CLIENTS (32 concurrent HTTP clients), POOL (4: the hub's
#        PostgreSQL connections and pgbench's clients), USERS (200), ROUNDS (3)
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export RN_HUB_BIN="${RN_HUB_BIN:-$src/build/retronova-hub}"
export BENCH_SECONDS="${1:-${BENCH_SECONDS:-10}}"
[[ -x "$RN_HUB_BIN" ]] || { echo "no hub binary at $RN_HUB_BIN (set RN_HUB_BIN)" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "pgbench not found (postgresql-contrib / postgresql client)" >&2; exit 2; }
echo "purchases: $RN_HUB_BIN, ${BENCH_SECONDS} s per side, $(nproc) cores"
exec node "$src/tests/bench/purchases.mjs"
