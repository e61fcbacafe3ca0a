#!/bin/sh
# run_copy.sh -- an audit copy that cannot be kept fails the request closed (503 / a short stream).
exec python3 "$(dirname "$0")/copy_test.py" "$@"
