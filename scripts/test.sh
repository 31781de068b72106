#!/usr/bin/env bash
# The whole test suite, on a fresh machine: the wasm target, the test servers (see
# scripts/test-servers.sh), the workspace tests and the SDK's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
eval "$(bash scripts/test-servers.sh start)"
trap 'bash scripts/test-servers.sh stop >/dev/null' EXIT
cargo test --workspace
cargo test --manifest-path sdk/rust/Cargo.toml
