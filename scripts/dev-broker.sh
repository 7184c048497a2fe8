#!/usr/bin/env bash
# Runs a local Mosquitto that mimics UIoT Core (profile in etc/broker/), on
# 127.0.0.1 only, for trying uiot by hand without the real platform.
#
# Usage:
#   scripts/dev-broker.sh [PORT]            foreground (Ctrl-C stops it), log on stdout too
#   scripts/dev-broker.sh -d|--daemon [PORT] background; prints its pid and log path
#   scripts/dev-broker.sh stop              stops the background broker
#   scripts/dev-broker.sh add-device [PSN DSN SECRET]
#                                           lets a device log in (PSN|DSN|1 with
#                                           SECRET, its ACL lines) and reloads the
#                                           broker; without arguments it takes
#                                           UIOT_PRODUCT_SN, UIOT_DEVICE_SN and
#                                           UIOT_DEVICE_SECRET, which is how
#                                           `uiot-sim --on-register` calls it.
#                                           Devices added so stay in the run
#                                           directory across restarts.
# PORT defaults to 1883. The run directory (generated config, hashed
# password file, log, pid) is $UIOT_BROKER_DIR, default ${TMPDIR:-/tmp}/uiot-dev-broker.
#
# Try it (demo device from etc/broker/passwords):
#   mosquitto_sub -p 1883 -u demo-cloud -P demo-cloud-pw -t '#' -v &
#   mosquitto_pub -p 1883 -V mqttv311 -i demoproduct00001.demo-device-0001 \
#     -u 'demoproduct00001|demo-device-0001|1' -P demosecret000001 \
#     -t /demoproduct00001/demo-device-0001/upload -m hello
# or: uiot --config etc/broker/uiot-demo.ini ...
# Dynamic registration: run the simulated cloud beside it,
#   uiot-sim -p 1883 -u demo-cloud -P demo-cloud-pw --allow-register demo-dyn-0001 \
#     --on-register 'scripts/dev-broker.sh add-device'
# then: uiot register -c etc/broker/uiot-dyn-demo.ini
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
etc="$root/etc/broker"
run="${UIOT_BROKER_DIR:-${TMPDIR:-/tmp}/uiot-dev-broker}"
pid_file="$run/mosquitto.pid"
log_file="$run/mosquitto.log"

die() { echo "dev-broker: $*" >&2; exit 1; }

find_tool() {
  local name=$1 dir
  for dir in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
    [ -x "$dir/$name" ] && { echo "$dir/$name"; return 0; }
  done
  command -v "$name" 2>/dev/null || return 1
}

# The pid of the background broker, if it is running.
running_pid() {
  local pid
  [ -f "$pid_file" ] || return 1
  pid=$(cat "$pid_file" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # Only a mosquitto process counts (the pid may have been reused).
  grep -q mosquitto "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

stop() {
  local pid i
  if ! pid=$(running_pid); then
    rm -f "$pid_file"
    echo "dev-broker: not running (no live pid in $pid_file)"
    return 0
  fi
  kill "$pid"
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    die "mosquitto (pid $pid) did not stop within 5 s; kill it with: kill -9 $pid"
  fi
  rm -f "$pid_file"
  echo "dev-broker: stopped (pid $pid)"
}

# Lets PSN|DSN|1 log in with SECRET: a hashed line in the run directory's
# password file and the device's ACL block, both also kept in added.* so a
# restart keeps them; then SIGHUP (Mosquitto rereads both files).
# UIOT_BROKER_PID names the broker to reload when it is not this script's.
add_device() {
  local psn=${1:-${UIOT_PRODUCT_SN:-}} dsn=${2:-${UIOT_DEVICE_SN:-}} secret=${3:-${UIOT_DEVICE_SECRET:-}}
  local user pid block
  [ -n "$psn" ] && [ -n "$dsn" ] && [ -n "$secret" ] \
    || die "add-device needs PSN DSN SECRET (or UIOT_PRODUCT_SN, UIOT_DEVICE_SN, UIOT_DEVICE_SECRET)"
  for v in "$psn" "$dsn"; do
    case "$v" in
      *[:/+#[:space:]]*) die "add-device: '$v' may not contain ':', '/', '+', '#' or spaces (Mosquitto's files cannot hold them)" ;;
    esac
  done
  mosquitto_passwd=$(find_tool mosquitto_passwd) \
    || die "mosquitto_passwd not found; install it: apt-get install -y mosquitto"
  [ -f "$run/passwd" ] && [ -f "$run/acl" ] \
    || die "no broker files in $run; start the broker first: $0 -d"
  user="$psn|$dsn|1"
  "$mosquitto_passwd" -b "$run/passwd" "$user" "$secret" \
    || die "mosquitto_passwd could not add $user to $run/passwd"
  touch "$run/added.passwd" "$run/added.acl"
  chmod 600 "$run/added.passwd"
  { awk -F: -v u="$user" '$1 != u' "$run/added.passwd"; awk -F: -v u="$user" '$1 == u' "$run/passwd"; } \
    > "$run/added.passwd.new" && mv "$run/added.passwd.new" "$run/added.passwd"
  chmod 600 "$run/added.passwd"
  block=$(printf 'user %s\ntopic readwrite /%s/%s/#\ntopic readwrite /$system/%s/%s/#\ntopic read /%s/$broadcast/#' \
    "$user" "$psn" "$dsn" "$psn" "$dsn" "$psn")
  if ! grep -qxF "user $user" "$run/acl"; then
    printf '\n%s\n' "$block" >> "$run/acl"
  fi
  if ! grep -qxF "user $user" "$run/added.acl"; then
    printf '\n%s\n' "$block" >> "$run/added.acl"
  fi
  pid=${UIOT_BROKER_PID:-}
  if [ -z "$pid" ]; then
    pid=$(running_pid) || { echo "dev-broker: added $user; it takes effect when the broker starts"; return 0; }
  fi
  kill -HUP "$pid" || die "could not signal the broker (pid $pid) to reload"
  echo "dev-broker: added $user and reloaded the broker (pid $pid)"
}

daemon=false
port=1883
case "${1:-}" in
  stop) stop; exit 0 ;;
  add-device) shift; add_device "$@"; exit 0 ;;
  -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -d|--daemon) daemon=true; shift ;;
