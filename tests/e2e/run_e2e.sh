#!/bin/sh
# run_e2e.sh -- end-to-end tests with the official OpenAI and Anthropic SDKs (node) against
# the built airlock + the mock provider, plain and over TLS (e2e.mjs, sdk_tests.mjs).
# Installs the npm packages when missing (npm.sh): without node or the npm registry it says
# SKIP and counts nothing, or fails under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node e2e
need_modules e2e openai @anthropic-ai/sdk anthropic-sdk-v0
exec node e2e.mjs
