#!/usr/bin/env bash
# The quickstart: installs what is missing, builds uiot, starts a local
# broker that mimics UIoT Core (127.0.0.1 only), and shows a device talking
# to "the cloud" both ways with `uiot pub` and `uiot sub`. Stops everything
# it started when it ends.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh >/dev/null
echo "== building uiot (release)"
cargo build --release --locked --bin uiot --bin uiot-sim
uiot="$root/target/release/uiot"
uiot_sim="$root/target/release/uiot-sim"

# A free port on 127.0.0.1.
port=""
for p in $(seq 18830 18899); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "demo: no free port in 18830..18899" >&2; exit 69; }

run=$(mktemp -d /tmp/uiot-demo.XXXXXX)
export UIOT_BROKER_DIR="$run"
sim=""
cleanup() {
  if [ -n "$sim" ]; then kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true; fi
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
echo; echo "demo finished: the broker and uiot-sim are stopped again."
