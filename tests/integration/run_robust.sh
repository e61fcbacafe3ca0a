#!/bin/sh
# run_robust.sh -- concurrency, big bodies, slow readers, smuggling, hostile JSON, audit exactness.
exec python3 "$(dirname "$0")/robust_test.py" "$@"
