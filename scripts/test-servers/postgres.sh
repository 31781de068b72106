#!/usr/bin/env bash
# PostgreSQL for the `db` connector tests (see README.md beside this file).
#
#   start: install PostgreSQL if missing, initdb a cluster under $AF_SERVERS_DIR/postgres
#          (owned by the `postgres` OS user: the server refuses to run as root), listen on
#          127.0.0.1 on a free high port with password (scram) auth for the user
#          `aetherflow` / database `aetherflow`, with TLS (`ssl=on`, the test CA's server
#          certificate from ca.sh; plain connections are still accepted), wait until it
#          answers, and print
#          `export AF_TEST_PG_URL=postgres://aetherflow:<password>@127.0.0.1:<port>/aetherflow`.
#   stop:  stop the cluster (success when it is not running).
set -euo pipefail
action="${1:-start}"
base="${AF_SERVERS_DIR:-$PWD/target/test-servers}/postgres"
data="$base/data"
log() { echo "postgres.sh: $*" >&2; }

# The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin).
pg_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# Run a command as the `postgres` OS user (root may not run the server).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "$action" = stop ]; then
    bin="$(pg_bin || true)"
    if [ -n "$bin" ] && [ -f "$data/postmaster.pid" ]; then
        as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 || true
    fi
    exit 0
fi

bin="$(pg_bin || true)"
if [ -z "$bin" ]; then
    log "installing postgresql with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq postgresql) >&2
    bin="$(pg_bin)"
fi
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres

mkdir -p "$base"
pass_file="$base/password"
port_file="$base/port"
# Stop a cluster left over from an earlier start, so that its port and password are reused.
if [ -f "$data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 || true
fi
if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$pass_file"
    chown -R postgres: "$base"
    chmod 700 "$base"
    # The superuser is the test user itself: password auth from the start.
    printf '%s\n' "$(cat "$pass_file")" >"$base/pwfile"
    chown postgres: "$base/pwfile"
    as_pg "$bin/initdb" -D "$data" -U aetherflow --pwfile="$base/pwfile" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2 \
        || as_pg "$bin/initdb" -D "$data" -U aetherflow --pwfile="$base/pwfile" \
            --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C >&2
    rm -f "$base/pwfile"
fi
# TLS: the test CA's server certificate; the server wants its key private to its own user.
bash "$(dirname "$0")/ca.sh" start >/dev/null
ca="${AF_SERVERS_DIR:-$PWD/target/test-servers}/ca"
mkdir -p "$base/ssl"
cp "$ca/server.pem" "$base/ssl/server.crt"
cp "$ca/server.key" "$base/ssl/server.key"
chmod 600 "$base/ssl/server.key"
chown -R postgres: "$base"

# A free high port (kept across restarts when it is still free).
port="$(cat "$port_file" 2>/dev/null || true)"
free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}
if [ -z "$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    port="$(free_port)"
fi
echo "$port" >"$port_file"

as_pg "$bin/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $base -c fsync=off -c full_page_writes=off -c ssl=on -c ssl_cert_file=$base/ssl/server.crt -c ssl_key_file=$base/ssl/server.key" \
    start >&2 || { log "server did not start; see $base/server.log"; tail -n 20 "$base/server.log" >&2; exit 1; }

pass="$(cat "$pass_file")"
for _ in $(seq 1 60); do
    if PGPASSWORD="$pass" "$bin/psql" -h 127.0.0.1 -p "$port" -U aetherflow -d postgres -qAtc 'select 1' >/dev/null 2>&1; then
        break
    fi
    sleep 0.5
done
PGPASSWORD="$pass" "$bin/psql" -h 127.0.0.1 -p "$port" -U aetherflow -d postgres -qAtc \
    "select 1 from pg_database where datname = 'aetherflow'" | grep -q 1 \
    || PGPASSWORD="$pass" "$bin/psql" -h 127.0.0.1 -p "$port" -U aetherflow -d postgres -qc \
        'create database aetherflow' >&2
echo "export AF_TEST_PG_URL=postgres://aetherflow:$pass@127.0.0.1:$port/aetherflow"
