#!/bin/sh
# run_onereading.sh -- one strict reading of every body, and policy test == the gateway.
exec python3 "$(dirname "$0")/onereading_test.py" "$@"
