#!/bin/sh
# run_langchain.sh -- LangChain.js (@langchain/openai, @langchain/anthropic) against the
# built airlock + the mock provider (langchain.mjs). Installs the packages when missing
# (npm.sh): without node or the npm registry it says SKIP and counts nothing, or fails
# under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node langchain
need_modules langchain @langchain/core @langchain/openai @langchain/anthropic
exec node langchain.mjs
