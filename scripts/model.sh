#!/bin/sh
# model.sh -- `make model`: download a small instruct model (SmolLM2-135M-Instruct,
# GGUF Q8_0, ~145 MB) into ./models/. Exits non-zero, with a clear line, where the
# network does not allow it; `make run` then falls back to a test model.
set -u
URL=${AIRLOCK_MODEL_URL:-https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/resolve/main/smollm2-135m-instruct-q8_0.gguf}
OUT=models/smollm2-135m-instruct-q8_0.gguf
mkdir -p models
if [ -s "$OUT" ]; then
    echo "model: $OUT is already there"
    exit 0
fi
echo "model: downloading $URL"
if command -v curl >/dev/null 2>&1; then
    curl -fL --connect-timeout 10 --max-time 600 -o "$OUT.part" "$URL"
elif command -v wget >/dev/null 2>&1; then
    wget -T 10 -O "$OUT.part" "$URL"
else
    echo "model: neither curl nor wget is installed" >&2
    exit 1
fi
rc=$?
if [ $rc -ne 0 ] || [ ! -s "$OUT.part" ]; then
    rm -f "$OUT.part"
    echo "model: download failed (no network access to the model host?)." >&2
    echo "model: put any *.gguf into ./models/ or set AIRLOCK_MODEL=/path/to/model.gguf" >&2
    exit 1
fi
# a GGUF file starts with the magic "GGUF"
if [ "$(head -c 4 "$OUT.part")" != "GGUF" ]; then
    rm -f "$OUT.part"
    echo "model: the download is not a GGUF file" >&2
    exit 1
fi
mv "$OUT.part" "$OUT"
echo "model: saved $OUT"
