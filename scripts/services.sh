#!/usr/bin/env bash
# Starts and stops a private PostgreSQL and Redis whose data lives in a given
# directory, listening on 127.0.0.1 only. Used by `make run` (scripts/run.sh)
# and by the test harness (tests/lib/harness.js).
#
#   services.sh pg-start DIR PORT     initdb once (trust auth, superuser and
#                                     database "retronova"), start, wait until
#                                     it answers; a running server is left alone
#   services.sh pg-stop DIR           fast shutdown; nothing running is fine
#   services.sh pg-restart DIR PORT   pg-stop then pg-start
#   services.sh pg-url DIR PORT       prints postgresql://retronova@127.0.0.1:PORT/retronova
#   services.sh redis-start DIR PORT  start in the background (pidfile DIR/redis.pid), wait for PONG
#   services.sh redis-stop DIR        SIGTERM, then SIGKILL after 10 s
#   services.sh pg-bin                prints the PostgreSQL server binaries' directory
#   services.sh pg-user               prints the system user the server runs as when root
#
# PostgreSQL refuses to run as root: as root, the server runs as the system
# user $RN_PG_USER (default rnpg, created by scripts/deps.sh, or here if
# missing) and DIR is chowned to it, so DIR and its parents must be reachable
# by that user (/tmp is; a checkout under a 0700 home is not). Its data is in
# DIR/data, its log in DIR/postgres.log, its unix socket in DIR.
#
# Durability: by default both keep the settings a developer expects (Postgres
# with fsync; Redis snapshots into DIR/dump.rdb). With RN_EPHEMERAL=1 (what the
# tests use) Postgres runs with fsync, synchronous_commit and full_page_writes
# off, and Redis persists nothing (--save "" --appendonly no): fast, and fine
# for data that is thrown away.
#
# RN_SERVICE_TIMEOUT (seconds, default 30) bounds every wait.
set -euo pipefail

pg_user="${RN_PG_USER:-rnpg}"
timeout_s="${RN_SERVICE_TIMEOUT:-30}"
ephemeral="${RN_EPHEMERAL:-0}"
db_user=retronova
db_name=retronova

die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }
usage() {
    sed -n '6,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_port() {
    [[ "$1" =~ ^[0-9]+$ ]] && (("$1" > 0 && "$1" < 65536)) || die "bad port: '$1'"
}

abspath() {
    mkdir -p "$1"
    (cd "$1" && pwd)
}

# Milliseconds since the epoch, for bounded waits.
now_ms() { date +%s%3N; }

