#!/usr/bin/env bash
# Soak test of the board daemon through a flaky link (issue 13).
#
#   scripts/soak.sh [--minutes M] [--seed S]
#
# Runs `uiot run` (release build) for M minutes (default 60) with
#   - a serial bridge ([serial.soak], line framing, QoS 1) on one end of a
#     socat pty pair; a writer puts 10 numbered lines a second on the other;
#   - every 5 s one `uiot pub --via-daemon -q 1` through its local socket;
#   - on_connect and on_disconnect hooks appending to a file;
#   - the on-disk queue ([queue] dir in the work directory);
# connected to a private Mosquitto (the UIoT-like profile of etc/broker/:
# passwords and ACL, on a free port of 127.0.0.1) through
# examples/flaky_proxy.rs, which cuts connections, pauses traffic and
# black-holes the link on a schedule drawn from the seed (S, or a random
# one, printed either way: `--seed S` replays the same schedule). A checker
# (mosquitto_sub as demo-cloud, straight to the broker, not through the
# proxy) records every message. After M minutes the writers stop, the
# proxy passes everything and the script waits for the queue to drain.
#
# Every interval (60 s; 10 s for runs under 10 minutes), at the start and
# at the end it samples the daemon's VmRSS, open fds and threads, prints
# the series and the least-squares slope per hour of RSS and fds.
#
# Fails (exit 1) when
#   - a line written to the serial port, or a message `uiot pub` reported
#     sent (exit 0), never reached the checker (duplicates are counted, not
#     failures: QoS 1 is at least once);
#   - the daemon died, did not answer a `uiot pub --via-daemon` at the end,
#     or did not stop cleanly (exit 0 within 20 s of SIGTERM);
#   - open fds at the end exceed the first sample by more than FD_TOL (4),
#     or threads by more than THREAD_TOL (2): both are taken while the link
#     is up and nothing is in flight;
#   - RSS grew: runs of 20 minutes and more fail when the RSS slope over the
#     samples after the first 10 minutes exceeds RSS_SLOPE_MAX_KIB_H
#     (1024 KiB/h); shorter runs (CI's 2 minutes) when the last sample
#     exceeds the first by more than RSS_GROWTH_MAX_KIB (2048 KiB), since
#     a slope over two minutes mostly measures the allocator warming up.
#   - the on_connect hook ran fewer times than the daemon logged "connected"
#     (each connection, the first one included), or on_disconnect fewer
#     times than it logged "connection lost".
#
# Reconnect back-off is capped at 10 s ([reconnect] max, default 60) and the
# keep-alive is 30 s (the platform's minimum), so that outages end within a
# few seconds of the link healing and a 2-minute run still sees a black
# hole detected by the keep-alive.
#
# Everything runs under `timeout` and is stopped on exit (trap); traffic
# goes to 127.0.0.1 only. Needs mosquitto, mosquitto_sub/_passwd and socat
# (scripts/install-deps.sh); under CI=true a missing one is a failure, else
# the script skips (exit 0) with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

minutes=60 seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=${2:?--minutes needs a value}; shift 2 ;;
    --seed) seed=${2:?--seed needs a value}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[1-9][0-9]*$ ]] || { echo "soak: --minutes must be a whole number >= 1" >&2; exit 2; }
if [ -z "$seed" ]; then
  seed=$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ))
fi
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "soak: --seed must be a whole number" >&2; exit 2; }

FD_TOL=4 THREAD_TOL=2 RSS_SLOPE_MAX_KIB_H=1024 RSS_GROWTH_MAX_KIB=2048
RATE=10            # serial lines a second
PUB_EVERY=5        # seconds between `uiot pub --via-daemon`
DRAIN_MAX=180      # seconds to wait for the queue to drain after healing
run_secs=$((minutes * 60))
if [ "$minutes" -lt 10 ]; then interval=10; else interval=60; fi
limit=$((run_secs + DRAIN_MAX + 300))  # bound of every background process

say() { printf 'soak %(%H:%M:%S)T %s\n' -1 "$*"; }
die() { say "FAIL: $*"; exit 1; }

