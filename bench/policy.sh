#!/bin/sh
# policy.sh -- policy benchmark: decision time and scan throughput (bench/policy_bench.c),
# then, when the gateway and the mock provider are built, the gateway's requests/s with
# the built-in detectors in the rules versus a rules-only policy (wrk, loopback).
#
#   sh bench/policy.sh            (env: BUILD=build dir, default build; QUICK=1 for a short run;
#                                  WRK_SECONDS=10, WRK_CONNS=32, ROUNDS=3)
# Prints what it measured and how, and the targets beside the figures. Not part of `make test`.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}

echo "== make (BUILD=$BUILD)"
make --no-print-directory BUILD="$BUILD" "$BUILD/airlock" >/dev/null || { echo "policy.sh: build failed"; exit 1; }
make --no-print-directory BUILD="$BUILD" "$BUILD/mock_provider" >/dev/null 2>&1 || true

PKGS="libevent libevent_openssl libevent_pthreads openssl libcjson libsodium yaml-0.1 libhs"
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 -g -I. -pthread $(pkg-config --cflags $PKGS) \
    -o "$BUILD/policy_bench" bench/policy_bench.c "$BUILD/libairlock.a" \
    $(pkg-config --libs $PKGS) -lhttp_parser -pthread -lm || { echo "policy.sh: cannot build policy_bench"; exit 1; }

echo "== policy_decide (in process, $(nproc) cores on this machine, 1 used)"
if [ "$QUICK" = 1 ]; then "$BUILD/policy_bench" --quick; else "$BUILD/policy_bench"; fi || exit 1

echo
echo "== gateway requests/s: built-in detectors on vs rules-only"
if [ ! -x "$BUILD/airlock" ] || [ ! -x "$BUILD/mock_provider" ]; then
    echo "skipped: $BUILD/airlock or $BUILD/mock_provider is missing"
    exit 0
fi
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_need_wrk || exit 0
bench_start_mock || exit 0

# $1: config name, $2: rules block
write_config() {
    GW_PORT=$(free_port)
    bench_mock_config "$TMP/$1.yaml" "$GW_PORT" "audit:
  dir: $TMP/audit-$1
  sync: none
rules:
$2"
}

RULES_DETECT="  - name: no-secrets-out
    if: {detected: [secrets]}
    then: {action: block}
  - name: stay-home
    if: {detected: [credit_card, iban, us_ssn]}
    then: {action: block}
  - name: default
    then: {action: allow}"
RULES_ONLY="  - name: default
    then: {action: allow}"

BODY='{"model":"gpt-4o","messages":[{"role":"system","content":"You are a careful assistant."},{"role":"user","content":"Summarise the incident: the worker pool on host 10.20.30.40 stalled at 09:21 after the 2.14.1 deploy; order 48213907 and ticket 58321 were affected. Ask maria.lopez@example.com for the timeline. The retry loop backed off correctly but the queue depth grew to 4096 and latency p99 reached 880 ms for about twelve minutes before the rollback."}]}'
bench_wrk_body "$BODY"

SECS=${WRK_SECONDS:-10}; [ "$QUICK" = 1 ] && SECS=3
CONNS=${WRK_CONNS:-32}

# $1: config name; prints requests/s
measure() {
    bench_start_gateway "$1" "$GW_PORT" || return 1
    code=$(curl -s -o "$TMP/$1.resp" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary @"$TMP/body.json" "http://127.0.0.1:$GW_PORT/v1/chat/completions")
    if [ "$code" != 200 ]; then
        echo "gateway answered $code ($1): $(head -c 300 "$TMP/$1.resp")" >&2
        bench_stop_gateway; return 1
    fi
    wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$TMP/post.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" >"$TMP/$1.wrk" 2>&1
    bench_stop_gateway
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$TMP/$1.wrk")
    [ -n "$non2xx" ] && echo "warning ($1): $non2xx non-2xx responses" >&2
    sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$TMP/$1.wrk"
}

# alternate the two configs so that drift on a shared machine hits both alike
ROUNDS=${ROUNDS:-3}; [ "$QUICK" = 1 ] && ROUNDS=1
ON=""; OFF=""
r=0
while [ $r -lt $ROUNDS ]; do
    write_config detect "$RULES_DETECT"
    x=$(measure detect) || { echo "skipped: the gateway could not serve the benchmark config"; exit 0; }
    ON="$ON $x"
    write_config rulesonly "$RULES_ONLY"
    x=$(measure rulesonly) || { echo "skipped: the gateway could not serve the benchmark config"; exit 0; }
    OFF="$OFF $x"
    r=$((r + 1))
done

echo "wrk -t2 -c$CONNS -d${SECS}s POST /v1/chat/completions, $(wc -c <"$TMP/body.json")-byte body, mock upstream on"
echo "loopback, audit sync: none, $ROUNDS round(s) of (on, off) back to back:"
python3 - "$ON" "$OFF" <<'EOF'
import sys
on = [float(v) for v in sys.argv[1].split()]
off = [float(v) for v in sys.argv[2].split()]
mon, moff = sum(on) / len(on), sum(off) / len(off)
print(f"  rules with built-in detectors (block secrets, block card/iban/ssn, allow): {mon:8.0f} req/s {on}")
print(f"  rules-only (one allow rule, no detector named):                          {moff:8.0f} req/s {off}")
# each round's pair ran back to back, so its ratio is the least disturbed by other load
pairs = sorted(a / b for a, b in zip(on, off) if b)
r = pairs[len(pairs) // 2] if pairs else 0
print(f"  ratio on/off, median of the per-round ratios {[round(x, 3) for x in pairs]} = {r:.3f}"
      f"  (target >= 0.9: {'met' if r >= 0.9 else 'NOT met'})")
EOF
"$BUILD/policy_bench" --body "$TMP/body.json" | sed 's/^/  in process, same body: /'
echo "note: policy_decide scans every request whatever the rules (findings go to the audit), so"
echo "rules-only pays for detection too and the ratio measures rule evaluation only; the in-process"
echo "time above is what detection costs per request. Gateway, mock and wrk share $(nproc) cores."
