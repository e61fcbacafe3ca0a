#!/bin/sh
# fuzz.sh -- `make fuzz`: build every fuzz/fuzz_*.c as a libFuzzer target with clang
# (ASan+UBSan) into build-fuzz/. Run one with e.g.
#   build-fuzz/fuzz_gguf -max_total_time=60 fuzz/corpus/gguf
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v clang >/dev/null || { echo "fuzz: clang is required" >&2; exit 1; }
make --no-print-directory BUILD=build-fuzz CC=clang OPT="-O1 -fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libairlock.a
PKGS="libevent libevent_openssl libevent_pthreads openssl libcjson libsodium yaml-0.1 libhs"
for f in fuzz/fuzz_*.c; do
    [ -f "$f" ] || continue
    out=build-fuzz/$(basename "$f" .c)
    echo "  FUZZ    $out"
    clang -std=c11 -D_GNU_SOURCE -g -O1 -I. $(pkg-config --cflags $PKGS) \
        -fsanitize=fuzzer,address,undefined -o "$out" "$f" build-fuzz/libairlock.a \
        $(pkg-config --libs $PKGS) -lhttp_parser -pthread -lm
done
