#!/bin/sh
# check-format: fails when a tracked C file under hub/ storage/ protocol/
# tests/unit tests/fuzz differs from .clang-format (clang-format 14). The file
# list comes from git, so generated and untracked files are not checked.
# Usage: scripts/check-format.sh [SOURCE_DIR]   (ctest: the `style` label)
set -eu
cd "${1:-$(dirname "$0")/..}"
CLANG_FORMAT=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format)}
files=$(git ls-files -- 'hub/*.c' 'hub/*.h' 'storage/*.c' 'storage/*.h' 'protocol/*.c' \
    'protocol/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 'tests/fuzz/*.c' 'tests/fuzz/*.h')
[ -n "$files" ] || { echo "check-format: no files listed by git" >&2; exit 1; }
# shellcheck disable=SC2086 # one word per file: the paths have no spaces
"$CLANG_FORMAT" --dry-run -Werror $files
echo "check-format: $(echo "$files" | wc -l) files match .clang-format"
