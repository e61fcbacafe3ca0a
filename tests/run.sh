#!/bin/sh
# run.sh -- run every unit-test binary under BUILD/tests and every tests/*/run_*.sh
# suite; each prints `N passed, N failed` last. Prints the totals the same way and
# exits non-zero if anything failed or a suite crashed without a closing line.
# Usage: tests/run.sh BUILD_DIR   (env: AIRLOCK_SHARED, default ../shared)
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export AIRLOCK_BUILD="$ROOT/$BUILD"
export AIRLOCK_SHARED="${AIRLOCK_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
cd "$ROOT" || exit 2
total_p=0; total_f=0; broken=""
LOG=$(mktemp)
run_one() {
    name=$1; shift
    echo "== $name"
    "$@" >"$LOG" 2>&1
    rc=$?
    cat "$LOG"
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG" | tail -1)
    if [ -z "$last" ]; then
        echo "!! $name: exited $rc without a closing line"
        broken="$broken $name"; total_f=$((total_f + 1)); return
    fi
    p=$(echo "$last" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$last" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    total_p=$((total_p + p)); total_f=$((total_f + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!! $name: exited $rc"; broken="$broken $name"; total_f=$((total_f + 1))
    fi
}
for t in $(find "$BUILD/tests" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort); do
    run_one "$t" "$t"
done
for s in $(ls tests/*/run_*.sh 2>/dev/null | sort); do
    run_one "$s" sh "$s"
done
rm -f "$LOG"
[ -n "$broken" ] && echo "broken suites:$broken"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
