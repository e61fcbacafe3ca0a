#!/bin/sh
# audit.sh -- audit benchmark: records/s and MB/s appended per sync mode by concurrent
# writers that wait for durability (bench/audit_bench.c), audit verify MB/s; then, only
# when the gateway serves and the mock provider is built, the gateway's requests/s with
# the audit on (sync batch, none, always) versus off (wrk, loopback), with the CPU each
# costs per request: the gateway's and the whole machine's (wrk and the mock included).
#
#   sh bench/audit.sh     (env: BUILD=build dir, default build; QUICK=1 short run;
#                          TMPDIR=where logs go -- its file system sets the fsync cost;
#                          WRK_SECONDS=10, WRK_CONNS=32, REPEAT=3 alternating runs)
# Not part of `make test`.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}

echo "== make (BUILD=$BUILD)"
make --no-print-directory BUILD="$BUILD" "$BUILD/libairlock.a" >/dev/null || { echo "audit.sh: build failed"; exit 1; }
make --no-print-directory BUILD="$BUILD" "$BUILD/airlock" >/dev/null 2>&1 || true
make --no-print-directory BUILD="$BUILD" "$BUILD/mock_provider" >/dev/null 2>&1 || true

PKGS="libevent libevent_openssl libevent_pthreads openssl libcjson libsodium yaml-0.1 libhs"
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 -g -I. -pthread $(pkg-config --cflags $PKGS) \
    -o "$BUILD/audit_bench" bench/audit_bench.c "$BUILD/libairlock.a" \
    $(pkg-config --libs $PKGS) -pthread -lm || { echo "audit.sh: cannot build audit_bench"; exit 1; }

cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o "$BUILD/fsync_cost" bench/fsync_cost.c ||
    { echo "audit.sh: cannot build fsync_cost"; exit 1; }
echo "== the disk: one write + fdatasync, as a group commit does ($BUILD/fsync_cost)"
"$BUILD/fsync_cost" "${TMPDIR:-/tmp}" "$([ "$QUICK" = 1 ] && echo 500 || echo 2000)" || exit 1

echo "== audit writer and verifier (in process; $(nproc) cores; file system of ${TMPDIR:-/tmp}: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}'))"
if [ "$QUICK" = 1 ]; then
    "$BUILD/audit_bench" --seconds 1 --verify-mb 64
else
    "$BUILD/audit_bench" --seconds 3 --verify-mb 256
fi || exit 1

# ---------------------------------------------------------------------------------
# Gateway requests/s with the audit on vs off. Runs only where build/airlock serves
# and build/mock_provider exists; otherwise says why it skipped.
# ---------------------------------------------------------------------------------
echo
echo "== gateway requests/s: audit sync batch / none / off / always"
if [ ! -x "$BUILD/airlock" ] || [ ! -x "$BUILD/mock_provider" ]; then
    echo "skipped: $BUILD/airlock or $BUILD/mock_provider is missing"
    exit 0
fi
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need_wrk || exit 0
bench_start_mock || exit 0

bench_wrk_body "$BENCH_CHAT_BODY"
SECS=${WRK_SECONDS:-10}; [ "$QUICK" = 1 ] && SECS=3
CONNS=${WRK_CONNS:-32}

# Alternate the three configurations REPEAT times (the machine's load drifts; each
# ratio is of medians over the same stretch of time).
REPEAT=${REPEAT:-3}; [ "$QUICK" = 1 ] && REPEAT=1
: >"$TMP/res"
r=0
while [ $r -lt "$REPEAT" ]; do
    rm -rf "$TMP/audit-batch" "$TMP/audit-none"
    rm -rf "$TMP/audit-always"
    bench_allow_config always "audit: {dir: $TMP/audit-always, sync: always}"
    A=$(bench_measure always) || { echo "skipped: the gateway could not serve the benchmark config"; exit 0; }
    bench_allow_config batch "audit: {dir: $TMP/audit-batch, sync: batch}"
    B=$(bench_measure batch) || { echo "skipped: the gateway could not serve the benchmark config"; exit 0; }
    bench_allow_config none "audit: {dir: $TMP/audit-none, sync: none}"
    N=$(bench_measure none) || { echo "skipped: the gateway could not serve the benchmark config"; exit 0; }
    bench_allow_config off ""
    O=$(bench_measure off) || { echo "skipped: the gateway could not serve the benchmark config"; exit 0; }
    echo "$B $N $O $A" >>"$TMP/res"
    r=$((r + 1))
done
echo "wrk -t2 -c$CONNS -d${SECS}s POST /v1/chat/completions, mock upstream on loopback, median of $REPEAT alternating runs:"
python3 - "$TMP/res" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
# each row: for batch, none, off, always: req/s, gateway us/req, machine us/req, req/fsync
med = [statistics.median(c) for c in zip(*rows)]
names = ["batch", "none", "off", "always"]
col = {n: med[4 * i:4 * i + 4] for i, n in enumerate(names)}
o = col["off"][0]
runs = lambda i: " ".join("%.0f" % r[4 * i] for r in rows)
for i, n in enumerate(names):
    rps, gw, mach, g = col[n]
    ratio = "%.2fx audit off" % (rps / o) if n != "off" else "             "
    group = ", %.1f requests per fdatasync" % g if g > 0 else ""
    print("  audit %-13s %8.0f req/s  %s   (runs: %s)" % ("off:" if n == "off" else "sync " + n + ":",
          rps, ratio, runs(i)))
    print("      CPU per request: gateway %.1f us, whole machine %.1f us%s" % (gw, mach, group))
    if n == "batch":
        print("      target >= 0.80x audit off with sync batch: %s" % ("met" if rps >= 0.8 * o else "NOT met"))
PY
if [ -x "$BUILD/airlock" ]; then
    "$BUILD/airlock" audit verify "$TMP/audit-batch" | sed 's/^/  verify of the batch log: /'
fi
