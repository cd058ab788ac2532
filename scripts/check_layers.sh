#!/bin/sh
# The layer rule of hub/ (README "Layout"): a file may include headers of its
# own folder and of the folders below it, never of one above. Order, lowest
# first: common auth net engine api, then hub/ itself (the composition root).
# hub.h (the root's accessors, as Redis's server.h) and config.h (the settings
# it hands out) are the only root headers a lower folder may include.
# Run by the build (target rn_layers) and by ctest; exits 1 naming each offence.
# --self-test SRC: proves the check fails on a copy of SRC given an upward include.
set -eu
if [ "${1:-}" = "--self-test" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cp -r "$2/hub" "$tmp/hub"
    sh "$0" "$tmp" || { echo "layers: the tree as it is must pass" >&2; exit 1; }
    echo "#include \"session.h\"" >>"$tmp/hub/common/log.c"
    if sh "$0" "$tmp" 2>/dev/null; then
        echo "layers: an upward include (common -> net) was not caught" >&2
        exit 1
    fi
    exit 0
fi
src=${1:-$(dirname "$0")/..}
cd "$src/hub"
LAYERS="common auth net engine api"
rank() {
    i=0
    for l in $LAYERS; do
        [ "$l" = "$1" ] && { echo $i; return; }
        i=$((i + 1))
    done
    echo $i # hub/ itself: above every folder
}
# where a header lives: its folder's rank, or nothing (protocol/, storage/, system)
home() {
    for l in $LAYERS; do
        [ -f "$l/$1" ] && { rank "$l"; return; }
    done
    [ -f "$1" ] && rank root
    return 0
}
bad=0
for l in $LAYERS; do
    me=$(rank "$l")
    for f in "$l"/*.c "$l"/*.h; do
        [ -f "$f" ] || continue
        for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
            case "$h" in hub.h | config.h) continue ;; esac
            at=$(home "$h")
            if [ -n "$at" ] && [ "$at" -gt "$me" ]; then
                echo "layers: hub/$f includes $h, from a folder above $l" >&2
                bad=1
            fi
        done
    done
done
exit $bad
