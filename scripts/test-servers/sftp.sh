#!/usr/bin/env bash
# A real OpenSSH SFTP server on 127.0.0.1 for the `sftp` connector tests (see README.md here).
#
#   bash scripts/test-servers/sftp.sh start   # prints the export AF_TEST_SFTP_... lines
#   bash scripts/test-servers/sftp.sh stop
#
# It installs what it needs with apt-get when missing: openssh-server (sshd) and
# openssh-client (ssh-keygen, ssh-keyscan).
# Its own sshd (`-f` with its own config, password and public-key auth, `internal-sftp`
# only) runs as root on a free high port of 127.0.0.1; a system user `aftest_sftp` (no shell)
# owns the files under $AF_SERVERS_DIR/sftp/home, which is what the tests read back.
set -euo pipefail
action="${1:-start}"
base="${AF_SERVERS_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target/test-servers}"
dir="$base/sftp"
user=aftest_sftp
pidfile="$dir/sshd.pid"

log() { echo "sftp.sh: $*" >&2; }

stop() {
    if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    fi
}

if [ "$action" = stop ]; then
    stop
    exit 0
fi
[ "$action" = start ] || { log "usage: $0 start|stop"; exit 2; }

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null && command -v ssh-keyscan >/dev/null || need+=(openssh-client)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    # Keep the package's own sshd service (port 22) from being started by the install.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >&2 \
        || { [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; log "apt-get install failed"; exit 1; }
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

stop
mkdir -p "$dir"
home="$dir/home"
mkdir -p "$home"

# The test user: no shell, its home is the directory the tests read back.
if ! id "$user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir "$home" --shell /usr/sbin/nologin "$user" >&2
else
    usermod --home "$home" "$user" >&2
fi
password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)"
echo "$user:$password" | chpasswd
chown "$user:" "$home"
chmod 755 "$home"
if ! runuser -u "$user" -- test -w "$home"; then
    log "user $user cannot write $home (a parent directory is not traversable); set AF_SERVERS_DIR elsewhere"
    exit 1
fi

# Keys: the server's host key and the client's key (unencrypted, as the tests pass no
# passphrase), and a known_hosts file naming the server as [127.0.0.1]:port.
rm -f "$dir/host_ed25519" "$dir/host_ed25519.pub" "$dir/client_key" "$dir/client_key.pub"
ssh-keygen -q -t ed25519 -N '' -C aetherflow-test-host -f "$dir/host_ed25519" >&2
ssh-keygen -q -t ed25519 -N '' -C aetherflow-test-client -f "$dir/client_key" >&2
cp "$dir/client_key.pub" "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"

port=""
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! ss -ltnH "sport = :$p" | grep -q .; then port=$p; break; fi
done
[ -n "$port" ] || { log "no free port"; exit 1; }

mkdir -p /run/sshd
cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_ed25519
PidFile $pidfile
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
PermitRootLogin no
AllowUsers $user
AllowTcpForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
LogLevel ERROR
EOF
/usr/sbin/sshd -t -f "$dir/sshd_config" >&2
/usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >/dev/null 2>&1 &
sshd_pid=$!
echo "$sshd_pid" >"$pidfile"

echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts"

ok=0
for _ in $(seq 100); do
    if ! kill -0 "$sshd_pid" 2>/dev/null; then break; fi
    if ssh-keyscan -T 2 -p "$port" 127.0.0.1 2>/dev/null | grep -q ssh-ed25519; then ok=1; break; fi
    sleep 0.1
done
if [ "$ok" != 1 ]; then
    log "sshd did not answer on 127.0.0.1:$port; its log:"
    cat "$dir/sshd.log" >&2 || true
    stop
    exit 1
fi
log "sshd on 127.0.0.1:$port (pid $sshd_pid), files under $home"

cat <<EOF
export AF_TEST_SFTP_HOST=127.0.0.1
export AF_TEST_SFTP_PORT=$port
export AF_TEST_SFTP_USER=$user
export AF_TEST_SFTP_PASSWORD=$password
export AF_TEST_SFTP_KEY=$dir/client_key
export AF_TEST_SFTP_KNOWN_HOSTS=$dir/known_hosts
export AF_TEST_SFTP_ROOT=$home
EOF
