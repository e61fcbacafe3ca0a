#!/bin/sh
# run_codex.sh -- the Codex CLI (npm @openai/codex, `codex exec`) against the built airlock +
# the mock provider, offline, through a config.toml provider whose base_url is the gateway
# and wire_api = "responses" (codex.mjs). Installs the package when missing (npm.sh):
# without node or the npm registry it says SKIP and counts nothing, or fails under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node codex
need_modules codex @openai/codex
exec node codex.mjs
