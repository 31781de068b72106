#!/usr/bin/env bash
# Start (or stop) the real servers the connector tests talk to, on loopback only:
# each scripts/test-servers/<name>.sh installs what it needs (Debian packages, PyPI),
# starts its server under target/test-servers/<name>/ and prints `export AF_TEST_...=...`
# lines. This script prints all of them, so that
#
#     eval "$(bash scripts/test-servers.sh start)"
#
# leaves the environment the tests read. A server that cannot start is reported on stderr
# and left out (its tests then skip with a loud message), unless AETHERFLOW_TEST_SERVERS is
# `required` (CI): then this script fails.
#
#     bash scripts/test-servers.sh stop      # stop them all
set -uo pipefail
cd "$(dirname "$0")/.."
action="${1:-start}"
export AF_SERVERS_DIR="${AF_SERVERS_DIR:-$PWD/target/test-servers}"
mkdir -p "$AF_SERVERS_DIR"
failed=()
for script in scripts/test-servers/*.sh; do
    [ -e "$script" ] || continue
    name="$(basename "$script" .sh)"
    if out="$(bash "$script" "$action")"; then
        printf '%s\n' "$out"
    else
        echo "test-servers: $name could not $action (see above)" >&2
        failed+=("$name")
    fi
done
if [ "${#failed[@]}" -gt 0 ] && [ "$action" = start ]; then
    echo "test-servers: NOT RUNNING: ${failed[*]}" >&2
    if [ "${AETHERFLOW_TEST_SERVERS:-}" = required ]; then
        exit 1
    fi
fi
exit 0
