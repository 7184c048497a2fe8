#!/usr/bin/env bash
# Fleet through a broker outage (issue 13): N devices, each its own
# uiot::Client (examples/fleet.rs), against a private Mosquitto with the
# UIoT-like profile on a free 127.0.0.1 port. After a warm-up the broker is
# killed with -9, kept down FLEET_DOWN seconds and started again on the same
# port; the fleet reports reconnect times and what its checker received.
# Each size runs twice: the library's default back-off (exponential, full
# jitter) and a fixed 1 s retry (libmosquitto's default). Then the memory
# of idle clients: RSS with N idle devices minus RSS with none, over N.
#
# usage: scripts/fleet.sh [N ...]          (default: 500 1000 2000)
# env:   FLEET_RATE (msgs/s per device, default 1), FLEET_WARMUP (s, 8),
#        FLEET_DOWN (s, 10), FLEET_AFTER (s after the restart, 30),
#        FLEET_BIN (a built fleet example; default: cargo build --release),
#        FLEET_KEEP=1 keeps the run directory.
# Only 127.0.0.1. Every process runs under `timeout` and is killed on exit.
# Without Mosquitto it skips (exit 0), but under CI=true that is a failure.
set -euo pipefail

cd "$(dirname "$0")/.."
RATE=${FLEET_RATE:-1}
WARMUP=${FLEET_WARMUP:-8}
DOWN=${FLEET_DOWN:-10}
AFTER=${FLEET_AFTER:-30}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(500 1000 2000)

for tool in mosquitto mosquitto_passwd; do
    if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
        if [ "${CI:-}" = true ]; then
            echo "FAIL: $tool is missing (CI=true); scripts/install-deps.sh installs it" >&2
            exit 1
        fi
        echo "SKIP: $tool is missing; scripts/install-deps.sh installs it" >&2
        exit 0
    fi
done
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

if [ -z "${FLEET_BIN:-}" ]; then
    timeout 900 cargo build --release --example fleet >&2
    FLEET_BIN=target/release/examples/fleet
fi

