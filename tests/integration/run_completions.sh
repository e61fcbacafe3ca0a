#!/bin/sh
# run_completions.sh -- POST /v1/completions and /v1/embeddings: scanned, restored, priced, routed.
exec python3 "$(dirname "$0")/completions_test.py" "$@"
