#!/bin/sh
# run_responses.sh -- POST /v1/responses and /v1/responses/compact: scanned, restored in every event, priced, routed.
exec python3 "$(dirname "$0")/responses_test.py" "$@"
