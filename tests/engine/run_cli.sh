#!/bin/sh
# run_cli.sh -- `airlock engine run`: usage errors exit 2, a bad model exits 1 with one
# line, and a greedy run streams llama.cpp's golden text (stories260K, "plain" case).
# Env: AIRLOCK_BUILD (build dir), AIRLOCK_SHARED (../shared).
BIN="${AIRLOCK_BUILD:-build}/airlock"
SHARED="${AIRLOCK_SHARED:-../shared}"
MODEL="$SHARED/models/stories260K.gguf"
GOLDEN="$SHARED/models/golden/stories260K.json"
pass=0; fail=0
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
ok() { echo "ok   $1"; pass=$((pass + 1)); }
no() { echo "FAIL $1"; fail=$((fail + 1)); }

"$BIN" engine run >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && grep -q '^usage: airlock engine run' "$T/err"; then ok no_model_is_usage; else no no_model_is_usage; fi

"$BIN" engine run -m "$MODEL" -n lots >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && grep -q "bad value for -n" "$T/err"; then ok bad_number; else no bad_number; fi

"$BIN" engine run -m "$MODEL" --frobnicate 3 >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ]; then ok unknown_option; else no unknown_option; fi

"$BIN" engine run -m "$T/missing.gguf" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "missing.gguf: No such file" "$T/err"; then
    ok missing_model; else no missing_model; fi

printf 'this is not a model' >"$T/bad.gguf"
"$BIN" engine run -m "$T/bad.gguf" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "bad.gguf" "$T/err"; then
    ok not_gguf; else no not_gguf; fi

"$BIN" engine run -m "$MODEL" --chat -p hi >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 1 ] && grep -q "chat template" "$T/err"; then ok chat_needs_template; else no chat_needs_template; fi

# the golden "plain" case: 32 greedy tokens; the first greedy_text in the file is that case
want=$(grep -o '"greedy_text": "[^"]*"' "$GOLDEN" | head -1 | sed 's/^"greedy_text": "//; s/"$//')
"$BIN" engine run -m "$MODEL" -p "Once upon a time" -n 32 --threads 1 >"$T/out" 2>"$T/err"; rc=$?
got=$(cat "$T/out")
if [ $rc -eq 0 ] && [ -n "$want" ] && [ "$got" = "$want" ]; then ok greedy_golden; else
    no greedy_golden; echo "  got:  $got"; echo "  want: $want"; cat "$T/err"; fi
if grep -q "prompt: 5 tokens, prefill .* tok/s" "$T/err" && grep -q "generated 32 tokens, decode .* tok/s" "$T/err" &&
    grep -q "^loaded " "$T/err"; then ok speed_on_stderr; else no speed_on_stderr; cat "$T/err"; fi

# the same seed gives the same sampled text, another seed (almost surely) another
"$BIN" engine run -m "$MODEL" -n 40 --temp 1 --seed 7 --threads 1 >"$T/a" 2>/dev/null
"$BIN" engine run -m "$MODEL" -n 40 --temp 1 --seed 7 --threads 1 >"$T/b" 2>/dev/null
"$BIN" engine run -m "$MODEL" -n 40 --temp 1 --seed 8 --threads 1 >"$T/c" 2>/dev/null
if cmp -s "$T/a" "$T/b" && ! cmp -s "$T/a" "$T/c" && [ -s "$T/a" ]; then ok seeded_sampling; else no seeded_sampling; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
