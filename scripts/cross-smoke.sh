#!/usr/bin/env bash
# Smoke test of the cross-compiled uiot binaries under qemu-user against
# local Mosquitto brokers on 127.0.0.1 only. Owns only its temporary run
# directory and the brokers it starts (stopped on exit, by pid).
#
# Usage: scripts/cross-smoke.sh [--no-build] [--plain] [TARGET...]
#   default TARGETs: armv7-unknown-linux-gnueabihf mipsel-unknown-linux-musl
#   --no-build  test the binaries already in target/ (else scripts/cross-build.sh builds them)
#   --plain     test the plain-MQTT builds (target/plain/<TARGET>/release/uiot), steps 1-3
#
# For each target (the TLS flavour, target/<TARGET>/release/uiot):
#   1. uiot check of the demo config
#   2. QoS 1 uplink: `uiot pub -l` of 20 lines, all seen by the "cloud"
#      (mosquitto_sub as demo-cloud) and acknowledged before uiot exits 0
#   3. QoS 1 downlink: `uiot sub -C 1`, the cloud publishes, uiot prints it
#   4. TLS: a CA and a server certificate for localhost made here with the
#      openssl CLI, a Mosquitto TLS listener; uiot with ca_file publishes at
#      QoS 1 and the cloud (over TLS) receives it; with the built-in UIoT Core
#      CA instead, uiot must refuse the server ("not trusted", exit 69)
# Every uiot run has a time limit: a hang is a failure. Exit 0 when all pass.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=true
plain=false
targets=()
for a in "$@"; do
  case "$a" in
    --no-build) build=false ;;
    --plain) plain=true ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "cross-smoke: unknown option '$a'; see $0 --help" >&2; exit 64 ;;
    *) targets+=("$a") ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(armv7-unknown-linux-gnueabihf mipsel-unknown-linux-musl)

say() { echo "cross-smoke: $*"; }
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok   $*"; }
bad() { failed=$((failed + 1)); echo "  FAIL $*"; }

# --------------------------------------------------------------- tools
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in qemu-user-static mosquitto mosquitto-clients openssl python3; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  $sudo apt-get update -qq || say "apt-get update reported errors (continuing)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mosquitto=/usr/sbin/mosquitto
[ -x "$mosquitto" ] || mosquitto=$(command -v mosquitto)

if $build; then
  start=$(date +%s)
  if $plain; then
    bash "$root/scripts/cross-build.sh" --plain "${targets[@]}"
  else
    bash "$root/scripts/cross-build.sh" --tls "${targets[@]}"
  fi
  say "cross build took $(( $(date +%s) - start )) s"
fi

# ---------------------------------------------------------- run dir, cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/uiot-cross-smoke.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  UIOT_BROKER_DIR="$work/broker" bash "$root/scripts/dev-broker.sh" stop >/dev/null 2>&1 || true
  if [ -f "$work/tls/mosquitto.pid" ]; then
    kill "$(cat "$work/tls/mosquitto.pid")" 2>/dev/null || true
  fi
  sleep 0.2
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Plain broker: the project's dev broker (UIoT-like profile).
port=$(free_port)
UIOT_BROKER_DIR="$work/broker" bash "$root/scripts/dev-broker.sh" -d "$port" >/dev/null
plain_log="$work/broker/mosquitto.log"

# TLS broker: same profile and logins, a TLS listener with a certificate for
# localhost signed by a CA made here.
tls="$work/tls"
mkdir -p "$tls"
(
  cd "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=uiot smoke CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' > ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile ext.cnf -out server.pem 2>/dev/null
)
tport=$(free_port)
{
  echo "listener $tport 127.0.0.1"
  echo "cafile $tls/ca.pem"
  echo "certfile $tls/server.pem"
  echo "keyfile $tls/server.key"
  cat "$root/etc/broker/mosquitto.conf"
  echo "password_file $work/broker/passwd"
  echo "acl_file $root/etc/broker/acl"
  echo "log_dest file $tls/mosquitto.log"
  echo "pid_file $tls/mosquitto.pid"
  if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
} > "$tls/mosquitto.conf"
"$mosquitto" -c "$tls/mosquitto.conf" -d
for _ in $(seq 100); do
  grep -q 'mosquitto version .* running' "$tls/mosquitto.log" 2>/dev/null && break
  sleep 0.1