need_tool() {
  local t
  t=$(command -v "$1" 2>/dev/null || true)
  [ -z "$t" ] && [ -x "/usr/sbin/$1" ] && t="/usr/sbin/$1"
  if [ -z "$t" ]; then
    if [ "${CI:-}" = true ]; then die "$1 is missing (scripts/install-deps.sh installs it)"; fi
    say "skipped: $1 is missing (scripts/install-deps.sh installs it)"
    exit 0
  fi
  printf '%s' "$t"
}
mosquitto=$(need_tool mosquitto)
mosquitto_sub=$(need_tool mosquitto_sub)
mosquitto_passwd=$(need_tool mosquitto_passwd)
need_tool socat > /dev/null

say "seed $seed, $minutes minute(s), samples every $interval s (replay: scripts/soak.sh --minutes $minutes --seed $seed)"

work=$(mktemp -d "${TMPDIR:-/tmp}/uiot-soak.XXXXXX")
pids=()
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    say "kept $work for a look (daemon log: $work/run.log, proxy: $work/proxy.log)"
  elif [ -z "${SOAK_KEEP:-}" ]; then
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building uiot and examples/flaky_proxy (release)"
timeout 1200 cargo build --release --quiet --bin uiot --example flaky_proxy
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
uiot="${target_dir:-$root/target}/release/uiot"
proxy="${target_dir:-$root/target}/release/examples/flaky_proxy"
{ [ -x "$uiot" ] && [ -x "$proxy" ]; } || die "no $uiot or $proxy after the build"

psn=demoproduct00001 dsn=demo-device-0001 secret=demosecret000001
cloud_pw=demo-cloud-pw
base="/$psn/$dsn/soak"

# ---- broker: the UIoT-like profile, credentials and ACL ----------------------
grep -v '^#' etc/broker/passwords | grep . > "$work/passwd"
chmod 600 "$work/passwd"
"$mosquitto_passwd" -U "$work/passwd"
port=$((20000 + RANDOM % 20000))
for try in 1 2 3 4 5 6 7 8 9 10; do
  {
    echo "listener $port 127.0.0.1"
    cat etc/broker/mosquitto.conf
    echo "password_file $work/passwd"
    echo "acl_file $root/etc/broker/acl"
    echo "log_dest file $work/mosquitto.log"
    if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
  } > "$work/mosquitto.conf"
  : > "$work/mosquitto.log"
  timeout -k 5 "$limit" "$mosquitto" -c "$work/mosquitto.conf" >> "$work/mosquitto.log" 2>&1 &
  bpid=$!
  up=""
  for _ in $(seq 50); do
    if grep -q 'mosquitto version .* running' "$work/mosquitto.log"; then up=1; break; fi
    kill -0 "$bpid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -n "$up" ]; then pids+=("$bpid"); break; fi
  kill "$bpid" 2>/dev/null || true; wait "$bpid" 2>/dev/null || true
  say "port $port unusable (try $try)"
  port=$((port + 1))
done
[ -n "$up" ] || die "mosquitto did not start: $(tail -n 3 "$work/mosquitto.log")"
say "broker: mosquitto on 127.0.0.1:$port (etc/broker profile, passwords and ACL)"

# ---- the checker: every message of the soak topics, straight from the broker -
timeout -k 2 "$limit" "$mosquitto_sub" -h 127.0.0.1 -p "$port" -i soak-checker \
  -u demo-cloud -P "$cloud_pw" -q 1 -v -t "$base/#" > "$work/received.txt" 2> "$work/checker.log" &
pids+=("$!")
for _ in $(seq 50); do
  grep -q "soak-checker" "$work/mosquitto.log" && grep -q "Sending SUBACK to soak-checker" "$work/mosquitto.log" && break
  sleep 0.1
done
grep -q "Sending SUBACK to soak-checker" "$work/mosquitto.log" || die "the checker did not subscribe: $(cat "$work/checker.log")"

# ---- the flaky proxy ----------------------------------------------------------
timeout -k 2 "$limit" "$proxy" --target "$port" --seed "$seed" --chaos "$run_secs" \
  --port-file "$work/proxy.port" > "$work/proxy.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do [ -s "$work/proxy.port" ] && break; sleep 0.1; done
proxy_port=$(cat "$work/proxy.port" 2>/dev/null || true)
[[ "$proxy_port" =~ ^[0-9]+$ ]] || die "the proxy did not start: $(cat "$work/proxy.log")"
say "proxy: 127.0.0.1:$proxy_port -> :$port ($(head -n 1 "$work/proxy.log"))"

