#!/usr/bin/env bash
# `make run`: the hub with demo data on http://127.0.0.1:8080, in one command.
#
# Installs what is missing (scripts/deps.sh), builds build/retronova-hub,
# starts PostgreSQL (port 5433) and Redis (port 6380) with their data under
# var/ of the checkout unless DATABASE_URL / REDIS_URL point elsewhere, applies
# the migrations, loads storage/demo.sql, makes the three demo cabinets' API
# keys (kept in var/cabinet-keys, made again only when missing or no longer
# valid, or with RN_ROTATE_KEYS=1), prints links that open each demo page
# already signed in, then runs the hub in the foreground. Ctrl-C (or SIGTERM) stops the hub and the servers this
# script started; nothing is left running.
#
# Besides the friendly text, stdout carries one line per fact, for scripts:
#   url <name> <url>            token <uid> <jwt>
#   link <who> <url#credential> (index, alice, bob, new, admin, cabinet<id>)
#   cabinet <arcade id> <key>   database <url>      redis <url>
#
# Environment:
#   HUB_PORT (8080), HUB_LISTEN (127.0.0.1), HUB_JWT_HS256_SECRET (default: made
#   once and kept in var/secret so tokens survive restarts), DATABASE_URL,
#   REDIS_URL, RN_VAR_DIR (var/), RN_PG_PORT (5433), RN_REDIS_PORT (6380),
#   RN_SKIP_DEPS=1 (no deps.sh), RN_SKIP_BUILD=1 (no build; with RN_HUB_BIN to
#   name the binary), RN_SKIP_DEMO=1 (no demo data), RN_TOKEN_TTL (86400 s),
#   RN_ROTATE_KEYS=1 (new cabinet keys even when the kept ones still work).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
var="${RN_VAR_DIR:-$root/var}"
listen="${HUB_LISTEN:-127.0.0.1}"
port="${HUB_PORT:-8080}"
pg_port="${RN_PG_PORT:-5433}"
redis_port="${RN_REDIS_PORT:-6380}"
hub_bin="${RN_HUB_BIN:-$root/build/retronova-hub}"
token_ttl="${RN_TOKEN_TTL:-86400}"
services="$root/scripts/services.sh"

say() { printf 'run: %s\n' "$*" >&2; }
die() { printf 'run: error: %s\n' "$*" >&2; exit 1; }
# A URL with its password replaced by ***.
redact() { printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'; }

mkdir -p "$var"
var="$(cd "$var" && pwd)"
# As root, PostgreSQL runs as its own user (see services.sh), which must be able
# to reach var/pg: let others traverse (not list) var/.
[[ "$(id -u)" != 0 ]] || chmod o+x "$var"

# --- cleanup: whatever this script started stops with it --------------------

started_pg=0
started_redis=0
hub_pid=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$hub_pid" ]] && kill -0 "$hub_pid" 2>/dev/null; then
        kill -TERM "$hub_pid" 2>/dev/null || true
        # The hub drains its sockets and exits; give it 15 s.
        for _ in $(seq 150); do
            kill -0 "$hub_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$hub_pid" 2>/dev/null; then
            say "the hub did not stop within 15 s; killing it"
            kill -KILL "$hub_pid" 2>/dev/null || true
        fi
        wait "$hub_pid" 2>/dev/null || true
    fi
    ((started_redis)) && { bash "$services" redis-stop "$var/redis" || true; }
    ((started_pg)) && { bash "$services" pg-stop "$var/pg" || true; }
    ((started_pg || started_redis)) && say "stopped the servers it started"
    return "$rc"
}
trap cleanup EXIT
# Ctrl-C or SIGTERM is how this is meant to end: a clean stop exits 0.
trap 'exit 0' INT TERM

# --- dependencies and build --------------------------------------------------

[[ "${RN_SKIP_DEPS:-0}" == 1 ]] || bash "$root/scripts/deps.sh"

