#!/usr/bin/env bash
# Runs the benchmarks one after another against the plain build (build/), each
# starting its own PostgreSQL, Redis and hub. `make bench` calls it.
# Benchmarks are not tests: run them alone on the machine (two cores shared with
# a test suite give noise, not numbers). tests/bench/README.md says what each
# measures and which knobs it takes.
#
#   tests/bench/run.sh [NAME ...]      names: floor fanout idle queue reserve reserve-cg purchases workers reports outage sockets floor-node
#                                      (default: all, in that order)
#   env: RN_HUB_BIN (default build/retronova-hub)
set -uo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export RN_HUB_BIN="${RN_HUB_BIN:-$src/build/retronova-hub}"
[[ -x "$RN_HUB_BIN" ]] || { echo "bench: no hub binary at $RN_HUB_BIN (make build)" >&2; exit 2; }
floor_bin="${RN_FLOOR_BIN:-$(dirname "$RN_HUB_BIN")/tests/bench_floor}" # built with the tree (tests/bench/floor.c)
cd "$src/tests"

run_one() {
    case "$1" in
    floor) "$floor_bin" -s 220 ;; # the demo snapshot's 220 bytes, as fanout sends them
    floor-node) node bench/fanout_cpu.mjs --floor ;;
    fanout) node bench/fanout_cpu.mjs ;;
    idle) (ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; node bench/idle_sockets.mjs) ;;
    queue) node bench/queue_bench.js ;;
    reserve) bash bench/reserve_pgbench.sh ;;
    reserve-cg) bash bench/reserve_callgrind.sh ;; # a count: any load, not in the default run (valgrind, ~1 min)
    purchases) bash bench/purchases.sh ;;
    workers) (ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; node bench/workers.mjs) ;;
    reports) bash bench/reports.sh ;;
    outage) node bench/bus_outage.mjs ;;
    # the hub raises its own soft limit to the hard one; the client processes raise theirs
    sockets) node bench/sockets45k.mjs ;;
    *) echo "bench: unknown benchmark '$1' (floor fanout idle queue reserve reserve-cg purchases workers reports outage sockets floor-node)" >&2; return 2 ;;
    esac
}

names=("$@")
((${#names[@]})) || names=(floor fanout idle queue reserve purchases workers reports outage sockets)
failed=()
for name in "${names[@]}"; do
    printf '\n== bench %s (%s) ==\n' "$name" "$(date -u +%FT%TZ)"
    run_one "$name" || failed+=("$name")
done
if ((${#failed[@]})); then
    echo "bench: failed: ${failed[*]}" >&2
    exit 1
fi
