#!/bin/sh
# run_refused.sh -- refused requests leave a request and a response record.
exec python3 "$(dirname "$0")/refused_test.py" "$@"
