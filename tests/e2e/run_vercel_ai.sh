#!/bin/sh
# run_vercel_ai.sh -- the Vercel AI SDK (npm ai 5.x, @ai-sdk/openai, @ai-sdk/anthropic)
# against the built airlock + the mock provider (vercel_ai.mjs). Installs the packages when
# missing (npm.sh): without node or the npm registry it says SKIP and counts nothing, or
# fails under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node vercel_ai
need_modules vercel_ai ai @ai-sdk/openai @ai-sdk/anthropic
exec node vercel_ai.mjs
