#!/usr/bin/env bash
# The test command: installs what the tests need (only what is missing),
# then formatting, lints, every test (unit, property, integration against a
# real Mosquitto the tests start themselves, CLI) and a short fuzz run.
# Works alone on a fresh Debian 12 machine with Rust installed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo clippy, build without TLS"
cargo clippy --locked --no-default-features --lib --bins -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
cargo test --locked --doc
echo "== fuzz smoke (packet decoder, INI loader, platform messages, OTA notices)"
bash scripts/fuzz-smoke.sh
