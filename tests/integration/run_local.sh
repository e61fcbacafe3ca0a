#!/bin/sh
# run_local.sh -- the built-in engine behind the gateway: both APIs, streaming and not,
# usage, routing sensitive prompts to it, context overflow, client disconnect.
exec python3 "$(dirname "$0")/local_test.py" "$@"
