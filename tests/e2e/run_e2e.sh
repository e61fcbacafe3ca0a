#!/bin/sh
# run_e2e.sh -- end-to-end tests with the official OpenAI and Anthropic SDKs (node) against
# build/airlock + the mock provider, plain and over TLS. Installs the npm packages on first
# run; without node or the npm registry it says SKIP and counts nothing.
cd "$(dirname "$0")" || exit 2
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIP e2e: node/npm not installed"
    echo "0 passed, 0 failed"
    exit 0
fi
if [ ! -d node_modules/openai ] || [ ! -d node_modules/@anthropic-ai/sdk ] || [ ! -d node_modules/anthropic-sdk-v0 ]; then
    log=$(mktemp)
    if ! npm install --no-audit --no-fund >"$log" 2>&1; then
        echo "SKIP e2e: npm install failed (no registry?): $(tail -n 3 "$log" | tr '\n' ' ')"
        echo "0 passed, 0 failed"
        exit 0
    fi
fi
exec node e2e.mjs