if [[ "${RN_SKIP_BUILD:-0}" != 1 ]]; then
    say "building build/retronova-hub"
    log="$var/build.log"
    if ! { cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
           cmake --build "$root/build" --target retronova-hub -j "$(nproc)"; } >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        die "build failed (full log: $log)"
    fi
    hub_bin="$root/build/retronova-hub"
fi
[[ -x "$hub_bin" ]] || die "no hub binary at $hub_bin"

# --- PostgreSQL and Redis ----------------------------------------------------

if [[ -z "${DATABASE_URL:-}" ]]; then
    say "starting PostgreSQL on 127.0.0.1:$pg_port (data in $var/pg)"
    started_pg=1
    bash "$services" pg-start "$var/pg" "$pg_port"
    DATABASE_URL="$(bash "$services" pg-url "$var/pg" "$pg_port")"
fi
if [[ -z "${REDIS_URL:-}" ]]; then
    say "starting Redis on 127.0.0.1:$redis_port (data in $var/redis)"
    started_redis=1
    bash "$services" redis-start "$var/redis" "$redis_port"
    REDIS_URL="redis://127.0.0.1:$redis_port"
fi
export DATABASE_URL REDIS_URL

# --- schema, demo data, secrets ----------------------------------------------

"$hub_bin" migrate --database-url "$DATABASE_URL" >"$var/migrate.log" 2>&1 ||
    { cat "$var/migrate.log" >&2; die "migrations failed"; }

if [[ "${RN_SKIP_DEMO:-0}" != 1 ]]; then
    [[ -f "$root/storage/demo.sql" ]] || die "storage/demo.sql is missing"
    psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" \
        -f "$root/storage/demo.sql" >"$var/demo.log" 2>&1 ||
        { cat "$var/demo.log" >&2; die "loading storage/demo.sql failed"; }
fi

if [[ -z "${HUB_JWT_HS256_SECRET:-}" ]]; then
    if [[ ! -s "$var/secret" ]]; then
        (umask 077 && od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' >"$var/secret")
    fi
    HUB_JWT_HS256_SECRET="$(cat "$var/secret")"
fi
export HUB_JWT_HS256_SECRET

base="http://$listen:$port"

# --- demo credentials: cabinet keys kept in var/, tokens, ready links ---------

# A cabinet key is kept in var/cabinet-keys/<arcade> and reused while the
# database still holds its hash (a fresh database, or RN_ROTATE_KEYS=1, makes a
# new one): a restart of `make run` does not lock out a cabinet page.
key_valid() { # arcade key
    local ok
    ok="$(psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -v id="$1" -v key="$2" 2>/dev/null <<'SQL'
SELECT 1 FROM arcades WHERE id = :'id'::bigint
   AND api_key_hash = encode(sha256(convert_to(:'key', 'UTF8')), 'hex');
SQL
)" || return 1
    [[ "$ok" == 1 ]]
}
cabinet_key() { # arcade -> prints its key
    local file="$var/cabinet-keys/$1" key=""
    [[ "${RN_ROTATE_KEYS:-0}" != 1 && -s "$file" ]] && key="$(cat "$file")"
    if [[ -z "$key" ]] || ! key_valid "$1" "$key"; then
        key="$("$hub_bin" cabinet-key --database-url "$DATABASE_URL" "$1" 2>"$var/cabinet-key.log")" ||
            { cat "$var/cabinet-key.log" >&2; die "cabinet-key $1 failed"; }
        (umask 077 && mkdir -p "$var/cabinet-keys" && printf '%s\n' "$key" >"$file")
        say "cabinet $1: new API key (kept in $file)"
    fi
    printf '%s' "$key"
}
make_token() { # uid [--admin]
    "$hub_bin" token --uid "$1" "${@:2}" --ttl "$token_ttl" \
        --jwt-hs256-secret "$HUB_JWT_HS256_SECRET" 2>"$var/token.log" ||
        { cat "$var/token.log" >&2; die "token $1 failed"; }
}