esac
if [ $# -gt 0 ]; then
  port=$1; shift
fi
[ $# -eq 0 ] || die "unexpected argument '$1'; usage: $0 [-d|--daemon] [PORT] | stop"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
  || die "PORT must be a number from 1 to 65535, got '$port'"

mosquitto=$(find_tool mosquitto) \
  || die "mosquitto not found; install it: apt-get install -y mosquitto mosquitto-clients"
mosquitto_passwd=$(find_tool mosquitto_passwd) \
  || die "mosquitto_passwd not found; install it: apt-get install -y mosquitto"

if pid=$(running_pid); then
  die "already running (pid $pid, log $log_file); stop it first: $0 stop"
fi

mkdir -p "$run"
chmod 700 "$run"
# Plain-text logins without comments, then hashed in place.
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$etc/passwords" > "$run/passwd"
chmod 600 "$run/passwd"
"$mosquitto_passwd" -U "$run/passwd"
# Devices added with add-device (already hashed), and the ACL with theirs.
if [ -f "$run/added.passwd" ]; then cat "$run/added.passwd" >> "$run/passwd"; fi
cat "$etc/acl" > "$run/acl"
if [ -f "$run/added.acl" ]; then cat "$run/added.acl" >> "$run/acl"; fi

conf="$run/mosquitto.conf"
{
  echo "# Generated by scripts/dev-broker.sh from etc/broker/; edit those files instead."
  echo "listener $port 127.0.0.1"
  echo
  cat "$etc/mosquitto.conf"
  echo
  echo "# --- run-specific (dev-broker.sh) ---"
  echo "password_file $run/passwd"
  echo "acl_file $run/acl"
  echo "log_dest file $log_file"
  if $daemon; then
    echo "pid_file $pid_file"
  else
    echo "log_dest stdout"
  fi
  # As root Mosquitto would switch to the 'mosquitto' user, which cannot
  # read the private run directory.
  if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
} > "$conf"

if ! $daemon; then
  echo "dev-broker: mosquitto on 127.0.0.1:$port (profile etc/broker/, log $log_file); Ctrl-C stops it"
  exec "$mosquitto" -c "$conf"
fi

log_start=$(stat -c %s "$log_file" 2>/dev/null || echo 0)
"$mosquitto" -c "$conf" -d
# Wait until it says it is running (printed once the listener is open).
for _ in $(seq 100); do
  if tail -c +"$((log_start + 1))" "$log_file" 2>/dev/null | grep -q 'mosquitto version .* running'; then
    pid=$(running_pid) || die "mosquitto started but wrote no pid to $pid_file; see $log_file"
    echo "dev-broker: running on 127.0.0.1:$port, pid $pid, log $log_file"
    echo "dev-broker: stop it with: $0 stop"
    exit 0
  fi
  if tail -c +"$((log_start + 1))" "$log_file" 2>/dev/null | grep -q 'Error'; then
    break
  fi
  sleep 0.1
done
echo "dev-broker: mosquitto did not start on port $port; its log says:" >&2
tail -c +"$((log_start + 1))" "$log_file" >&2 2>/dev/null || true
exit 1
