#!/bin/sh
# run_egress_clients.sh -- real clients that keep their default base URLs, through airlock's
# egress proxy (a mode: forward listener intercepting api.openai.com and api.anthropic.com
# with the org CA from `airlock ca init`): Claude Code, the official openai and
# @anthropic-ai/sdk packages through undici's ProxyAgent, and the Codex CLI
# (egress_clients.mjs). Installs the npm packages when missing (npm.sh): without node or
# the npm registry it says SKIP and counts nothing, or fails under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node egress_clients
need_modules egress_clients openai @anthropic-ai/sdk undici @anthropic-ai/claude-code @openai/codex
exec node egress_clients.mjs
