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
cargo build --release --locked --bin uiot
uiot="$root/target/release/uiot"

# A free port on 127.0.0.1.
port=""
for p in $(seq 18830 18899); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "demo: no free port in 18830..18899" >&2; exit 69; }

run=$(mktemp -d /tmp/uiot-demo.XXXXXX)
export UIOT_BROKER_DIR="$run"
cleanup() {
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
echo; echo "demo finished: the broker is stopped again."
