# npm.sh -- sourced by the run_*.sh scripts here: `need_node SUITE` and
# `need_modules SUITE DIR...` make sure node and the npm packages (package.json beside this
# file) are there, installing them only when one is missing. Where they cannot be had, the
# suite says SKIP and counts nothing -- except under CI=true, where the clients must be
# tested: there it is a failure. Only the install needs the npm registry; the tests run
# offline against the mock.
#   Claude Code's package links its native binary over bin/claude.exe in a postinstall
# script (install.cjs, from the platform package npm installed beside it); an npm that
# skipped install scripts leaves a small stub there, so it is run here when needed.

npm_give_up() { # SUITE REASON
    if [ "${CI:-}" = true ]; then
        echo "FAIL $1: $2 (CI=true: real clients must install and run)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "SKIP $1: $2"
    echo "0 passed, 0 failed"
    exit 0
}

need_node() { # SUITE
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        npm_give_up "$1" "node/npm not installed"
    fi
}

need_modules() { # SUITE MODULE_DIR...
    suite=$1
    shift
    missing=""
    for m in "$@"; do
        [ -f "node_modules/$m/package.json" ] || missing="$missing $m"
    done
    if [ -n "$missing" ]; then
        log=$(mktemp)
        echo "$suite: npm install (missing:$missing)"
        if ! npm install --no-audit --no-fund --foreground-scripts >"$log" 2>&1; then
            reason="npm install failed (no registry?): $(tail -n 3 "$log" | tr '\n' ' ')"
            rm -f "$log"
            npm_give_up "$suite" "$reason"
        fi
        rm -f "$log"
        for m in "$@"; do
            [ -f "node_modules/$m/package.json" ] || npm_give_up "$suite" "npm install did not bring $m"
        done
    fi
    cc=node_modules/@anthropic-ai/claude-code
    if [ -f "$cc/install.cjs" ] && [ "$(wc -c <"$cc/bin/claude.exe" 2>/dev/null || echo 0)" -lt 1000000 ]; then
        (cd "$cc" && node install.cjs) || npm_give_up "$suite" "@anthropic-ai/claude-code: install.cjs failed"
    fi
}
