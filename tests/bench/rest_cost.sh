#!/bin/sh
# What one REST request costs the hub, in counts that do not depend on how
# busy the machine is: syscalls per request (strace -c) and, with
# --callgrind, user-space instructions per request (valgrind's callgrind).
# Not a test, not in ctest; run from the source tree:
#
#   RN_HUB_BIN=build/retronova-hub tests/bench/rest_cost.sh [--callgrind]
#
# The load is queue_bench.js's throughput phase (4 keep-alive clients
# reserving and cancelling on 32 arcades, no subscribers). The window: 3 s of
# strace -f, or 10 s of callgrind between a zero and a dump; the requests in
# it are the hub's rn_http_responses_total before and after (strace), or the
# calls of metrics_http_response in the dump (callgrind, exact).
set -eu
BIN=${RN_HUB_BIN:-build/retronova-hub}
MODE=${1:-strace}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
if [ "$MODE" = --callgrind ]; then
    printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/cg.%%p "%s" "$@"\n' \
        "$OUT" "$(realpath "$BIN")" >"$OUT/hub.sh"
    chmod +x "$OUT/hub.sh"
    HUB=$OUT/hub.sh SECONDS_RUN=25
else
    HUB=$BIN SECONDS_RUN=12
fi
RN_HUB_BIN=$HUB node tests/bench/queue_bench.js --sockets 0 --arcades 32 --changes 10 \
    --clients 4 --seconds $SECONDS_RUN >"$OUT/bench" 2>&1 &
BENCH=$!
i=0
until grep -qs 'throughput phase' "$OUT/bench"; do
    i=$((i + 1))
    [ $i -lt 240 ] || { cat "$OUT/bench"; exit 1; }
    sleep 0.5
done
PID=$(sed -n 's/.*hub pid \([0-9]*\),.*/\1/p' "$OUT/bench")
URL=$(sed -n 's/.*metrics \(http[^ ]*\).*/\1/p' "$OUT/bench")
answered() { curl -s "$URL" | awk '/^rn_http_responses_total/ { n += $2 } END { print n }'; }
sleep 2
if [ "$MODE" = --callgrind ]; then
    callgrind_control -z "$PID" >/dev/null 2>&1
    sleep 10
    callgrind_control -d "$PID" >/dev/null 2>&1
    wait $BENCH
    awk '/^c?fn=\(/ { id = $1; sub(/^c?fn=/, "", id); if (NF > 1) name[id] = $2
                       if ($1 ~ /^cfn=/) hit = name[id] == "metrics_http_response" }
         /^calls=/ && hit { n += substr($1, 7); hit = 0 }
         /^(summary|totals):/ { ir = $2 }
         END { printf "%d requests, %d instructions, %d instructions per request\n", n, ir, ir / n }' \
        "$(ls "$OUT"/cg.*.1 | head -1)"
    exit 0
fi
a=$(answered)
timeout -s INT 3 strace -c -f -p "$PID" -o "$OUT/strace" >/dev/null 2>&1 || true
b=$(answered)
wait $BENCH
n=$((b - a - 1)) # the first /metrics answer is counted in b
echo "$n requests in the window; syscalls per request:"
awk -v n=$n '$1 ~ /^[0-9.]+$/ && $NF != "total" { printf "  %-12s %6.2f\n", $NF, $4 / n; t += $4 }
     END { printf "  %-12s %6.2f\n", "total", t / n }' "$OUT/strace"
