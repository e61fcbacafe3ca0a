#!/bin/sh
# run_redteam.sh -- attacks on the surfaces of issues 13-15 and their fixes (docs/security.md).
exec python3 "$(dirname "$0")/redteam_test.py" "$@"