done
grep -q 'mosquitto version .* running' "$tls/mosquitto.log" \
  || { cat "$tls/mosquitto.log" >&2; echo "cross-smoke: TLS broker did not start" >&2; exit 1; }

psn=demoproduct00001
dsn=demo-device-0001
base="/$psn/$dsn"
cloud=(-u demo-cloud -P demo-cloud-pw -V mqttv311)

cat > "$work/plain.ini" <<EOF
[device]
product_sn = $psn
device_sn = $dsn
device_secret = demosecret000001
[connection]
host = 127.0.0.1
port = $port
tls = false
EOF
cat > "$work/tls.ini" <<EOF
[device]
product_sn = $psn
device_sn = $dsn
device_secret = demosecret000001
[connection]
host = localhost
port = $tport
tls = true
ca_file = $tls/ca.pem
EOF
sed '/^ca_file/d' "$work/tls.ini" > "$work/tls-builtin-ca.ini"
# They hold a device secret: 0600, as uiot asks (else it warns at start).
chmod 600 "$work/plain.ini" "$work/tls.ini" "$work/tls-builtin-ca.ini"

# log_size FILE: where a broker log ends now.
log_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# wait_log FILE OFFSET PATTERN: wait up to 20 s for PATTERN in a broker log
# after byte OFFSET (earlier lines belong to earlier steps).
wait_log() {
  local i
  for i in $(seq 200); do
    tail -c +"$(($2 + 1))" "$1" 2>/dev/null | grep -q -- "$3" && return 0
    sleep 0.1
  done
  return 1
}

# How to run a binary of each target under qemu-user.
runner() {
  local t=$1 sys="$root/target/cross/sysroot/$1"
  case "$t" in
    armv7-unknown-linux-gnueabihf)
      echo "env QEMU_LD_PREFIX=/usr/arm-linux-gnueabihf LD_LIBRARY_PATH=$sys/usr/lib/arm-linux-gnueabihf qemu-arm-static" ;;
    aarch64-unknown-linux-gnu)
      echo "env QEMU_LD_PREFIX=/usr/aarch64-linux-gnu LD_LIBRARY_PATH=$sys/usr/lib/aarch64-linux-gnu qemu-aarch64-static" ;;
    armv7-unknown-linux-musleabihf) echo "qemu-arm-static" ;;
    aarch64-unknown-linux-musl) echo "qemu-aarch64-static" ;;
    mipsel-unknown-linux-musl) echo "qemu-mipsel-static" ;;
    *) return 1 ;;
  esac
}

