#!/bin/sh
# run_continue_cli.sh -- Continue's CLI (npm @continuedev/cli, `cn -p`) with a config.yaml
# whose models point at the built airlock + the mock provider (continue_cli.mjs). Installs
# the package when missing (npm.sh): without node or the npm registry it says SKIP and
# counts nothing, or fails under CI=true.
cd "$(dirname "$0")" || exit 2
. ./npm.sh
need_node continue_cli
need_modules continue_cli @continuedev/cli
exec node continue_cli.mjs
