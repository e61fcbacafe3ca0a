#!/bin/sh
# run_modified.sh -- x-airlock-modified, policy test's "modified", audit show --diff (issue 14).
exec python3 "$(dirname "$0")/modified_test.py" "$@"
