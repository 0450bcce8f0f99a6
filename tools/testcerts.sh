#!/usr/bin/env bash
# Test certificates for the TLS tests (stream, HTTP client, fault proxy):
#
#   tools/testcerts.sh DIR
#
#   DIR/ca.crt, ca.key                  the test CA
#   DIR/ip-only.crt/.key                server cert, SAN IP:127.0.0.1, IP:::1 only (no DNS name)
#   DIR/dns-only.crt/.key               server cert, SAN DNS:localhost only
#   DIR/mismatch.crt/.key               server cert, SAN IP:127.0.0.2, DNS:example.invalid
#   DIR/wrong-ca.crt/.key               another CA (a client trusting only it must refuse the above)
#   DIR/wrong-ca-server.crt/.key        server cert for 127.0.0.1/localhost signed by the wrong CA
#   DIR/client.crt/.key                 client-auth cert signed by ca
#
# All keys are EC P-256 and all signatures SHA-256, which mbedTLS 2.28 accepts. The CNs are
# deliberately not host names, so a verifier that falls back to the CN is caught by the tests.
# Idempotent: an existing complete set is left as is (the test suite may run it many times).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR="$1"
ALL=(ca ip-only dns-only mismatch wrong-ca wrong-ca-server client)

complete=1
for n in "${ALL[@]}"; do
  [ -s "$DIR/$n.crt" ] && [ -s "$DIR/$n.key" ] || complete=0
done
[ $complete = 1 ] && exit 0

mkdir -p "$DIR"
# Build in a private temporary directory and move into place at the end, so a concurrent
# caller never sees half a set.
TMP="$(mktemp -d "$DIR/.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"

newkey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null; }

make_ca() { # name cn
  newkey "$1"
  openssl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.crt" 2>/dev/null
}

issue() { # name ca cn extension-lines...
  local name="$1" ca="$2" cn="$3"; shift 3
  newkey "$name"
  openssl req -new -key "$name.key" -sha256 -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
  printf '%s\n' "$@" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -sha256 \
    -days 3650 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

SERVER=("keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth"
  "basicConstraints=CA:FALSE")

make_ca ca "evscale test CA"
make_ca wrong-ca "evscale wrong CA"
issue ip-only ca "ip-only test server" "subjectAltName=IP:127.0.0.1,IP:::1" "${SERVER[@]}"
issue dns-only ca "dns-only test server" "subjectAltName=DNS:localhost" "${SERVER[@]}"
issue mismatch ca "mismatch test server" "subjectAltName=IP:127.0.0.2,DNS:example.invalid" "${SERVER[@]}"
issue wrong-ca-server wrong-ca "wrong-ca test server" \
  "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" "${SERVER[@]}"
issue client ca "evscale-test-client" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=clientAuth" "basicConstraints=CA:FALSE"

chmod 644 ./*.crt
chmod 600 ./*.key
rm -f ./*.srl
for n in "${ALL[@]}"; do
  mv -f "$n.key" "$DIR/$n.key"
  mv -f "$n.crt" "$DIR/$n.crt"
done
