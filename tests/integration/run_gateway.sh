#!/bin/sh
# run_gateway.sh -- policy through the gateway (block, route, redact, streaming restore),
# answering across formats, and the audit's byte-exactness against what the mock received.
exec python3 "$(dirname "$0")/gateway_test.py" "$@"