declare -A keys=()
if [[ "${RN_SKIP_DEMO:-0}" != 1 ]]; then
    for arcade in 1 2 3; do keys[$arcade]="$(cabinet_key "$arcade")"; done
fi
arcades_sorted="$(printf '%s\n' "${!keys[@]}" | sort -n)"
# A player with no profile yet (the sign-up form): a new uid every run.
newbie="demo-new-$(od -An -vtx1 -N3 /dev/urandom | tr -d ' \n')"
declare -A tokens=()
for who in demo-alice demo-bob "$newbie"; do tokens[$who]="$(make_token "$who")"; done
tokens[demo-admin]="$(make_token demo-admin --admin)"

# Credentials travel in the URL fragment (#token=...): a browser never sends
# it to a server or a proxy log, and the page moves it to sessionStorage and
# out of the address bar. The hub itself serves no secret to anyone.
index_fragment="alice=${tokens[demo-alice]}&bob=${tokens[demo-bob]}&new=${tokens[$newbie]}&admin=${tokens[demo-admin]}"
for arcade in $arcades_sorted; do index_fragment+="&cabinet$arcade=${keys[$arcade]}"; done

cat <<EOF

Retronova Hub (development)

  Open the demo, already signed in (these links carry credentials: keep them private):
    everything:      $base/#$index_fragment
    alice's phone:   $base/phone.html#token=${tokens[demo-alice]}
    bob's phone:     $base/phone.html#token=${tokens[demo-bob]}
    a new player:    $base/phone.html#token=${tokens[$newbie]}
    admin console:   $base/admin.html#token=${tokens[demo-admin]}
EOF
for arcade in $arcades_sorted; do
    echo "    cabinet $arcade:       $base/cabinet.html#key=${keys[$arcade]}"
done
cat <<EOF
  Promo code WELCOME10: 10 free tickets, once per player. Sandbox payments always succeed.
  API reference: $base/docs   WebSocket: ws://$listen:$port/ws (subprotocol retronova.v1)
  Health:        $base/healthz  $base/readyz  $base/metrics
  Cabinet keys are kept in $var/cabinet-keys (RN_ROTATE_KEYS=1 makes new ones).

url index $base/
url phone $base/phone.html
url cabinet $base/cabinet.html
url admin $base/admin.html
url docs $base/docs
url ws ws://$listen:$port/ws
link index $base/#$index_fragment
link alice $base/phone.html#token=${tokens[demo-alice]}
link bob $base/phone.html#token=${tokens[demo-bob]}
link new $base/phone.html#token=${tokens[$newbie]}
link admin $base/admin.html#token=${tokens[demo-admin]}
database $(redact "$DATABASE_URL")
redis $(redact "$REDIS_URL")
EOF
for arcade in $arcades_sorted; do
    echo "link cabinet$arcade $base/cabinet.html#key=${keys[$arcade]}"
    echo "cabinet $arcade ${keys[$arcade]}"
done
for who in demo-alice demo-bob "$newbie" demo-admin; do echo "token $who ${tokens[$who]}"; done
echo
echo "  Dev tokens are HS256, valid ${token_ttl}s; the secret is kept in $var/secret."
echo "  Ctrl-C stops the hub and the servers started here."
echo

# --- the hub, in the foreground ----------------------------------------------

# In the background, so that this shell's traps run the moment a signal comes
# (bash defers traps while a foreground child runs); `wait` returns at once.
HUB_LISTEN="$listen" HUB_PORT="$port" HUB_WEB_ROOT="${HUB_WEB_ROOT:-$root/web-demo}" \
    "$hub_bin" serve &
hub_pid=$!
set +e
wait "$hub_pid"
rc=$?
set -e
hub_pid=""
say "the hub exited with status $rc"
exit "$rc"
