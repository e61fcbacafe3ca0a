#!/bin/sh
# run_mock.sh -- the mock provider's own wire formats and controls (every other suite trusts it).
exec python3 "$(dirname "$0")/mock_test.py" "$@"