# ---- the serial port: a socat pty pair ----------------------------------------
timeout -k 2 "$limit" socat pty,raw,echo=0,link="$work/ttyS0" pty,raw,echo=0,link="$work/ttyS1" 2> "$work/socat.log" &
pids+=("$!")
for _ in $(seq 100); do [ -e "$work/ttyS1" ] && [ -e "$work/ttyS0" ] && break; sleep 0.05; done
[ -e "$work/ttyS1" ] || die "socat made no pty pair: $(cat "$work/socat.log")"

# ---- the hooks ------------------------------------------------------------------
cat > "$work/hook.sh" <<EOF
#!/bin/sh
# on_connect / on_disconnect: one line per event.
echo "\$(date -u +%H:%M:%S) \$UIOT_EVENT \${UIOT_REASON:-}" >> "$work/hooks.txt"
EOF
chmod 755 "$work/hook.sh"

# ---- the daemon -------------------------------------------------------------------
mkdir -p "$work/queue"
cat > "$work/run.ini" <<EOF
[device]
product_sn = $psn
device_sn = $dsn
device_secret = $secret

[connection]
host = 127.0.0.1
port = $proxy_port
tls = false
keep_alive = 30
connect_timeout = 5

[reconnect]
min = 1
max = 10

[queue]
dir = $work/queue
max_messages = 200000
max_bytes = 67108864

[daemon]
socket = $work/uiot.sock

[hooks]
on_connect = $work/hook.sh
on_disconnect = $work/hook.sh
timeout = 10

[serial.soak]
device = $work/ttyS0
baud = 115200
framing = line
uplink_topic = $base/serial
uplink_qos = 1
EOF
chmod 600 "$work/run.ini"
timeout -k 5 "$limit" "$uiot" run -c "$work/run.ini" 2> "$work/run.log" &
run_timeout=$!
pids+=("$run_timeout")
for _ in $(seq 200); do grep -q "serial soak: " "$work/run.log" 2>/dev/null && break; sleep 0.05; done
grep -q "serial soak: " "$work/run.log" || die "uiot run did not connect: $(tail -n 5 "$work/run.log")"
run_pid=$(pgrep -P "$run_timeout" | head -n 1 || true)
[ -n "$run_pid" ] || die "cannot find uiot run under timeout (pid $run_timeout)"
say "daemon: uiot run pid $run_pid connected through the proxy"

