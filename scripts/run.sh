#!/bin/sh
# run.sh -- `make run`: serve the embedded default (SPEC §6). The model is the first
# *.gguf in ./models/ or $AIRLOCK_MODEL; with neither, try `make model`, and where the
# network does not allow the download, fall back to a test model from ../shared/models/.
BIN=${1:-build/airlock}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
if [ -z "${AIRLOCK_MODEL:-}" ] && ! ls models/*.gguf >/dev/null 2>&1; then
    if ! sh scripts/model.sh; then
        SHARED=${AIRLOCK_SHARED:-$ROOT/../shared}
        for m in "$SHARED/models/tiny-llama3-q8_0.gguf" "$SHARED/models/stories260K.gguf"; do
            if [ -f "$m" ]; then
                echo "run: using the test model $m (random weights: answers are gibberish;"
                echo "run: it shows the path end to end -- add a real model for real answers)"
                AIRLOCK_MODEL=$m
                export AIRLOCK_MODEL
                break
            fi
        done
    fi
fi
exec "$BIN" serve
