#!/bin/sh
# run_crash.sh -- kill -9 under load, restart, verify: no record of an answer is lost.
exec python3 "$(dirname "$0")/crash_test.py" "$@"
