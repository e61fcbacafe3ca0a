#!/bin/sh
# run_offloop.sh -- big bodies are decided off the event loop (proxy/decider.c).
exec python3 "$(dirname "$0")/offloop_test.py" "$@"
