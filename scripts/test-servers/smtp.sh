#!/usr/bin/env bash
# A real SMTP server (aiosmtpd, from PyPI) on 127.0.0.1 with AUTH PLAIN/LOGIN for one test
# account; every received message is stored as a JSON file (envelope + raw data) in
# $AF_SERVERS_DIR/smtp/messages. Two more ports use the test CA's server certificate
# (ca.sh): one requires STARTTLS, one speaks implicit TLS (SMTPS). See README.md in this
# directory for the contract.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="$AF_SERVERS_DIR/smtp"
user="aetherflow"
password="smtp-test-secret-7Qx"
case "${1:-start}" in
start)
    if ! python3 -c "import aiosmtpd" 2>/dev/null; then
        echo "smtp: installing aiosmtpd with pip" >&2
        python3 -m pip install --quiet aiosmtpd >&2 ||
            python3 -m pip install --quiet --break-system-packages aiosmtpd >&2
    fi
    bash scripts/test-servers/ca.sh start >/dev/null
    ca="$AF_SERVERS_DIR/ca"
    mkdir -p "$dir/messages"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ -s "$dir/port" ] \
        && [ -s "$dir/tls-port" ]; then
        :
    else
        if [ -f "$dir/pid" ]; then
            kill "$(cat "$dir/pid")" 2>/dev/null || true
        fi
        rm -f "$dir/port" "$dir/starttls-port" "$dir/tls-port"
        python3 scripts/test-servers/smtp_server.py "$dir/messages" "$dir/port" "$user" \
            "$password" "$ca/server.pem" "$ca/server.key" "$dir/starttls-port" "$dir/tls-port" \
            >"$dir/server.log" 2>&1 &
        echo $! >"$dir/pid"
        for _ in $(seq 200); do
            [ -s "$dir/port" ] && break
            sleep 0.05
        done
        if [ ! -s "$dir/port" ]; then
            echo "smtp: the server did not start; see $dir/server.log" >&2
            exit 1
        fi
    fi
    echo "export AF_TEST_SMTP_HOST=127.0.0.1 AF_TEST_SMTP_PORT=$(cat "$dir/port") AF_TEST_SMTP_USER=$user AF_TEST_SMTP_PASSWORD=$password AF_TEST_SMTP_DIR=$dir/messages"
    echo "export AF_TEST_SMTP_STARTTLS_PORT=$(cat "$dir/starttls-port") AF_TEST_SMTP_TLS_PORT=$(cat "$dir/tls-port")"
    ;;
stop)
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid" "$dir/port" "$dir/starttls-port" "$dir/tls-port"
    fi
    ;;
esac
