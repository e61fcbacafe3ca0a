#!/bin/sh
# run_tls.sh -- TLS listener and upstream TLS (ca_file, wrong CA, wrong name) with a test CA.
exec python3 "$(dirname "$0")/tls_test.py" "$@"
