#!/bin/sh
# run_lifecycle.sh -- check-config, SIGHUP reload, SIGTERM drain, audit left behind.
exec python3 "$(dirname "$0")/lifecycle_test.py" "$@"
