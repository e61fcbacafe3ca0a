#!/bin/sh
# run_openai_agents.sh -- the OpenAI Agents SDK for JS (npm @openai/agents) against the built
# airlock + the mock provider (openai_agents.mjs). Installs the packages when missing
# (npm.sh): without node or the npm registry it says SKIP and counts nothing, or fails
# under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node openai_agents
need_modules openai_agents @openai/agents zod
exec node openai_agents.mjs