# Is PID a live process? A zombie (exited, not yet reaped by init) is not.
alive() {
    local state
    state="$(sed -n "s/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p" "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# --- PostgreSQL -------------------------------------------------------------

pg_bindir() {
    if [[ -n "${RN_PG_BIN:-}" ]]; then
        echo "$RN_PG_BIN"
        return
    fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$d" && -x "$d/postgres" ]] || die "PostgreSQL server binaries not found (run scripts/deps.sh)"
    echo "$d"
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# Runs a command as the PostgreSQL user (as root) or as ourselves, from /
# so that an unreadable current directory does not bother it.
as_pg() {
    if is_root; then
        (cd / && runuser -u "$pg_user" -- "$@")
    else
        (cd / && "$@")
    fi
}

ensure_pg_user() {
    is_root || return 0
    getent passwd "$pg_user" >/dev/null && return 0
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$pg_user" || die "could not create the system user $pg_user"
}

pg_log_tail() {
    local dir="$1"
    if [[ -f "$dir/postgres.log" ]]; then
        echo "--- last lines of $dir/postgres.log ---" >&2
        tail -n 20 "$dir/postgres.log" >&2
    fi
}

# Writes the settings that every start uses (included from postgresql.conf).
pg_write_conf() {
    local dir="$1" port="$2" sockdir="$1"
    # A unix socket path must fit in sun_path (108 bytes with the file name).
    ((${#sockdir} <= 80)) || sockdir=""
    {
        echo "# Written by scripts/services.sh at every start: do not edit."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$sockdir'"
        echo "max_connections = 200"
        echo "shared_buffers = 64MB"
        echo "logging_collector = off"
        echo "log_min_messages = warning"
        if [[ "$ephemeral" == 1 ]]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } >"$dir/data/retronova.conf"
    is_root && chown "$pg_user:" "$dir/data/retronova.conf"
    return 0
}

pg_wait_ready() {
    local bin="$1" port="$2" dir="$3" deadline
    deadline=$(($(now_ms) + timeout_s * 1000))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; do
        if (($(now_ms) > deadline)); then
            pg_log_tail "$dir"
            die "PostgreSQL on 127.0.0.1:$port did not answer within ${timeout_s}s"
        fi
        sleep 0.05
    done
}

pg_start() {
    local dir port bin fresh=0
    dir="$(abspath "$1")"
    port="$2"
    check_port "$port"
    bin="$(pg_bindir)"
    ensure_pg_user

    if is_root; then
        chown "$pg_user:" "$dir"
        chmod 0700 "$dir"
        as_pg test -w "$dir" ||
            die "$dir is not reachable by the user $pg_user (a parent directory is not searchable by others); choose a directory under /tmp or make the parents o+x"
    fi

    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        rm -rf "$dir/data"
        local sync_flag=()
        [[ "$ephemeral" == 1 ]] && sync_flag=(--no-sync)
        if ! as_pg "$bin/initdb" -D "$dir/data" -U "$db_user" --auth=trust -E UTF8 \
                --no-locale "${sync_flag[@]}" >"$dir/initdb.log" 2>&1; then
            tail -n 20 "$dir/initdb.log" >&2
            die "initdb failed in $dir/data"
        fi
        echo "include_if_exists = 'retronova.conf'" >>"$dir/data/postgresql.conf"
        fresh=1
    fi

    if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        local running_port
        running_port="$(sed -n '4p' "$dir/data/postmaster.pid" 2>/dev/null || true)"
        [[ "$running_port" == "$port" ]] ||
            die "a PostgreSQL server already runs from $dir/data on port ${running_port:-?}, not $port"
    else
        pg_write_conf "$dir" "$port"
        is_root && { touch "$dir/postgres.log"; chown "$pg_user:" "$dir/postgres.log"; }
        if ! as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$timeout_s" -s \
                start >/dev/null 2>&1; then
            pg_log_tail "$dir"
            die "PostgreSQL did not start on 127.0.0.1:$port (data in $dir/data)"
        fi
    fi
    pg_wait_ready "$bin" "$port" "$dir"

    local exists
    exists="$("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db_name'" 2>&1)" ||
        die "cannot query PostgreSQL on 127.0.0.1:$port: $exists"
    if [[ "$exists" != 1 ]]; then
        "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$db_user" "$db_name" ||
            die "createdb $db_name failed"
    fi
    ((fresh)) && printf 'services: PostgreSQL cluster created in %s/data\n' "$dir" >&2
    return 0
}

pg_stop() {
    local dir bin pid
    [[ -d "$1" ]] || return 0
    dir="$(abspath "$1")"
    [[ -f "$dir/data/postmaster.pid" ]] || return 0
    bin="$(pg_bindir)"
    if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t "$timeout_s" -s stop >/dev/null 2>&1 ||
            as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 10 -s stop >/dev/null 2>&1 ||
            true
    fi
    # Last resort: a postmaster that ignored both shutdown modes.
    pid="$(sed -n '1p' "$dir/data/postmaster.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" &&
        grep -q postgres "/proc/$pid/comm" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "services: PostgreSQL in $dir did not stop; killed it" >&2
    fi
    return 0
}

pg_url() {
    check_port "$2"
    printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$db_user" "$2" "$db_name"
}

# --- Redis ------------------------------------------------------------------

redis_pid() {
    local dir="$1" pid
    pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" &&
        grep -q redis "/proc/$pid/comm" 2>/dev/null; then
        echo "$pid"
    fi
}

redis_start() {
    local dir port deadline pid
    dir="$(abspath "$1")"
    port="$2"
    check_port "$port"
    command -v redis-server >/dev/null || die "redis-server not found (run scripts/deps.sh)"
    command -v redis-cli >/dev/null || die "redis-cli not found (run scripts/deps.sh)"

    pid="$(redis_pid "$dir")"
    if [[ -n "$pid" ]]; then
        local running_port
        running_port="$(cat "$dir/redis.port" 2>/dev/null || true)"
        [[ "$running_port" == "$port" ]] ||
            die "a Redis server (pid $pid) already runs from $dir on port ${running_port:-?}, not $port"
    else
        rm -f "$dir/redis.pid"
        local persist=(--save "" --appendonly no)
        [[ "$ephemeral" == 1 ]] || persist=(--save "60 1" --appendonly no --dbfilename dump.rdb)
        echo "$port" >"$dir/redis.port"
        : >"$dir/redis.log"
        redis-server --bind 127.0.0.1 --port "$port" --daemonize yes \
            --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
            "${persist[@]}" >/dev/null 2>&1 ||
            { tail -n 20 "$dir/redis.log" >&2; die "redis-server did not start"; }
    fi

    deadline=$(($(now_ms) + timeout_s * 1000))
    until [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; do
        if (($(now_ms) > deadline)) || grep -q 'Could not create server\|Failed listening' "$dir/redis.log"; then
            echo "--- last lines of $dir/redis.log ---" >&2
            tail -n 20 "$dir/redis.log" >&2
            redis_stop "$dir"
            die "Redis on 127.0.0.1:$port did not answer PING"
        fi
        sleep 0.05
    done
    # The pidfile is written right after daemonizing; PONG means it is there.
    [[ -n "$(redis_pid "$dir")" ]] || die "Redis answers on 127.0.0.1:$port but $dir/redis.pid names no redis process (another server on that port?)"
    return 0
}

redis_stop() {
    local dir pid deadline
    [[ -d "$1" ]] || return 0
    dir="$(abspath "$1")"
    pid="$(redis_pid "$dir")"
    if [[ -n "$pid" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$(($(now_ms) + 10000))
        while alive "$pid"; do
            if (($(now_ms) > deadline)); then
                kill -KILL "$pid" 2>/dev/null || true
                echo "services: Redis (pid $pid) did not stop; killed it" >&2
                break
            fi
            sleep 0.05
        done
    fi
    rm -f "$dir/redis.pid"
    return 0
}

# --- main -------------------------------------------------------------------

cmd="${1:-}"
case "$cmd" in
pg-start) (($# == 3)) || usage; pg_start "$2" "$3" ;;
pg-stop) (($# == 2)) || usage; pg_stop "$2" ;;
pg-restart) (($# == 3)) || usage; pg_stop "$2"; pg_start "$2" "$3" ;;
pg-url) (($# == 3)) || usage; pg_url "$2" "$3" ;;
redis-start) (($# == 3)) || usage; redis_start "$2" "$3" ;;
redis-stop) (($# == 2)) || usage; redis_stop "$2" ;;
pg-bin) (($# == 1)) || usage; pg_bindir ;;
pg-user) (($# == 1)) || usage; echo "$pg_user" ;;
*) usage ;;
esac