# ---- sampling ---------------------------------------------------------------------
t0=$EPOCHSECONDS
: > "$work/samples.txt"
sample() {
  local rss fds thr q
  [ -d "/proc/$run_pid" ] || die "the daemon (pid $run_pid) died: $(tail -n 5 "$work/run.log")"
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$run_pid/status")
  thr=$(awk '/^Threads:/ { print $2 }' "/proc/$run_pid/status")
  fds=$(find "/proc/$run_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  q=$(du -sk "$work/queue" | cut -f1)
  echo "$((EPOCHSECONDS - t0)) $rss $fds $thr $q $1" >> "$work/samples.txt"
  say "sample t=$((EPOCHSECONDS - t0))s rss=${rss}KiB fds=$fds threads=$thr queue=${q}KiB ($1)"
}
sleep 2  # the on_connect hook has run
sample start

# ---- traffic ----------------------------------------------------------------------
# Serial writer: line N at t0 + N/RATE (catching up after the port blocked),
# its count in serial.count after each line.
# shellcheck disable=SC2016 # expanded by the inner bash
timeout -k 2 "$limit" bash -c '
  exec 5> "$1"; n=0; now() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
  start=$(now); end=$((start + $2 * 1000000))
  while [ "$(now)" -lt "$end" ]; do
    n=$((n + 1))
    printf "s%d\n" "$n" >&5
    echo "$n" > "$4"
    # line n + 1 is due at start + n / rate
    due=$((start + n * 1000000 / $3 - $(now)))
    [ "$due" -le 0 ] || sleep "$(printf "%d.%06d" $((due / 1000000)) $((due % 1000000)))"
  done' serial-writer "$work/ttyS1" "$run_secs" "$RATE" "$work/serial.count" &
writer=$!
pids+=("$writer")

# `uiot pub --via-daemon` every PUB_EVERY s, each bounded; its exit status
# recorded (only those that exited 0 must arrive).
# shellcheck disable=SC2016
timeout -k 2 "$limit" bash -c '
  n=0; end=$((EPOCHSECONDS + $2))
  while [ "$EPOCHSECONDS" -lt "$end" ]; do
    n=$((n + 1))
    ( timeout -k 2 120 "$1" pub -c "$3" --via-daemon -t "$4" -q 1 -m "p$n" > /dev/null 2>> "$5.err"
      echo "p$n $?" >> "$5" ) &
    sleep "$6"
  done
  wait' pub-writer "$uiot" "$run_secs" "$work/run.ini" "$base/pub" "$work/pubs.txt" "$PUB_EVERY" &
pubber=$!
pids+=("$pubber")

next=$((t0 + interval))
while kill -0 "$writer" 2>/dev/null; do
  if [ "$EPOCHSECONDS" -ge "$next" ]; then
    sample run
    next=$((next + interval))
  fi
  sleep 1
done
wait "$writer" || true
wait "$pubber" || true
written=$(cat "$work/serial.count" 2>/dev/null || echo 0)
say "writers done: $written serial lines, $(wc -l < "$work/pubs.txt") uiot pub; waiting for the proxy to heal and the queue to drain"

# ---- heal, drain, check ---------------------------------------------------------------
for _ in $(seq 60); do grep -q " healed$" "$work/proxy.log" && break; sleep 1; done
grep -q " healed$" "$work/proxy.log" || die "the proxy never healed: $(tail -n 3 "$work/proxy.log")"

# missing: the expected payloads that the checker has not seen, one a line.
missing() {
  {
    seq -f 's%.0f' 1 "$written"
    awk '$2 == 0 { print $1 }' "$work/pubs.txt"
  } | sort > "$work/expected.txt"
  awk '{ print $2 }' "$work/received.txt" | sort -u > "$work/got.txt"
  comm -23 "$work/expected.txt" "$work/got.txt"
}
drained=""
drain_t0=$EPOCHSECONDS
while [ $((EPOCHSECONDS - drain_t0)) -lt "$DRAIN_MAX" ]; do
  if [ -z "$(missing | head -n 1)" ]; then drained=1; break; fi
  sleep 1
done
drain_s=$((EPOCHSECONDS - drain_t0))

# The daemon still answers on its socket, and the link is up.
alive=""
if timeout -k 2 30 "$uiot" pub -c "$work/run.ini" --via-daemon -t "$base/final" -q 1 -m final > /dev/null 2>> "$work/pubs.txt.err"; then
  alive=1
fi
sleep 2
sample end

# ---- report -----------------------------------------------------------------------------
lost=$(missing | wc -l)
total=$(grep -c -E " (s|p)[0-9]+$" "$work/received.txt" || true)
uniq=$(awk '$2 ~ /^[sp][0-9]+$/ { print $2 }' "$work/received.txt" | sort -u | wc -l)
dups=$((total - uniq))
pubs_ok=$(awk '$2 == 0' "$work/pubs.txt" | wc -l)
pubs_all=$(wc -l < "$work/pubs.txt")
ev() { grep -c -E "$1" "$work/proxy.log" || true; }
cuts=$(ev ' cut [0-9]+ connections$') pauses=$(ev ' pause [0-9.]+ s$') holes=$(ev ' blackhole [0-9.]+ s$')
connects=$(grep -c "\] connected$" "$work/run.log" || true)
losts=$(grep -c "services\] connection lost" "$work/run.log" || true)
hook_c=$(grep -c " connect " "$work/hooks.txt" 2>/dev/null || true)
hook_d=$(grep -c " disconnect " "$work/hooks.txt" 2>/dev/null || true)

# Least-squares slope per hour of column $1 over samples with t >= $2.
slope() {
  awk -v c="$1" -v from="$2" '$1 >= from { n++; x = $1 / 3600; y = $c; sx += x; sy += y; sxx += x * x; sxy += x * y }
    END { d = n * sxx - sx * sx; if (n < 2 || d == 0) print 0; else printf "%.1f", (n * sxy - sx * sy) / d }' "$work/samples.txt"
}
first() { awk -v c="$1" 'NR == 1 { print $c; exit }' "$work/samples.txt"; }
last() { awk -v c="$1" '{ v = $c } END { print v }' "$work/samples.txt"; }
rss0=$(first 2) rss1=$(last 2) fd0=$(first 3) fd1=$(last 3) th0=$(first 4) th1=$(last 4)
rss_max=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$work/samples.txt")
fd_max=$(awk 'BEGIN { m = 0 } $3 > m { m = $3 } END { print m }' "$work/samples.txt")
th_max=$(awk 'BEGIN { m = 0 } $4 > m { m = $4 } END { print m }' "$work/samples.txt")
warm=0; [ "$minutes" -ge 20 ] && warm=600
rss_slope=$(slope 2 "$warm") fd_slope=$(slope 3 0) th_slope=$(slope 4 0)

echo
echo "samples (t s, VmRSS KiB, fds, threads, queue dir KiB):"
awk '{ printf "  %6d %8d %4d %4d %8d  %s\n", $1, $2, $3, $4, $5, $6 }' "$work/samples.txt"
echo
echo "| soak: minutes | seed | proxy events: cut / pause / black hole | daemon: connected / lost; hooks on_connect / on_disconnect | serial lines written / uiot pub sent | received (unique) / lost / duplicates | drain after heal | VmRSS KiB first / last / max / slope per h | fds first / last / max / slope per h | threads first / last / max / slope per h | queue dir KiB first / last |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
echo "| $minutes | $seed | $cuts / $pauses / $holes | $connects / $losts; $hook_c / $hook_d | $written / $pubs_ok of $pubs_all | $uniq / $lost / $dups | ${drain_s} s | $rss0 / $rss1 / $rss_max / $rss_slope$([ "$warm" -gt 0 ] && echo " (after 10 min)") | $fd0 / $fd1 / $fd_max / $fd_slope | $th0 / $th1 / $th_max / $th_slope | $(first 5) / $(last 5) |"
echo

fail=()
[ "$written" -gt 0 ] || fail+=("the serial writer wrote nothing")
[ "$lost" -eq 0 ] || fail+=("$lost message(s) lost: $(missing | head -n 10 | tr '\n' ' ')")
[ -n "$drained" ] || fail+=("the queue did not drain within $DRAIN_MAX s of healing")
[ -n "$alive" ] || fail+=("uiot pub --via-daemon failed at the end: $(tail -n 2 "$work/pubs.txt.err")")
[ $((fd1 - fd0)) -le "$FD_TOL" ] || fail+=("open fds grew from $fd0 to $fd1 (tolerance $FD_TOL)")
[ $((th1 - th0)) -le "$THREAD_TOL" ] || fail+=("threads grew from $th0 to $th1 (tolerance $THREAD_TOL)")
if [ "$minutes" -ge 20 ]; then
  awk -v s="$rss_slope" -v m="$RSS_SLOPE_MAX_KIB_H" 'BEGIN { exit !(s <= m) }' \
    || fail+=("RSS slope $rss_slope KiB/h after the first 10 minutes exceeds $RSS_SLOPE_MAX_KIB_H")
else
  [ $((rss1 - rss0)) -le "$RSS_GROWTH_MAX_KIB" ] || fail+=("RSS grew from $rss0 to $rss1 KiB (more than $RSS_GROWTH_MAX_KIB)")
fi
# "connected" is logged for every connection, the first one included.
[ "$connects" -ge 1 ] || fail+=("the daemon logged no \"connected\" event")
[ "$hook_c" -ge "$connects" ] || fail+=("on_connect ran $hook_c times for $connects connections")
[ "$hook_d" -ge "$losts" ] || fail+=("on_disconnect ran $hook_d times for $losts lost connections")

# A clean stop: SIGTERM, exit 0 within 20 s.
kill -TERM "$run_pid"
stopped=""
for _ in $(seq 200); do [ -d "/proc/$run_pid" ] || { stopped=1; break; }; sleep 0.1; done
run_rc=0
wait "$run_timeout" || run_rc=$?
[ -n "$stopped" ] && [ "$run_rc" -eq 0 ] || fail+=("uiot run did not stop cleanly on SIGTERM (exit $run_rc)")

if [ ${#fail[@]} -gt 0 ]; then
  for f in "${fail[@]}"; do say "FAIL: $f"; done
  say "replay: scripts/soak.sh --minutes $minutes --seed $seed"
  exit 1
fi
say "ok: nothing lost, no fd/thread growth, RSS within bounds; seed $seed"
