#!/bin/sh
# run_ca.sh -- `airlock ca init` / `ca bundle` (SPEC §1) and how check-config and serve
# report the egress section's problems (SPEC §8): the CA's files, mode, extensions and
# refusal to overwrite; the bundle's order; a leaf signed with the CA verifies; every
# egress error printed as FILE:LINE:COL: message, exit 2.
# Env: AIRLOCK_BUILD (build dir). Needs the openssl tool (scripts/deps.sh installs it).
BIN="${AIRLOCK_BUILD:-build}/airlock"
pass=0; fail=0
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
ok() { echo "ok   $1"; pass=$((pass + 1)); }
no() { echo "FAIL $1"; fail=$((fail + 1)); }
mode_of() { stat -c %a "$1"; }

# ---- ca init
"$BIN" ca init --out "$T/org" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 0 ] && [ -s "$T/org.crt" ] && [ -s "$T/org.key" ] && grep -q "wrote $T/org.crt" "$T/out"; then
    ok init_writes_both; else no init_writes_both; cat "$T/err"; fi
if [ "$(mode_of "$T/org.key")" = 600 ]; then ok key_mode_0600; else no key_mode_0600; fi
# the mode is 0600 whatever the umask
(umask 0; "$BIN" ca init --out "$T/loose" >/dev/null 2>&1)
if [ "$(mode_of "$T/loose.key")" = 600 ]; then ok key_mode_0600_umask_0; else no key_mode_0600_umask_0; fi
openssl x509 -in "$T/org.crt" -noout -text >"$T/text" 2>&1
if grep -q "CA:TRUE, pathlen:0" "$T/text" && grep -A1 "Basic Constraints: critical" "$T/text" | grep -q CA:TRUE; then
    ok ca_true_critical; else no ca_true_critical; cat "$T/text"; fi
if grep -A1 "Key Usage: critical" "$T/text" | grep -q "Certificate Sign, CRL Sign"; then
    ok key_usage; else no key_usage; fi
if grep -q "prime256v1" "$T/text" && grep -q "ecdsa-with-SHA256" "$T/text" &&
    grep -q "Subject Key Identifier" "$T/text" && grep -q "CN = airlock egress CA" "$T/text"; then
    ok p256_ski_cn; else no p256_ski_cn; fi
