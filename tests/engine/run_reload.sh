#!/bin/sh
# run_reload.sh -- SIGHUP reloads adding and removing builtin providers while local requests
# are answered: new models load off the event loop, unreferenced ones are unloaded.
exec python3 "$(dirname "$0")/reload_test.py" "$@"
