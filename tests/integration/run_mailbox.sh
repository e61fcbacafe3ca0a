#!/bin/sh
# run_mailbox.sh -- results of worker threads reach the loop when memory runs out: local
# answers that lose a piece end with a clear error, audit syncs and reloads keep working.
exec python3 "$(dirname "$0")/mailbox_test.py" "$@"
