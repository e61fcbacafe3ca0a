#!/bin/sh
# engine.sh -- built-in engine speed on SmolLM2-135M-shaped random-weight GGUFs (Q8_0, Q4_0):
# prefill 512 tokens, decode 128 tokens at 2 threads, and aggregate decode with 1/4/8
# concurrent sequences, medians of RUNS runs, beside llama.cpp's llama-bench figures for
# the same shapes on this machine type (2 threads): Q8_0 pp512 841 / tg128 146 tok/s,
# Q4_0 pp512 1298 / tg128 242 tok/s.
# The machine may be shared: each figure is also given per CPU-second per thread
# (process CPU time / threads), which contention from other processes inflates less.
# Env: AIRLOCK_BUILD (build dir, default build), AIRLOCK_SHARED, THREADS (2), RUNS (5),
# BENCH_DIR (where the generated models are cached, default /tmp/airlock-bench-models).
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${AIRLOCK_BUILD:-$ROOT/build}
SHARED=${AIRLOCK_SHARED:-$(cd "$ROOT/.." && pwd)/shared}
THREADS=${THREADS:-2}
RUNS=${RUNS:-5}
DIR=${BENCH_DIR:-/tmp/airlock-bench-models}
mkdir -p "$DIR"
for q in q8_0 q4_0; do
    if [ ! -s "$DIR/smollm2-shape-$q.gguf" ]; then
        echo "generating $DIR/smollm2-shape-$q.gguf"
        python3 "$SHARED/models/make_bench_gguf.py" "$DIR/smollm2-shape-$q.gguf.tmp" "$q"
        mv "$DIR/smollm2-shape-$q.gguf.tmp" "$DIR/smollm2-shape-$q.gguf"
    fi
done
make -s -C "$ROOT" BUILD="$(basename "$BUILD")" "$(basename "$BUILD")/libairlock.a" >/dev/null
cc -std=c11 -D_GNU_SOURCE -O2 -I"$ROOT" -o "$BUILD/engine_bench" "$ROOT/bench/engine_bench.c" \
    "$BUILD/libairlock.a" -lm -pthread
echo "engine bench: $THREADS threads, median of $RUNS runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/engine_bench" "$DIR/smollm2-shape-q8_0.gguf" "$THREADS" "$RUNS" 512 128 841 146
"$BUILD/engine_bench" "$DIR/smollm2-shape-q4_0.gguf" "$THREADS" "$RUNS" 512 128 1298 242
echo "targets: decode >= 1.0x, prefill >= 0.8x, 8 concurrent >= 4x one sequence"
