#!/bin/sh
# run_egress.sh -- the egress proxy: interception, tunnels, refusals, identity, audit (SPEC §8).
exec python3 "$(dirname "$0")/egress_test.py" "$@"
