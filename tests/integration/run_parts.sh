#!/bin/sh
# run_parts.sh -- limits.max_body_values: 413 on every endpoint, nothing upstream.
exec python3 "$(dirname "$0")/parts_test.py" "$@"
