#!/usr/bin/env bash
# A throwaway certificate authority for the TLS tests (see README.md beside this file).
#
#   start: install openssl if missing; under $AF_SERVERS_DIR/ca create (once, and again when
#          a certificate expires within a day):
#            ca.pem / ca.key          the test CA;
#            server.pem / server.key  a server certificate signed by it, valid for
#                                     `localhost` and `127.0.0.1` (used by http.sh, smtp.sh,
#                                     postgres.sh);
#            other-ca.pem             a second CA that signed nothing (the "wrong CA");
#          and print `export AF_TEST_CA_PEM=... AF_TEST_OTHER_CA_PEM=...`.
#   stop:  nothing runs; the files stay for the next start (delete the directory to renew).
#
# The other scripts call `ca.sh start` themselves, so each also works on its own.
set -euo pipefail
dir="${AF_SERVERS_DIR:-$PWD/target/test-servers}/ca"
log() { echo "ca.sh: $*" >&2; }

case "${1:-start}" in
stop) exit 0 ;;
start) ;;
*)
    log "usage: ca.sh start|stop"
    exit 2
    ;;
esac

if ! command -v openssl >/dev/null 2>&1; then
    log "installing openssl with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq openssl) >&2
fi

fresh() { [ -s "$1" ] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1; }

mkdir -p "$dir"
# Several scripts may call this at once: one creates, the others wait for it.
exec 9>"$dir/.lock"
flock 9
if ! fresh "$dir/ca.pem" || ! fresh "$dir/server.pem" || ! fresh "$dir/other-ca.pem" \
    || [ ! -s "$dir/server.key" ]; then
    log "creating the test CA and server certificate in $dir"
    tmp="$(mktemp -d "$dir/.new.XXXXXX")"
    for name in ca other-ca; do
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout "$tmp/$name.key" -out "$tmp/$name.pem" -days 30 -sha256 \
            -subj "/O=AetherFlow tests/CN=AetherFlow test $name" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    done
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/O=AetherFlow tests/CN=localhost" \
        2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        "authorityKeyIdentifier=keyid" \
        "subjectKeyIdentifier=hash" >"$tmp/server.ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
        -CAcreateserial -out "$tmp/server.pem" -days 30 -sha256 -extfile "$tmp/server.ext" \
        2>/dev/null
    chmod 600 "$tmp"/*.key
    for f in ca.pem ca.key other-ca.pem server.pem server.key; do
        mv -f "$tmp/$f" "$dir/$f"
    done
    rm -rf "$tmp"
fi
echo "export AF_TEST_CA_PEM=$dir/ca.pem AF_TEST_OTHER_CA_PEM=$dir/other-ca.pem"
