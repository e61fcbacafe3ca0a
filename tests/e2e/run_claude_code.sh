#!/bin/sh
# run_claude_code.sh -- Claude Code (npm @anthropic-ai/claude-code, `claude -p`) against the
# built airlock + the mock provider, offline, with ANTHROPIC_BASE_URL set to the gateway
# (claude_code.mjs). Installs the package when missing (npm.sh): without node or the npm
# registry it says SKIP and counts nothing, or fails under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node claude_code
need_modules claude_code @anthropic-ai/claude-code
exec node claude_code.mjs