# ten years, and a 16-byte serial
end=$(openssl x509 -in "$T/org.crt" -noout -enddate | cut -d= -f2)
years=$(( ($(date -d "$end" +%s) - $(date +%s)) / 86400 / 365 ))
serial=$(openssl x509 -in "$T/org.crt" -noout -serial | cut -d= -f2)
if [ "$years" -ge 9 ] && [ "$years" -le 10 ] && [ ${#serial} -eq 32 ]; then ok ten_years_128bit_serial
else no ten_years_128bit_serial; echo "  years=$years serial=$serial"; fi
if openssl pkey -in "$T/org.key" -noout 2>/dev/null &&
    [ "$(openssl pkey -in "$T/org.key" -pubout 2>/dev/null)" = "$(openssl x509 -in "$T/org.crt" -noout -pubkey)" ]; then
    ok key_matches_cert; else no key_matches_cert; fi

# refuses to overwrite either file, and leaves them as they were
cp "$T/org.crt" "$T/org.crt.before"; cp "$T/org.key" "$T/org.key.before"
"$BIN" ca init --out "$T/org" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "refusing to overwrite" "$T/err" &&
    cmp -s "$T/org.crt" "$T/org.crt.before" && cmp -s "$T/org.key" "$T/org.key.before"; then
    ok overwrite_refused; else no overwrite_refused; cat "$T/err"; fi
: >"$T/only.key"
"$BIN" ca init --out "$T/only" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && [ ! -e "$T/only.crt" ] && grep -q "only.key exists" "$T/err"; then
    ok existing_key_refused; else no existing_key_refused; fi
"$BIN" ca init --out "$T/no/such/dir/x" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "cannot create" "$T/err"; then
    ok unwritable_is_one_line; else no unwritable_is_one_line; cat "$T/err"; fi
"$BIN" ca init >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && grep -q "^usage: airlock ca init --out PREFIX" "$T/err"; then ok usage; else no usage; fi
"$BIN" ca frob --out x >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && grep -q "^usage: airlock ca" "$T/err"; then ok usage_unknown_sub; else no usage_unknown_sub; fi
"$BIN" help ca >"$T/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "ca bundle --ca FILE" "$T/out" && grep -q "SSL_CERT_FILE" "$T/out"; then
    ok help_ca; else no help_ca; fi
"$BIN" help >"$T/out" 2>&1
if grep -q "airlock ca init --out PREFIX" "$T/out"; then ok help_lists_ca; else no help_lists_ca; fi

# ---- a leaf signed with the CA verifies against it (the key is usable for signing)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/leaf.key" \
    -subj "/CN=api.openai.com" -out "$T/leaf.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:api.openai.com\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$T/ext"
openssl x509 -req -in "$T/leaf.csr" -CA "$T/org.crt" -CAkey "$T/org.key" -CAcreateserial \
    -days 30 -extfile "$T/ext" -out "$T/leaf.crt" >/dev/null 2>&1
if openssl verify -purpose sslserver -verify_hostname api.openai.com -CAfile "$T/org.crt" "$T/leaf.crt" >/dev/null 2>&1; then
    ok leaf_verifies; else no leaf_verifies; fi
if ! openssl verify -CAfile "$T/loose.crt" "$T/leaf.crt" >/dev/null 2>&1; then
    ok leaf_not_by_another_ca; else no leaf_not_by_another_ca; fi

# ---- ca bundle
"$BIN" ca bundle --ca "$T/org.crt" >"$T/bundle" 2>"$T/err"; rc=$?
roots=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    [ -r "$f" ] && { roots=$f; break; }
done
first_root=$(sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p;/END CERTIFICATE/q' "$roots" 2>/dev/null)
first_bundle=$(sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p;/END CERTIFICATE/q' "$T/bundle")
last_bundle=$(awk '/BEGIN CERTIFICATE/{c=""} {c=c $0 "\n"} END{printf "%s", c}' "$T/bundle")
if [ -z "$roots" ]; then
    # a machine without ca-certificates: the bundle is refused in one line, not half-written
    if [ $rc -eq 2 ] && [ ! -s "$T/bundle" ] && grep -q "no system trust store" "$T/err"; then
        ok bundle_without_system_roots; else no bundle_without_system_roots; cat "$T/err"; fi
else
    if [ $rc -eq 0 ] && [ "$first_root" = "$first_bundle" ]; then
        ok bundle_starts_with_system_roots; else no bundle_starts_with_system_roots; cat "$T/err"; fi
    if [ "$(printf '%s' "$last_bundle" | openssl x509 -noout -fingerprint -sha256 2>/dev/null)" = \
         "$(openssl x509 -in "$T/org.crt" -noout -fingerprint -sha256)" ]; then
        ok bundle_ends_with_ca; else no bundle_ends_with_ca; fi
    nroots=$(grep -c "BEGIN CERTIFICATE" "$roots" 2>/dev/null)
    nb=$(grep -c "BEGIN CERTIFICATE" "$T/bundle")
    if [ -n "$nroots" ] && [ "$nb" -eq $((nroots + 1)) ]; then ok bundle_count; else no bundle_count; echo "  $nb vs $nroots"; fi
    # the bundle works as a trust store: the leaf verifies against it alone
    if openssl verify -CAfile "$T/bundle" "$T/leaf.crt" >/dev/null 2>&1; then ok bundle_trusts_leaf; else no bundle_trusts_leaf; fi
fi
"$BIN" ca bundle --ca "$T/leaf.crt" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && [ ! -s "$T/out" ] && grep -q "is not a CA certificate" "$T/err"; then
    ok bundle_refuses_non_ca; else no bundle_refuses_non_ca; fi
"$BIN" ca bundle --ca "$T/org.key" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && grep -q "not a PEM certificate" "$T/err"; then ok bundle_refuses_garbage; else no bundle_refuses_garbage; fi
"$BIN" ca bundle --ca "$T/missing.crt" >"$T/out" 2>"$T/err"; rc=$?
if [ $rc -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ]; then ok bundle_missing_file; else no bundle_missing_file; fi

# ---- check-config and serve report the egress section's problems
cfg_head() {
    cat <<EOF
listen:
  - {address: 127.0.0.1:18080}
  - {address: 127.0.0.1:13128, mode: forward}
providers:
  openai: {type: openai, base_url: https://api.openai.com/v1}
EOF
}
{ cfg_head; printf 'egress:\n  ca: {cert: org.crt, key: org.key}\n  intercept: [{host: api.openai.com, provider: openai}]\n  tunnel: ["*.github.com"]\n'; } >"$T/good.yaml"
"$BIN" check-config -c "$T/good.yaml" >"$T/out" 2>&1; rc=$?
if [ $rc -eq 0 ]; then ok check_config_good; else no check_config_good; cat "$T/out"; fi
check_bad() { # name, expected "LINE:COL: fragment"
    "$BIN" check-config -c "$T/$1.yaml" >"$T/out" 2>&1; rc=$?
    if [ $rc -eq 2 ] && grep -q "^$T/$1.yaml:$2" "$T/out"; then ok "check_config_$1"; else
        no "check_config_$1"; cat "$T/out"; fi
}
{ cfg_head; printf 'egress:\n  ca: {cert: leaf.crt, key: leaf.key}\n'; } >"$T/notca.yaml"
chmod 600 "$T/leaf.key"
check_bad notca "7:7: egress ca cert '.*leaf.crt' is not a CA certificate"
cp "$T/org.key" "$T/open.key"; chmod 644 "$T/open.key"
{ cfg_head; printf 'egress:\n  ca: {cert: org.crt, key: open.key}\n'; } >"$T/keymode.yaml"
check_bad keymode "7:7: egress ca key '.*open.key' is readable by others (mode 0644)"
{ cfg_head; printf 'egress:\n  ca: {cert: org.crt, key: loose.key}\n'; } >"$T/mismatch.yaml"
check_bad mismatch "7:7: egress ca key .* does not match the certificate"
{ cfg_head; printf 'egress:\n  ca: {cert: org.crt, key: org.key}\n  intercept:\n    - {host: api.openai.com, provider: opnai}\n'; } >"$T/prov.yaml"
check_bad prov "9:40: egress intercept: unknown provider 'opnai'"
cfg_head >"$T/noegress.yaml"
check_bad noegress "3:5: listen address '127.0.0.1:13128' has mode: forward, which needs an egress section"
{ cfg_head; printf 'egress:\n  tunnel: ["git*.com", "a.com:0"]\n'; } >"$T/glob.yaml"
check_bad glob "7:12: egress tunnel entry 'git\*.com'"
if grep -q ":7:24: egress tunnel entry 'a.com:0': invalid port" "$T/out"; then ok check_config_all_problems; else
    no check_config_all_problems; cat "$T/out"; fi
# warnings: an egress section no listener uses, a tunnel entry an intercept shadows
printf 'listen: [{address: 127.0.0.1:18080}]\negress:\n  tunnel: [pypi.org]\n' >"$T/unused.yaml"
"$BIN" check-config -c "$T/unused.yaml" >"$T/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "unused.yaml:3:3: warning: the egress section is not used" "$T/out"; then
    ok check_config_warns_unused_egress; else no check_config_warns_unused_egress; cat "$T/out"; fi
# serve refuses the same file before it listens
timeout 10 "$BIN" serve -c "$T/keymode.yaml" >"$T/out" 2>&1; rc=$?
if [ $rc -eq 2 ] && grep -q "keymode.yaml:7:7: egress ca key" "$T/out"; then ok serve_refuses_bad_ca; else
    no serve_refuses_bad_ca; cat "$T/out"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
