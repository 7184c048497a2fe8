#!/usr/bin/env bash
# Installs what building and testing uiot needs on a fresh Debian 12 machine:
# Mosquitto (the broker and its clients, used by the integration tests and
# the benchmark), socat (the quickstart's pseudo-terminal serial port) and
# the C toolchain bits native crates need. Safe to re-run:
# it installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v cc >/dev/null 2>&1 || need+=(gcc)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# A pseudo-terminal pair for the quickstart's serial bridge.
command -v socat >/dev/null 2>&1 || need+=(socat)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

# rustfmt and clippy are part of the test command.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" || true
  done
fi
echo "install-deps: ok"
