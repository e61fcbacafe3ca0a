#!/bin/sh
# audit_bound.sh -- how far `sync: batch` could go on this machine. bench/audit.sh
# measures what the gateway does; this measures what it would do if parts of the
# audit cost nothing, to bound what any redesign of the writer could reach under the
# issue's own rules (the request record durable before a byte goes upstream, a writer
# thread, an event loop that never waits on the disk).
#
# It builds a copy of this tree with bench/audit_bound.patch applied (knobs read from
# the environment, each taking one cost away; nothing of it is in the product) and runs
# the same wrk load as audit.sh against it, the configurations alternated REPEAT times:
#
#   off                   no audit
#   batch                 sync: batch, as shipped
#   none                  sync: none, as shipped (no fdatasync, no syncer thread)
#   batch, no writes      records framed, hashed and chained but never written
#                         (AIRLOCK_BOUND_NOWRITE=1)
#   batch, no writes,     ... and every fdatasync returns at once (AIRLOCK_BOUND_NOSYNC=1):
#     no fdatasync        all that is left is the hand-off to the syncer thread and back
#   batch, no writes,     ... with real fdatasyncs that wait 800 us first, so that each
#     groups x3           covers about three times as many requests (AIRLOCK_BOUND_DELAY_US)
#   none, no writes       the records' metadata and hashing alone
#
# Then the machine's own prices for a system call, a thread round trip and a
# fdatasync (bench/handoff_cost.c).
#
#   sh bench/audit_bound.sh   (env: REPEAT=3 alternating runs, WRK_SECONDS=6, WRK_CONNS=32)
# Not part of `make test`. Takes about REPEAT x 7 x (WRK_SECONDS + 2) seconds.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need_wrk || exit 0

# The patched copy: the tracked sources as they are in the work tree, built in a
# folder of its own, removed on exit (by bench_cleanup once the mock runs).
SRC=$(mktemp -d)
BENCH_ALSO_REMOVE=$SRC
trap 'rm -rf "$SRC"' EXIT INT TERM
git ls-files -z | xargs -0 -I{} cp --parents {} "$SRC" 2>/dev/null ||
    { echo "audit_bound.sh: cannot copy the tree"; exit 1; }
(cd "$SRC" && patch -s -p1 <"$ROOT/bench/audit_bound.patch") ||
    { echo "audit_bound.sh: bench/audit_bound.patch does not apply to audit/writer.c: refresh it"; exit 1; }
echo "== building the bound variant (bench/audit_bound.patch) in $SRC"
make -C "$SRC" --no-print-directory -j"$(nproc)" BUILD=build build/airlock build/mock_provider >"$SRC/make.log" 2>&1 ||
    { tail -20 "$SRC/make.log"; echo "audit_bound.sh: build failed"; exit 1; }
BUILD="$SRC/build"

echo "== this machine's prices (bench/handoff_cost.c)"
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread -o "$SRC/handoff_cost" bench/handoff_cost.c ||
    { echo "audit_bound.sh: cannot build handoff_cost"; exit 1; }
"$SRC/handoff_cost" "${TMPDIR:-/tmp}" 2000 || exit 1

bench_start_mock || exit 0
bench_wrk_body "$BENCH_CHAT_BODY"
SECS=${WRK_SECONDS:-6}
CONNS=${WRK_CONNS:-32}
REPEAT=${REPEAT:-3}

# name | sync mode (off: no audit) | knobs
CONFIGS="off|off|
batch|batch|
none|none|
batch, no writes|batch|AIRLOCK_BOUND_NOWRITE=1
batch, no writes, no fdatasync|batch|AIRLOCK_BOUND_NOWRITE=1 AIRLOCK_BOUND_NOSYNC=1
batch, no writes, groups x3|batch|AIRLOCK_BOUND_NOWRITE=1 AIRLOCK_BOUND_DELAY_US=800
none, no writes|none|AIRLOCK_BOUND_NOWRITE=1"

: >"$TMP/res"
r=0
while [ $r -lt "$REPEAT" ]; do
    i=0
    echo "$CONFIGS" | while IFS='|' read -r name mode knobs; do
        i=$((i + 1))
        rm -rf "$TMP/audit-$i"
        if [ "$mode" = off ]; then
            bench_allow_config "c$i" ""
        else
            bench_allow_config "c$i" "audit: {dir: $TMP/audit-$i, sync: $mode}"
        fi
        # the knobs reach only this gateway: $(...) is a subshell
        # shellcheck disable=SC2086 # knobs are NAME=VALUE words
        x=$( [ -z "$knobs" ] || export $knobs; bench_measure "c$i") ||
            { echo "skipped: the gateway could not serve config $name"; exit 1; }
        echo "$i|$name|$x" >>"$TMP/res"
    done || exit 0
    r=$((r + 1))
done

echo
echo "wrk -t2 -c$CONNS -d${SECS}s POST /v1/chat/completions, mock upstream on loopback, medians of $REPEAT alternating runs:"
python3 - "$TMP/res" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    i, name, vals = line.rstrip("\n").split("|")
    runs.setdefault((int(i), name), []).append(list(map(float, vals.split())))
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in runs.items()}
off = next(v for k, v in med.items() if k[1] == "off")
print("  %-32s %8s %7s %13s %13s %9s" % ("", "req/s", "vs off", "gateway CPU", "machine CPU", "req/sync"))
for (i, name), (rps, gw, mach, grp) in sorted(med.items()):
    ratio = "%.2fx" % (rps / off[0]) if name != "off" else ""
    print("  %-32s %8.0f %7s %10.1f us %10.1f us %9s" % (name, rps, ratio, gw, mach,
          "%.1f" % grp if grp > 0 else ""))
print("  (each run's req/s: %s)" % "; ".join(
    "%s: %s" % (k[1], " ".join("%.0f" % x[0] for x in v)) for k, v in sorted(runs.items())))
PY