for t in "${targets[@]}"; do
  bin="$root/target/$t/release/uiot"
  $plain && bin="$root/target/plain/$t/release/uiot"
  say "$t: $(stat -c %s "$bin" 2>/dev/null || echo missing) bytes, under qemu-user"
  if [ ! -x "$bin" ]; then
    bad "$t: $bin missing (build it: scripts/cross-build.sh $($plain && echo --plain) $t)"
    continue
  fi
  run=$(runner "$t") || { bad "$t: no qemu runner known"; continue; }
  out="$work/$t"
  mkdir -p "$out"

  # 1. check
  if timeout 60 $run "$bin" check -c "$work/plain.ini" > "$out/check.out" 2>&1 \
    && grep -q "product_sn = $psn" "$out/check.out" && grep -q "<hidden>" "$out/check.out"; then
    ok "$t: uiot check"
  else
    bad "$t: uiot check (exit/output below)"; cat "$out/check.out"
  fi

  # 2. QoS 1 uplink, 20 messages on one connection.
  tag="$t-$RANDOM"
  at=$(log_size "$plain_log")
  timeout 60 mosquitto_sub -p "$port" "${cloud[@]}" -i "cloud-up-$tag" -q 1 \
    -t "$base/upload" -C 20 -v > "$out/up.sub" 2>&1 &
  sub=$!
  pids+=("$sub")
  wait_log "$plain_log" "$at" "Received SUBSCRIBE from cloud-up-$tag" || true
  seq 1 20 | sed "s/^/up-$tag-/" > "$out/up.in"
  if timeout 60 $run "$bin" pub -c "$work/plain.ini" -t upload -q 1 -l < "$out/up.in" > "$out/up.out" 2>&1; then
    rc=0
  else
    rc=$?
  fi
  wait "$sub" 2>/dev/null || true
  if [ "$rc" -eq 0 ] && [ "$(sed "s|^$base/upload ||" "$out/up.sub")" = "$(cat "$out/up.in")" ]; then
    ok "$t: uiot pub -q 1 -l: 20 messages acknowledged and received in order"
  else
    bad "$t: uiot pub -q 1 -l (exit $rc; uiot said / cloud received below)"
    cat "$out/up.out" "$out/up.sub"
  fi

  # 3. QoS 1 downlink.
  at=$(log_size "$plain_log")
  timeout 60 $run "$bin" sub -c "$work/plain.ini" -t set -q 1 -C 1 -W 50 -v > "$out/down.out" 2> "$out/down.err" &
  usub=$!
  pids+=("$usub")
  if wait_log "$plain_log" "$at" "Received SUBSCRIBE from $psn.$dsn"; then
    mosquitto_pub -p "$port" "${cloud[@]}" -i "cloud-down-$tag" -q 1 -t "$base/set" -m "down-$tag" || true
  fi
  if wait "$usub"; then rc=0; else rc=$?; fi
  if [ "$rc" -eq 0 ] && [ "$(cat "$out/down.out")" = "$base/set down-$tag" ]; then
    ok "$t: uiot sub -q 1 -C 1: received the cloud's message and exited 0"
  else
    bad "$t: uiot sub -q 1 (exit $rc; output below)"; cat "$out/down.out" "$out/down.err"
  fi

  if $plain; then
    continue
  fi
  # 4. TLS, trusted CA from ca_file.
  at=$(log_size "$tls/mosquitto.log")
  timeout 60 mosquitto_sub -h localhost -p "$tport" --cafile "$tls/ca.pem" "${cloud[@]}" \
    -i "cloud-tls-$tag" -q 1 -t "$base/upload" -C 1 -v > "$out/tls.sub" 2>&1 &
  sub=$!
  pids+=("$sub")
  wait_log "$tls/mosquitto.log" "$at" "Received SUBSCRIBE from cloud-tls-$tag" || true
  if timeout 60 $run "$bin" pub -c "$work/tls.ini" -t upload -q 1 -m "tls-$tag" > "$out/tls.out" 2>&1; then
    rc=0
  else
    rc=$?
  fi
  wait "$sub" 2>/dev/null || true
  if [ "$rc" -eq 0 ] && [ "$(cat "$out/tls.sub")" = "$base/upload tls-$tag" ]; then
    ok "$t: TLS to localhost with ca_file: QoS 1 publish acknowledged and received"
  else
    bad "$t: TLS publish (exit $rc; uiot said / cloud received below)"; cat "$out/tls.out" "$out/tls.sub"
  fi

  # 4b. TLS with the built-in UIoT Core CA: this server must not be trusted.
  if timeout 60 $run "$bin" pub -c "$work/tls-builtin-ca.ini" -t upload -q 1 -m x > "$out/tls-bad.out" 2>&1; then
    rc=0
  else
    rc=$?
  fi
  if [ "$rc" -eq 69 ] && grep -q "not trusted" "$out/tls-bad.out"; then
    ok "$t: TLS with the built-in CA refuses a server it does not sign (exit 69)"
  else
    bad "$t: TLS with the wrong CA (exit $rc, want 69 and 'not trusted'; output below)"; cat "$out/tls-bad.out"
  fi
done

echo "cross-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
