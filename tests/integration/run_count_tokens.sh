#!/bin/sh
# run_count_tokens.sh -- POST /v1/messages/count_tokens: decided as /v1/messages, counted where it is routed.
exec python3 "$(dirname "$0")/count_tokens_test.py" "$@"
