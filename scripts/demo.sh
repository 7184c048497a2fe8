#!/usr/bin/env bash
# The quickstart: installs what is missing, builds uiot, starts a local
# broker that mimics UIoT Core (127.0.0.1 only), and shows a device talking
# to "the cloud" both ways with `uiot pub` and `uiot sub`. Stops everything
# it started when it ends.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh >/dev/null
if [ -n "${UIOT_BIN_DIR:-}" ]; then
  # Binaries built already (the test that runs this quickstart in CI).
  bin=$UIOT_BIN_DIR
else
  echo "== building uiot (release)"
  cargo build --release --locked --bin uiot --bin uiot-sim
  bin="$root/target/release"
fi
uiot="$bin/uiot"
uiot_sim="$bin/uiot-sim"

# A free port on 127.0.0.1.
port=""
for p in $(seq 18830 18899); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "demo: no free port in 18830..18899" >&2; exit 69; }

run=$(mktemp -d /tmp/uiot-demo.XXXXXX)
export UIOT_BROKER_DIR="$run"
sim="" daemon="" ptys=""
cleanup() {
  for p in $daemon $sim $ptys; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  bash scripts/dev-broker.sh stop >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT
echo "== starting the local UIoT-like broker on 127.0.0.1:$port"
bash scripts/dev-broker.sh --daemon "$port" >/dev/null

ini="$run/uiot-demo.ini"
sed "s/^port = 1883$/port = $port/" etc/broker/uiot-demo.ini > "$ini"
chmod 600 "$ini"   # it holds the device secret: uiot warns about a config others may read
cloud=(-h 127.0.0.1 -p "$port" -u demo-cloud -P demo-cloud-pw)
dev=/demoproduct00001/demo-device-0001

echo; echo "== uiot check -c $ini"
"$uiot" check -c "$ini"

echo; echo "== device -> cloud: uiot pub -t upload -q 1"
mosquitto_sub "${cloud[@]}" -t "$dev/#" -v -C 1 -W 10 > "$run/cloud.out" &
watcher=$!
sleep 0.5
"$uiot" pub -c "$ini" -t upload -q 1 -m '{"temperature": 21.5}'
wait "$watcher"
echo "the cloud received: $(cat "$run/cloud.out")"

echo; echo "== cloud -> device: uiot sub -t set -q 1 -C 1"
"$uiot" sub -c "$ini" -t set -q 1 -C 1 -W 10 -v > "$run/device.out" &
device=$!
sleep 1
mosquitto_pub "${cloud[@]}" -q 1 -t "$dev/set" -m '{"led": "on"}'
wait "$device"
echo "the device received: $(cat "$run/device.out")"

echo; echo "== a topic of another device is refused before it is sent (exit 77)"
set +e
"$uiot" pub -c "$ini" -t /demoproduct00001/another-device/upload -m x
echo "exit code: $?"
set -e

echo; echo "== the platform services, with uiot-sim playing the cloud"
mkfifo "$run/sim.in"
exec 3<> "$run/sim.in"   # uiot-sim's stdin: this script types into it
"$uiot_sim" -p "$port" -u demo-cloud -P demo-cloud-pw --allow-register demo-dyn-0001 \
  --on-register "bash '$root/scripts/dev-broker.sh' add-device >&2" \
  < "$run/sim.in" > "$run/sim.out" 2>&1 &
sim=$!
for _ in $(seq 100); do grep -q '"ready"' "$run/sim.out" 2>/dev/null && break; sleep 0.05; done
dyn="$run/uiot-dyn-demo.ini"
sed "s/^port = 1883$/port = $port/" etc/broker/uiot-dyn-demo.ini > "$dyn"
chmod 600 "$dyn"
echo "-- uiot register (dynamic registration: the product secret buys the device secret once)"
"$uiot" register -c "$dyn"
echo "-- uiot shadow report / get"
"$uiot" shadow report -c "$dyn" '{"temperature": 21.5}'
"$uiot" shadow get -c "$dyn"
echo "-- uiot property post"
"$uiot" property post -c "$dyn" '{"humidity": 40}'
echo "-- the cloud sends a command; uiot command wait answers it"
"$uiot" command wait -c "$dyn" -C 1 -W 10 --reply '{"done": true}' &
waiter=$!
sleep 1
echo 'command demoproduct00001 demo-dyn-0001 reboot {"delay": 5}' >&3
wait "$waiter"
sleep 0.2
echo "-- what uiot-sim printed (one JSON line per request and answer):"
cat "$run/sim.out"

echo; echo "== the board daemon: uiot run with a serial sensor, hooks and the local socket"
# A pseudo-terminal pair: uiot reads ttyS0 as its serial port, and this
# script plays the sensor on ttyS1.
socat pty,raw,echo=0,link="$run/ttyS0" pty,raw,echo=0,link="$run/ttyS1" 2>/dev/null &
ptys=$!
for _ in $(seq 100); do [ -e "$run/ttyS1" ] && break; sleep 0.05; done
board="$run/board.ini"
cat "$ini" > "$board"
cat >> "$board" <<EOF2

[daemon]
socket = $run/uiot.sock

[serial.sensor]
device = $run/ttyS0
uplink_topic = sensor
downlink_topic = display

[hooks]
on_command = $root/etc/hooks/on_command.sh
on_shadow_desired = $root/etc/hooks/on_shadow_desired.sh
EOF2
chmod 600 "$board"
# The example hooks keep their state in \$UIOT_HOOK_STATE_DIR (default /run/uiot).
UIOT_HOOK_STATE_DIR="$run" "$uiot" run -c "$board" 2> "$run/daemon.log" &
daemon=$!
for _ in $(seq 100); do grep -q "local socket" "$run/daemon.log" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
echo "-- the sensor writes three lines on its serial port; the cloud receives them:"
mosquitto_sub "${cloud[@]}" -t "$dev/sensor" -v -C 3 -W 10 > "$run/sensor.out" &
watcher=$!
sleep 0.5
printf 't=21.5\nt=21.6\nh=40\n' > "$run/ttyS1"
wait "$watcher"
cat "$run/sensor.out"
echo "-- a shell script runs uiot pub while the daemon is up: it goes through the daemon's login"
"$uiot" pub -c "$board" -t upload -q 1 -m '{"from":"a script"}'
echo "exit code: $?; the daemon was kicked: $(grep -c 'connection lost' "$run/daemon.log" || true) time(s)"
echo "-- the cloud sends a command; the on_command hook answers it:"
echo 'command demoproduct00001 demo-device-0001 set_led {"state": 1}' >&3
for _ in $(seq 100); do grep -q '"Identifier":"set_led"' "$run/sim.out" && break; sleep 0.05; done
grep '"Identifier":"set_led","Output"' "$run/sim.out" || grep '"set_led"' "$run/sim.out" | tail -1
echo "-- the cloud sets a desired value; the on_shadow_desired hook applies it:"
echo 'desired demoproduct00001 demo-device-0001 {"interval": 30}' >&3
for _ in $(seq 100); do [ -s "$run/interval" ] && break; sleep 0.05; done
echo "the hook wrote interval = $(cat "$run/interval" 2>/dev/null)"
echo "-- SIGTERM stops the daemon cleanly:"
kill -TERM "$daemon"
set +e
wait "$daemon"
echo "uiot run exit code: $?"
set -e
daemon=""
tail -n 3 "$run/daemon.log"
echo; echo "demo finished: the broker, uiot-sim and the daemon are stopped again."
