#!/bin/sh
# run_keymask.sh -- a provider key echoed by the provider reaches neither client nor audit.
exec python3 "$(dirname "$0")/keymask_test.py" "$@"