RUN=$(mktemp -d /tmp/uiot-fleet.XXXXXX)
BROKER_PID=
FLEET_PID=
cleanup() {
    [ -n "$FLEET_PID" ] && kill -9 "$FLEET_PID" 2>/dev/null || true
    [ -n "$BROKER_PID" ] && stop_broker
    wait 2>/dev/null || true
    if [ "${FLEET_KEEP:-}" = 1 ]; then echo "run directory kept: $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT INT TERM

MAX_N=0
for n in "${SIZES[@]}"; do [ "$n" -gt "$MAX_N" ] && MAX_N=$n; done
# ~5 fds per client in the fleet, 1 per client in the broker, plus slack.
WANT_FDS=$((MAX_N * 6 + 1024))
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$HARD" -lt "$WANT_FDS" ]; then
    echo "note: ulimit -Hn is $HARD, $WANT_FDS wanted for $MAX_N devices" >&2
    WANT_FDS=$HARD
fi
ulimit -n "$WANT_FDS"

# Logins: the cloud (checker) and MAX_N devices of one product.
PSN=fleetprod0000001
{
    echo "fleet-cloud:fleet-cloud-pw"
    for i in $(seq 1 "$MAX_N"); do printf '%s|dev%06d|1:secret%06d\n' "$PSN" "$i" "$i"; done
} >"$RUN/logins"
cp "$RUN/logins" "$RUN/passwd"
timeout 120 mosquitto_passwd -U "$RUN/passwd"
{
    echo "user fleet-cloud"
    echo "topic readwrite #"
    for i in $(seq 1 "$MAX_N"); do
        d=$(printf 'dev%06d' "$i")
        printf 'user %s|%s|1\ntopic readwrite /%s/%s/#\ntopic readwrite /$system/%s/%s/#\ntopic read /%s/$broadcast/#\n\n' \
            "$PSN" "$d" "$PSN" "$d" "$PSN" "$d" "$PSN"
    done
} >"$RUN/acl"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for _ in $(seq 1 20); do
    p=$((20000 + RANDOM % 30000))
    port_busy "$p" || { PORT=$p; break; }
done
[ -n "$PORT" ] || { echo "no free port found on 127.0.0.1" >&2; exit 1; }

# The profile as the tests use it, but logging only errors and notices:
# `log_type all` writes a line per message, which at thousands of messages a
# second costs the broker more than the clients cost us. (`information`
# holds the "running" line and one line per connection.)
{
    echo "listener $PORT 127.0.0.1"
    grep -v '^log_type' etc/broker/mosquitto.conf
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "log_type information"
    echo "password_file $RUN/passwd"
    echo "acl_file $RUN/acl"
    echo "log_dest file $RUN/mosquitto.log"
    [ "$(id -u)" = 0 ] && echo "user root"
} >"$RUN/mosquitto.conf"

start_broker() {
    local tries=0
    while :; do
        : >"$RUN/mosquitto.log"
        timeout 1800 "$MOSQUITTO" -c "$RUN/mosquitto.conf" >>"$RUN/mosquitto.out" 2>&1 &
        BROKER_PID=$!
        for _ in $(seq 1 200); do
            grep -q ' running$' "$RUN/mosquitto.log" 2>/dev/null && return 0
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.05
        done
        tries=$((tries + 1))
        if [ "$tries" -ge 30 ]; then
            echo "mosquitto did not start on $PORT:" >&2
            tail -n 5 "$RUN/mosquitto.log" "$RUN/mosquitto.out" >&2
            exit 1
        fi
        sleep 0.5 # port still held after the kill: try again
    done
}
stop_broker() {
    # `timeout` runs mosquitto as its child: kill that child, like a crash.
    pkill -9 -P "$BROKER_PID" 2>/dev/null || true
    kill -9 "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}

# One fleet run through one outage: prints the fleet's report lines.
outage_run() { # N MODE(jitter|fixed)
    local n=$1 mode=$2 extra=() out="$RUN/fleet-$1-$2.out"
    [ "$mode" = fixed ] && extra=(--fixed-retry 1s)
    start_broker
    local dur=$((WARMUP + DOWN + AFTER))
    timeout $((dur + 120)) "$FLEET_BIN" --devices "$n" --rate "$RATE" --duration "$dur" \
        --port "$PORT" --credentials "$RUN/logins" --cloud fleet-cloud:fleet-cloud-pw \
        "${extra[@]}" >"$out" 2>"$out.err" &
    FLEET_PID=$!
    # Warm-up counts from when every device is connected.
    for _ in $(seq 1 1200); do grep -q '^connected ' "$out" && break; sleep 0.1; done
    sleep "$WARMUP"
    stop_broker
    sleep "$DOWN"
    start_broker
    local rc=0
    wait "$FLEET_PID" || rc=$?
    FLEET_PID=
    stop_broker
    if [ "$rc" != 0 ]; then
        echo "fleet $n $mode failed ($rc):" >&2
        tail -n 5 "$out" "$out.err" >&2
        return 1
    fi
    grep -E '^(connected|outage|  |accepted|rss_kib)' "$out" | sed "s/^/[$n $mode] /" >&2
    local o a
    o=$(grep '^outage 1 ' "$out" || echo "outage 1 none")
    a=$(grep '^accepted ' "$out")
    field() { echo "$2" | tr ' ' '\n' | awk -v k="$1" 'prev == k { print; exit } { prev = $0 }'; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s of %s | %s ms | %s ms | %s ms |\n' \
        "$n" "$mode" "$(field accepted "$a")" "$(field checker_unique "$a")" \
        "$(field missing_checker_away "$a")" "$(field missing_after_end "$a")" \
        "$(field missing_unexplained "$a")" \
        "$(field duplicates "$a")" "$(field peak_per_1s "$o") / $(field peak_per_100ms "$o")" \
        "$(field devices_back "$o")" "$n" "$(field first_ms "$o")" "$(field p50_ms "$o")" \
        "$(field last_ms "$o")"
}

idle_rss() { # N: prints rss_kib threads fds of N idle devices
    start_broker
    local out="$RUN/idle-$1.out"
    timeout 300 "$FLEET_BIN" --devices "$1" --rate 0 --duration 3 --port "$PORT" \
        --credentials "$RUN/logins" >"$out" 2>"$out.err"
    stop_broker
    awk '/^rss_kib/ { print $2, $4, $6 }' "$out"
}

echo "fleet: rate $RATE msg/s per device, warm-up ${WARMUP}s, broker down ${DOWN}s, ${AFTER}s after; $(nproc) cores" >&2
TABLE="| devices | back-off | accepted (PUBACK) | checker unique | lost, checker away | lost, acked after the end | lost, unexplained | duplicates | peak reconnects per 1 s / 100 ms | back | first | median | last |
|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in "${SIZES[@]}"; do
    for mode in jitter fixed; do
        # Not in $(...): the broker's and the fleet's pids must stay known
        # to this shell's cleanup.
        if outage_run "$n" "$mode" >"$RUN/row"; then row=$(cat "$RUN/row"); else
            row="| $n | $mode | failed | | | | | | | | | | |"
        fi
        TABLE="$TABLE
$row"
    done
done
echo
echo "$TABLE"
echo
idle_rss 0 >"$RUN/idle"
read -r rss0 thr0 fd0 <"$RUN/idle"
echo "| idle devices | RSS KiB | threads | fds | RSS per device KiB |"
echo "|---|---|---|---|---|"
echo "| 0 | $rss0 | $thr0 | $fd0 | |"
for n in "${SIZES[@]}"; do
    idle_rss "$n" >"$RUN/idle"
    read -r rss thr fd <"$RUN/idle"
    echo "| $n | $rss | $thr | $fd | $(( (rss - rss0) / n )) |"
done
