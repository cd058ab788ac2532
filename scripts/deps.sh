#!/usr/bin/env bash
# Installs everything the hub and its tests need, once. Idempotent and quiet
# when there is nothing to do: apt-get runs only for packages that are
# missing, npm only when tests/node_modules is missing or older than the lock.
#
# As root it also creates the system user that runs PostgreSQL (which refuses
# to run as root): $RN_PG_USER, default "rnpg".
#
# Usage: scripts/deps.sh        (no arguments; RN_SKIP_DEPS=1 makes it a no-op,
#                               RN_SKIP_BROWSER=1 leaves chromium out)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ "${RN_SKIP_DEPS:-0}" == 1 ]] && exit 0

export DEBIAN_FRONTEND=noninteractive
pg_user="${RN_PG_USER:-rnpg}"

say() { printf 'deps: %s\n' "$*" >&2; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

sudo_cmd=()
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 && sudo_cmd=(sudo -n)
fi

packages=(
    build-essential clang clang-format cmake pkg-config libclang-rt-14-dev
    libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libpq-dev libhiredis-dev
    libjwt-dev libssl-dev libjansson-dev
    postgresql postgresql-contrib redis-server redis-tools
    curl procps util-linux ca-certificates chromium
    haproxy iproute2
)
# The browser suite (tests/browser) drives the web demo in Debian's chromium;
# RN_SKIP_BROWSER=1 leaves it out (that suite then skips itself).
[[ "${RN_SKIP_BROWSER:-0}" == 1 ]] || packages+=(chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [[ "$status" == installed ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    if [[ "$(id -u)" != 0 && ${#sudo_cmd[@]} == 0 ]]; then
        die "missing packages (${missing[*]}); run as root or install them: apt-get install ${missing[*]}"
    fi
    say "installing ${missing[*]}"
    log="$(mktemp)"
    if ! { "${sudo_cmd[@]}" apt-get update -q &&
           "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
           >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        die "apt-get install failed"
    fi
    rm -f "$log"
fi

# The Debian postgresql package creates and starts a cluster of its own on
# port 5432 when a service manager is around; we never use it (our clusters
# live in the directories scripts/services.sh is given), so leave it be.

if [[ "$(id -u)" == 0 ]] && ! getent passwd "$pg_user" >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$pg_user" ||
        die "could not create the system user $pg_user"
fi

# node: the integration tests use node:test and the global fetch (node >= 18).
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
((node_major >= 18)) || die "node >= 18 is needed for the tests (found $(node --version 2>/dev/null || echo none))"

tests="$root/tests"
if [[ -f "$tests/package.json" ]]; then
    stamp="$tests/node_modules/.package-lock.json"
    if [[ ! -d "$tests/node_modules" ||
          ( -f "$tests/package-lock.json" && "$tests/package-lock.json" -nt "$stamp" ) ]]; then
        log="$(mktemp)"
        if [[ -f "$tests/package-lock.json" ]]; then
            npm_cmd=(npm ci)
        else
            npm_cmd=(npm install)
        fi
        if ! (cd "$tests" && "${npm_cmd[@]}" --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            rm -f "$log"
            die "${npm_cmd[*]} failed in tests/"
        fi
        rm -f "$log"
    fi
fi
