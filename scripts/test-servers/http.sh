#!/usr/bin/env bash
# A static HTTP server (Python's http.server) on 127.0.0.1 serving tests/fixtures/http-root,
# logging each request as a JSON line, on two ports: plain HTTP, and HTTPS with the test
# CA's server certificate (ca.sh). See README.md in this directory for the contract.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="$AF_SERVERS_DIR/http"
case "${1:-start}" in
start)
    bash scripts/test-servers/ca.sh start >/dev/null
    ca="$AF_SERVERS_DIR/ca"
    mkdir -p "$dir"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ -s "$dir/tls-port" ]; then
        :
    else
        if [ -f "$dir/pid" ]; then
            kill "$(cat "$dir/pid")" 2>/dev/null || true
        fi
        rm -f "$dir/port" "$dir/tls-port" "$dir/requests.jsonl"
        python3 scripts/test-servers/http_server.py "$PWD/tests/fixtures/http-root" \
            "$dir/port" "$dir/requests.jsonl" "$dir/tls-port" "$ca/server.pem" "$ca/server.key" \
            >"$dir/server.log" 2>&1 &
        echo $! >"$dir/pid"
        for _ in $(seq 100); do
            [ -s "$dir/port" ] && break
            sleep 0.05
        done
        if [ ! -s "$dir/port" ] || [ ! -s "$dir/tls-port" ]; then
            echo "http: the server did not start; see $dir/server.log" >&2
            exit 1
        fi
    fi
    echo "export AF_TEST_HTTP_URL=http://127.0.0.1:$(cat "$dir/port")"
    echo "export AF_TEST_HTTPS_URL=https://127.0.0.1:$(cat "$dir/tls-port")"
    echo "export AF_TEST_HTTP_LOG=$dir/requests.jsonl"
    ;;
stop)
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid" "$dir/port" "$dir/tls-port"
    fi
    ;;
esac
