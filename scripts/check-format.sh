#!/bin/sh
# check-format.sh -- fail when a change brings C lines that clang-format (.clang-format)
# would write differently. Only the lines the change adds or edits are judged, so code
# nobody touched never fails the check (much of the tree is not clang-format clean as a
# whole, and a change need not reformat what it did not write).
#
# Usage: scripts/check-format.sh [BASE]
# The change is everything between BASE and the working tree (commits and uncommitted
# edits alike). BASE is, in order: the argument, $FORMAT_BASE, HEAD~1 (the previous
# landed commit: in CI's fresh clone that is the whole change under test, and for a merge
# commit the first parent, so the whole merged branch). A repository with no commit before
# HEAD is checked against the empty tree (every line is new); a shallow clone that cannot
# see HEAD~1 is not checked (say so and exit 0: set FORMAT_BASE or fetch one more commit).
# clang-format is installed with apt-get when missing (CI runs as root on Debian).
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if ! command -v clang-format >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    echo "check-format: installing clang-format" >&2
    $SUDO apt-get install -y -qq clang-format >&2 ||
        { $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq clang-format >&2; } || {
        echo "check-format: clang-format is missing and could not be installed" >&2
        exit 1
    }
    command -v clang-format >/dev/null 2>&1 || {
        echo "check-format: clang-format installed but not on PATH" >&2
        exit 1
    }
fi

base=${1:-${FORMAT_BASE:-}}
if [ -z "$base" ]; then
    if git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
        base='HEAD~1'
    elif [ "$(git rev-parse --is-shallow-repository)" = true ]; then
        echo "check-format: SKIP: shallow clone, the commit before HEAD is not here" \
            "(set FORMAT_BASE, or clone with --depth 2 or more)"
        exit 0
    else
        base=$(git hash-object -t tree /dev/null) # the first commit: all of it is new
    fi
fi
git rev-parse -q --verify "$base^{tree}" >/dev/null || {
    echo "check-format: base '$base' is not a commit or tree here" >&2
    exit 2
}

# "FILE FIRST:LAST" for every added or changed run of lines in a C file (deleted and
# renamed-away files have nothing left to format); files git does not track yet are new
# from their first line to their last.
ranges=$(
    git diff -U0 --no-color --no-ext-diff --diff-filter=ACMR "$base" -- '*.c' '*.h' | awk '
        /^\+\+\+ / { file = substr($0, 7); next }
        /^@@ / {
            split($3, r, ",")       # +START[,COUNT]
            start = substr(r[1], 2); count = (2 in r) ? r[2] : 1
            if (count > 0) print file " " start ":" start + count - 1
        }'
    git ls-files --others --exclude-standard -- '*.c' '*.h' | while read -r f; do
        n=$(wc -l <"$f")
        [ "$n" -gt 0 ] && echo "$f 1:$n"
    done
)

bad=""
report=$(mktemp)
trap 'rm -f "$report"' EXIT
checked=0
for file in $(printf '%s\n' "$ranges" | awk 'NF { print $1 }' | sort -u); do
    [ -f "$file" ] || continue
    lines=$(printf '%s\n' "$ranges" | awk -v f="$file" '$1 == f { printf " --lines=%s", $2 }')
    checked=$((checked + 1))
    # shellcheck disable=SC2086
    if ! clang-format --dry-run --Werror $lines "$file" >/dev/null 2>"$report.one"; then
        bad="$bad $file"
        grep -E '^[^ ]+:[0-9]+:[0-9]+: ' "$report.one" | head -10 >>"$report"
    fi
    rm -f "$report.one"
done

if [ -n "$bad" ]; then
    echo "check-format: FAIL: lines changed since $base are not clang-format clean in:"
    for f in $bad; do
        echo "  $f"
    done
    echo "first places (clang-format $(clang-format --version | sed -E 's/.*version ([0-9.]+).*/\1/')):"
    sed 's/^/  /' "$report"
    echo "reformat just those lines:  git clang-format -f $base   (then review the result)"
    exit 1
fi
echo "check-format: ok ($checked changed C files since $base)"
