#!/bin/sh
# run_proxy.sh -- the HTTP surface (SPEC §3) and bad input (§7) against build/airlock + the mock.
exec python3 "$(dirname "$0")/proxy_test.py" "$@"
