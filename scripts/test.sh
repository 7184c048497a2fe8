#!/usr/bin/env bash
# The test command: formatting, lints, then every test (unit, property,
# integration against a real Mosquitto the tests start themselves, CLI).
# Run scripts/install-deps.sh first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo clippy, build without TLS"
cargo clippy --locked --no-default-features --lib --bins -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
cargo test --locked --doc
