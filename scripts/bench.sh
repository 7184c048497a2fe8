#!/usr/bin/env bash
# Benchmarks uiot against Mosquitto's own clients on one local broker and
# prints ONE markdown table (stdout); progress and details go to stderr.
#
# Usage:
#   scripts/bench.sh [--quick] [--runs N]
#     --quick   a reduced run in under 3 minutes (builds cached): 1 run per
#               row unless --runs says otherwise, 10 one-message processes
#               instead of 20, 20 library connects instead of 100, no 65 s
#               idle test, no reconnect-after-1-s-down row
#     --runs N  repeat each throughput row N times and report the median
#               (default 3, 5 is better on a busy machine; must be odd so
#               the median is one real run)
#   BENCH_QUICK=1 is the same as --quick.
#
# Every uiot row runs side by side with Mosquitto's client in the same run,
# alternating A B A B, and the ratio column is the median of the per-pair
# ratios with their min-max spread, so machine drift hits both alike.
#
# What it measures (see docs/bench.md for the table of one run):
#   1. QoS 0, 100,000 x 64-byte lines: `uiot pub -l` vs `mosquitto_pub -l`,
#      both reading the same file on stdin; msgs/s until the publisher exits,
#      CPU (user+sys, GNU time) per message, peak RSS (GNU time %M). The
#      broker logs no per-message lines (no `log_type all`/`debug`): with
#      them the broker is the bottleneck and every client looks the same.
#   1b. Memory while publishing the same 100k QoS 0 lines on a plain
#      connection, for the plain build (cargo --no-default-features, in
#      target/bench-plain) and the default TLS build, beside mosquitto_pub:
#      the input is held open 1 s after the last line, and at that moment
#      /proc/PID/status (VmHWM = peak RSS so far, threads) and
#      /proc/PID/smaps (RSS, PSS and private KB per mapping) are read and
#      grouped: the program's binary, libc, libcrypto+libssl, other shared
#      libraries, [heap] (glibc's main arena), thread stacks (2 or 8 MiB
#      anonymous mappings after a guard page), per-thread malloc arenas
#      (64 MiB-aligned anonymous mappings), other anonymous memory (malloc
#      blocks large enough to be mmap-ed), the rest ([stack], vdso, ...).
#      A second table.
#   2. The same for 20,000 lines at QoS 1 (a publisher exits only after
#      every PUBACK, so this is end to end).
#   3. The library API (examples/bench_pub.rs): QoS 0 100k and QoS 1 20k
#      msgs/s, the median and p99 of 5,000 blocking QoS 1 round trips, and
#      its peak RSS. QoS 1 again through the on-disk queue (queue.dir in the
#      temp dir; the table names its filesystem): 20k with fsync every
#      100 ms, 2k with fsync always (one fdatasync per message), and the
#      bytes written to disk per message (queue_stats: bytes_written/stored).
#   4. TLS: rows 1 and 2 again over TLS (`uiot pub -l` with tls = true and
#      the bench CA vs `mosquitto_pub -l --cafile CA -h localhost`); the
#      library's connect time (`Client::connect`: TCP connect, TLS handshake,
#      CONNECT until CONNACK), plain and TLS; and the wall time of a whole
#      process that publishes one empty message, `uiot pub -m ''` vs
#      `mosquitto_pub -n` (includes process start, connect and disconnect),
#      plain and TLS.
#   4b. Platform round trips against `uiot-sim` (the simulator on the plain
#      listener): examples/bench_platform.rs times blocking `Shadow::report`
#      and `Thing::post` calls (median, p99) beside the library's QoS 1
#      round trip of row 3; and a whole `uiot property post` process beside
#      `mosquitto_rr` sending the same request (MQTT 5 request/response),
#      both answered by the simulator.
#   5. Reconnect after a broker restart: a second private broker (plain) is
#      killed with -9 and started again on the same port, 5 times at once
#      and 5 times after 1 s down; the library client (`bench_pub reconnect`,
#      back-off 100 ms to 1 s) and `mosquitto_sub` (libmosquitto's default:
#      a retry every 1 s) are connected to it together. Both are timed from
#      the moment the new broker's port answers (this script polls it every
#      10 ms) until each is connected again (uiot: the wall clock bench_pub
#      prints at Event::Connected; mosquitto_sub: the time its "received
#      CONNACK" debug line arrives); median of the 5. bench_pub's own 10 ms
#      poll of the port gives a second uiot figure, in the log.
#   4d. OTA download: a 20 MB firmware image pushed with `uiot-sim --http-port`
#      (`ota push`), fetched from the simulator's firmware server over
#      loopback by examples/bench_ota.rs (`ota::download`, what `uiot run`
#      does: 16 KiB chunks to disk, MD5 while downloading, fsync, Size and
#      MD5 checked) vs `curl -s -o` (no check); MB/s and peak RSS (GNU time
#      %M), alternating, median of $runs.
#   4c. The board daemon: serial line -> cloud latency through `uiot run`
#      over a socat pty pair (examples/bench_serial.rs), and one message
#      per process through the daemon's socket vs --direct.
#   6. Context switches of an idle `uiot sub` (keep-alive 30) over 65 s,
#      every thread counted, beside an idle `mosquitto_sub -k 30` measured at
#      the same instants.
#
# Everything runs against a private Mosquitto (anonymous, no queue limit,
# no persistence, TCP_NODELAY) listening on 127.0.0.1 only: plain MQTT on a
# free port and TLS on the next one, with a throw-away CA and a server
# certificate for localhost/127.0.0.1 made by the openssl CLI in the temp
# dir; the reconnect rows use a second, plain one on the port after those.
# Every process it starts is bounded by `timeout` and killed on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

# ---- settings ----------------------------------------------------------------
q0_count=100000  # messages in the QoS 0 rows
q1_count=20000   # messages in the QoS 1 rows
msg_size=64      # payload bytes of every message
rtt_count=5000   # blocking QoS 1 round trips for the latency row
connect_count=100 # library connects per run for the connect rows
proc_count=20    # single-message processes per client, transport and run
plat_count=2000  # blocking shadow reports and property posts per run (library)
q1_always_count=2000 # QoS 1 messages with the on-disk queue and fsync always
fsync_ms=100     # the interval of the fsync = interval_ms row
restarts=5       # broker restarts per reconnect row
idle_secs=65     # length of the idle window
keep_alive=30    # keep-alive of both idle subscribers
run_limit=60     # seconds any single measured command may take
broker_limit=600 # seconds the broker may live at most
runs=3
runs_given=false
quick=false
[ "${BENCH_QUICK:-0}" = 0 ] || quick=true

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=true ;;
    --runs)
      [ $# -ge 2 ] || die "--runs needs a number, e.g. --runs 5"
      runs=$2; runs_given=true; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) die "unknown argument '$1'; usage: $0 [--quick] [--runs N]" ;;
  esac
  shift
done
if $quick; then
  $runs_given || runs=1
  proc_count=10
  connect_count=20
  plat_count=500
fi
if ! [[ "$runs" =~ ^[0-9]+$ ]] || [ "$runs" -lt 1 ] || [ $((runs % 2)) -ne 1 ]; then
  die "--runs must be an odd number >= 1 (got '$runs'), so the median is one real run"
fi

# ---- tools -------------------------------------------------------------------
# Mosquitto and GNU time come from Debian packages; install them if missing.
missing=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1 \
  || missing+=(mosquitto-clients)
[ -x /usr/bin/time ] || missing+=(time)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] \
    || die "missing ${missing[*]}; install as root: apt-get install -y ${missing[*]}"
  say "installing ${missing[*]} (apt-get)"
  apt-get install -y "${missing[@]}" >&2 \
    || die "apt-get install -y ${missing[*]} failed; run 'apt-get update' and try again"
fi
mosquitto=/usr/sbin/mosquitto
[ -x "$mosquitto" ] || mosquitto=$(command -v mosquitto)
gnu_time=/usr/bin/time
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (https://rustup.rs)"
command -v timeout >/dev/null 2>&1 || die "timeout not found; install coreutils"

# ---- cleanup -----------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/uiot-bench.XXXXXX")
pids=()  # background processes this script started (broker, idle subscribers)
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build -------------------------------------------------------------------
say "building release binaries"
(cd "$root" && cargo build --release --quiet --bin uiot --bin uiot-sim --example bench_pub \
  --example bench_platform --example bench_serial --example bench_ota) >&2 \
  || die "cargo build --release failed; see the errors above"
target="${CARGO_TARGET_DIR:-$root/target}/release"
uiot="$target/uiot"
bench_pub="$target/examples/bench_pub"
uiot_sim="$target/uiot-sim"
bench_platform="$target/examples/bench_platform"
bench_serial="$target/examples/bench_serial"
bench_ota="$target/examples/bench_ota"
if ! [ -x "$uiot" ] || ! [ -x "$bench_pub" ] || ! [ -x "$uiot_sim" ] || ! [ -x "$bench_platform" ] \
  || ! [ -x "$bench_serial" ] || ! [ -x "$bench_ota" ]; then
  die "built binaries not found in $target; is CARGO_TARGET_DIR set differently?"
fi
# The plain-MQTT build (no `tls` feature) for the memory rows, in a target
# directory of its own so that it does not replace the default build.
say "building the plain build (--no-default-features) into target/bench-plain"
plain_target="${CARGO_TARGET_DIR:-$root/target}/bench-plain"
(cd "$root" && cargo build --release --quiet --no-default-features --bin uiot \
  --target-dir "$plain_target") >&2 \
  || die "cargo build --release --no-default-features failed; see the errors above"
uiot_plain="$plain_target/release/uiot"
[ -x "$uiot_plain" ] || die "plain build not found at $uiot_plain"

# ---- certificates -------------------------------------------------------------
# A throw-away CA and a server certificate (RSA 2048, SHA-256, two days)
# for DNS:localhost and IP:127.0.0.1, signed by it.
say "making a throw-away CA and a server certificate for localhost (openssl)"
ca="$work/ca.pem"
make_certs() {
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
    -keyout "$work/ca.key" -out "$ca" -subj "/CN=uiot bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey rsa:2048 -nodes -sha256 \
    -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost"
  printf '%s\n' "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$work/server.ext"
  openssl x509 -req -sha256 -days 2 -in "$work/server.csr" \
    -CA "$ca" -CAkey "$work/ca.key" -set_serial 1 \
    -extfile "$work/server.ext" -out "$work/server.pem"
  openssl verify -CAfile "$ca" "$work/server.pem"
}
make_certs > "$work/openssl.log" 2>&1 \
  || die "openssl could not make the bench certificates: $(cat "$work/openssl.log")"

# ---- broker ------------------------------------------------------------------
# Start a private Mosquitto on the first two free ports from a random start:
# plain MQTT on $port, TLS on $tls_port = $port + 1.
start_broker() {
  local try conf log pid
  port=$((20000 + RANDOM % 20000))
  for try in 1 2 3 4 5 6 7 8 9 10; do
    tls_port=$((port + 1))
    conf="$work/mosquitto.conf"
    log="$work/mosquitto.log"
    {
      echo "listener $port 127.0.0.1"
      echo "listener $tls_port 127.0.0.1"
      echo "cafile $ca"
      echo "certfile $work/server.pem"
      echo "keyfile $work/server.key"
      echo "allow_anonymous true"
      # Mosquitto leaves Nagle on by default; production brokers usually
      # turn it off. With it on, each TLS connect waits ~40 ms for a delayed
      # ACK (session tickets, then CONNACK), for every client alike.
      echo "set_tcp_nodelay true"
      echo "max_queued_messages 0"
      echo "persistence false"
      echo "log_dest file $log"
      echo "log_type error"
      echo "log_type warning"
      echo "log_type notice"
      echo "log_type information"
      # As root Mosquitto would switch to the 'mosquitto' user, which cannot
      # write to the private work directory.
      if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
    } > "$conf"
    : > "$log"
    # The timeout bounds the broker even if this script is killed with -9;
    # killing the timeout process stops the broker too.
    timeout -k 5 "$broker_limit" "$mosquitto" -c "$conf" >> "$log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
      if grep -q 'mosquitto version .* running' "$log"; then
        pids+=("$pid")
        # The broker itself (the timeout's child), for its CPU time.
        broker_pid=$(pgrep -P "$pid" -x mosquitto | head -n 1 || true)
        say "broker: mosquitto pid $pid on 127.0.0.1:$port (plain) and :$tls_port (TLS)"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    say "port $port or $tls_port unusable (try $try): $(tail -n 1 "$log")"
    port=$((port + 2))
  done
  die "mosquitto did not start on 10 ports; its last log: $(cat "$log")"
}
port=0 tls_port=0
start_broker
# What a client on the system's OpenSSL negotiates with this listener (both
# uiot, through native-tls, and mosquitto_pub use it, neither caps the version).
tls_session=$(timeout 10 openssl s_client -connect "127.0.0.1:$tls_port" \
  -servername localhost -verify_hostname localhost -CAfile "$ca" -brief < /dev/null 2>&1 \
  | awk -F': ' '/^Protocol version/ { v = $2 } /^Ciphersuite/ { c = $2 }
                /^Verification: OK/ { ok = 1 } END { if (ok) print v ", " c }') || true
[ -n "$tls_session" ] \
  || die "openssl s_client could not verify the TLS listener on 127.0.0.1:$tls_port; see $work/mosquitto.log"
say "TLS listener: $tls_session, certificate verified for localhost"

# ---- inputs and configurations ------------------------------------------------
# Lines of exactly $msg_size bytes (a zero-padded counter) plus a newline.
awk -v n="$q0_count" -v w="$msg_size" \
  'BEGIN { for (i = 0; i < n; i++) printf "%0" w "d\n", i }' > "$work/q0.txt"
head -n "$q1_count" "$work/q0.txt" > "$work/q1.txt"
[ "$(wc -c < "$work/q0.txt")" -eq $((q0_count * (msg_size + 1))) ] \
  || die "input file has the wrong size; awk's printf did not pad to $msg_size bytes"

# A uiot config for this broker; each role gets its own device (client id),
# since two connections with one client id kick each other.
# write_config FILE DEVICE_SN [tls]
write_config() {
  local host=127.0.0.1 p=$port tls=false ca_line=""
  if [ "${3:-}" = tls ]; then
    host=localhost p=$tls_port tls=true ca_line="ca_file = $ca"
  fi
  cat > "$1" <<EOF
[device]
product_sn = benchproduct0001
device_sn = $2
device_secret = unused-anonymous-broker

[connection]
host = $host
port = $p
tls = $tls
$ca_line
keep_alive = $keep_alive

[limits]
enforce = false
EOF
}
write_config "$work/pub.ini" bench-pub-0001
write_config "$work/pub-tls.ini" bench-pub-0001 tls
write_config "$work/sub.ini" bench-idle-0001
# They hold a (dummy) device secret: 0600, as uiot asks (else it warns at start).
chmod 600 "$work/pub.ini" "$work/pub-tls.ini" "$work/sub.ini"
for f in pub.ini pub-tls.ini; do
  "$uiot" check -c "$work/$f" > /dev/null \
    || die "uiot check rejected the generated config $work/$f"
done

# ---- measuring helpers --------------------------------------------------------
# forget_pid PID: drop PID from the cleanup list (it has exited).
forget_pid() {
  local p kept=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}

# run_timed LABEL INPUT CMD...: runs CMD with INPUT on stdin under GNU time and
# a timeout; sets wall (s, from bash's microsecond clock), cpu (user+sys s)
# and rss (KB), and out (its stdout).
run_timed() {
  local label=$1 input=$2 t0 t1 rc=0
  shift 2
  t0=$EPOCHREALTIME
  timeout -k 5 "$run_limit" "$gnu_time" -f '%U %S %M' -o "$work/time.out" "$@" \
    < "$input" > "$work/cmd.out" 2> "$work/cmd.err" || rc=$?
  t1=$EPOCHREALTIME
  if [ "$rc" -ne 0 ]; then
    say "$label failed (exit $rc); its stderr:"
    cat "$work/cmd.err" >&2
    [ "$rc" -ne 124 ] || die "$label took over $run_limit s; is the broker stuck?"
    die "$label failed; see the error above"
  fi
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  read -r user sys rss < <(tail -n 1 "$work/time.out")
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  out=$(cat "$work/cmd.out")
}

# broker_ticks: CPU time (user+sys, clock ticks) the broker has used so far.
broker_ticks() {
  if [ -n "${broker_pid:-}" ] && [ -r "/proc/$broker_pid/stat" ]; then
    awk '{ print $14 + $15 }' "/proc/$broker_pid/stat"
  else
    echo 0
  fi
}
clk_tck=$(getconf CLK_TCK)

# median X...: the middle value (numeric sort) of an odd number of values.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# minimum X...: the smallest value.
minimum() { printf '%s\n' "$@" | sort -g | head -n 1; }

# quot A B: A / B with 4 decimals ("inf" when B is 0).
quot() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "inf"; else printf "%.4f", a / b }'; }

# spread R...: "1.23x (1.10-1.40x)": the median and the range of ratios.
spread() {
  local med lo hi
  med=$(median "$@") lo=$(minimum "$@")
  hi=$(printf '%s\n' "$@" | sort -g | tail -n 1)
  awk -v m="$med" -v l="$lo" -v h="$hi" 'BEGIN { printf "%.2fx (%.2f-%.2fx)", m, l, h }'
}

# The value after NAME in bench_pub's "name value name value" output.
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<< "$2"; }

# mosq_args TRANSPORT: how mosquitto_pub reaches the broker (plain or tls);
# over TLS it trusts only the bench CA and checks the name localhost.
mosq_args() {
  if [ "$1" = tls ]; then
    printf '%s\n' -h localhost -p "$tls_port" --cafile "$ca"
  else
    printf '%s\n' -h 127.0.0.1 -p "$port"
  fi
}

# bench_cli QOS COUNT INPUT TRANSPORT: runs `uiot pub -l` and
# `mosquitto_pub -l` alternately $runs times (so drift hits both alike) over
# TRANSPORT (plain or tls); sets {uiot,mosq}_{rate,cpu,rss} to the medians
# and r_{rate,cpu,rss} to "median (min-max)" of the per-pair ratios
# uiot / mosquitto_pub (r_*_med: the median alone).
bench_cli() {
  local qos=$1 count=$2 input=$3 transport=$4 i who ini=pub.ini
  local -a u_rate=() u_cpu=() u_rss=() m_rate=() m_cpu=() m_rss=() mosq
  local -a u_busy=() m_busy=()
  local b0 b1 busy
  local -a p_rate=() p_cpu=() p_rss=()
  [ "$transport" = plain ] || ini=pub-tls.ini
  mapfile -t mosq < <(mosq_args "$transport")
  for ((i = 1; i <= runs; i++)); do
    for who in uiot mosq; do
      b0=$(broker_ticks)
      if [ "$who" = uiot ]; then
        run_timed "uiot pub -q $qos -l ($transport)" "$input" \
          "$uiot" pub -c "$work/$ini" -t "/bench/q$qos" -q "$qos" -l
      else
        run_timed "mosquitto_pub -q $qos -l ($transport)" "$input" \
          mosquitto_pub "${mosq[@]}" -V mqttv311 -i "bench-mosq-pub" \
          -t "/bench/q$qos" -q "$qos" -l
      fi
      b1=$(broker_ticks)
      # How busy the broker was during the run: its CPU time over the wall
      # time (1.00 = a whole core: the broker is the bottleneck).
      busy=$(awk -v a="$b0" -v b="$b1" -v t="$clk_tck" -v w="$wall" \
        'BEGIN { printf "%.2f", (b - a) / t / w }')
      local rate cpm
      rate=$(awk -v n="$count" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
      cpm=$(awk -v n="$count" -v c="$cpu" 'BEGIN { printf "%.2f", c * 1e6 / n }')
      say "  run $i $who qos $qos $transport: $rate msgs/s, ${wall}s wall, ${cpu}s cpu, $cpm us/msg, ${rss} KB, broker busy $busy"
      if [ "$who" = uiot ]; then
        u_rate+=("$rate"); u_cpu+=("$cpm"); u_rss+=("$rss"); u_busy+=("$busy")
      else
        m_rate+=("$rate"); m_cpu+=("$cpm"); m_rss+=("$rss"); m_busy+=("$busy")
      fi
    done
    p_rate+=("$(quot "${u_rate[-1]}" "${m_rate[-1]}")")
    p_cpu+=("$(quot "${u_cpu[-1]}" "${m_cpu[-1]}")")
    p_rss+=("$(quot "${u_rss[-1]}" "${m_rss[-1]}")")
  done
  r_rate_med=$(median "${p_rate[@]}") r_rate=$(spread "${p_rate[@]}")
  r_cpu_med=$(median "${p_cpu[@]}") r_cpu=$(spread "${p_cpu[@]}")
  r_rss=$(spread "${p_rss[@]}")
  uiot_rate=$(median "${u_rate[@]}") mosq_rate=$(median "${m_rate[@]}")
  uiot_cpu=$(median "${u_cpu[@]}") mosq_cpu=$(median "${m_cpu[@]}")
  uiot_rss=$(median "${u_rss[@]}") mosq_rss=$(median "${m_rss[@]}")
  uiot_busy=$(median "${u_busy[@]}") mosq_busy=$(median "${m_busy[@]}")
}

# ctx_snapshot PID: one line per thread of PID: "tid name voluntary
# nonvoluntary" (voluntary_ctxt_switches and nonvoluntary_ctxt_switches).
ctx_snapshot() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "${t##*/}" "$(tr -d ' ' < "$t/comm")" \
      "$(awk '/^voluntary_ctxt_switches:/ { v = $2 } /^nonvoluntary_ctxt_switches:/ { n = $2 }
              END { print v + 0, n + 0 }' "$t/status")"
  done
}

# ctx_delta BEFORE AFTER: the switches (both kinds) between two snapshots,
# all threads (a thread born in between counts from zero).
ctx_delta() {
  awk 'NR == FNR { v[$1] = $3; n[$1] = $4; next }
       { d += $3 - v[$1] + $4 - n[$1] } END { print d + 0 }' "$1" "$2"
}

# ctx_detail BEFORE AFTER: "name +voluntary/+nonvoluntary" per thread, for the log.
ctx_detail() {
  awk 'NR == FNR { v[$1] = $3; n[$1] = $4; next }
       { printf "%s%s +%d/+%d", (c++ ? ", " : ""), $2, $3 - v[$1], $4 - n[$1] }' \
    "$1" "$2"
}

# ---- 1 + 2: the CLI publishers ------------------------------------------------
say "QoS 0: $q0_count x $msg_size B, uiot pub -l vs mosquitto_pub -l, $runs runs each"
bench_cli 0 "$q0_count" "$work/q0.txt" plain
q0_uiot_rate=$uiot_rate q0_uiot_cpu=$uiot_cpu q0_uiot_rss=$uiot_rss
q0_r_rate=$r_rate q0_r_cpu=$r_cpu q0_r_rss=$r_rss
q0_r_rate_med=$r_rate_med q0_r_cpu_med=$r_cpu_med
q0_mosq_rate=$mosq_rate q0_mosq_cpu=$mosq_cpu q0_mosq_rss=$mosq_rss
q0_uiot_busy=$uiot_busy q0_mosq_busy=$mosq_busy
say "QoS 1: $q1_count x $msg_size B, uiot pub -l vs mosquitto_pub -l, $runs runs each"
bench_cli 1 "$q1_count" "$work/q1.txt" plain
q1_uiot_rate=$uiot_rate q1_uiot_cpu=$uiot_cpu q1_uiot_rss=$uiot_rss
q1_r_rate=$r_rate q1_r_cpu=$r_cpu q1_r_rss=$r_rss
q1_r_rate_med=$r_rate_med q1_r_cpu_med=$r_cpu_med
q1_mosq_rate=$mosq_rate q1_mosq_cpu=$mosq_cpu q1_mosq_rss=$mosq_rss
q1_uiot_busy=$uiot_busy q1_mosq_busy=$mosq_busy

# ---- 1b: where the memory goes --------------------------------------------------
# mem_snapshot PID OUT: /proc/PID/status (VmHWM, VmRSS, Threads) and
# /proc/PID/smaps grouped, one line "group rss pss private" (KB) per group,
# plus "total ..." and "hwm KB threads N". The program's own binary is the
# mapping whose path is the executable /proc/PID/exe points at.
mem_snapshot() {
  local pid=$1 exe
  exe=$(readlink "/proc/$pid/exe")
  awk -v exe="$exe" '
    function flush() {
      if (!have) return
      g = "rest ([stack], vdso, vvar, ...)"
      if (path == exe) g = "binary (text, data)"
      else if (path ~ /\/libc\.so/) g = "libc"
      else if (path ~ /\/lib(crypto|ssl)\.so/) g = "libcrypto + libssl"
      else if (path ~ /\.so/) g = "other shared libraries (ld.so, libgcc_s, libmosquitto, ...)"
      else if (path == "[heap]") g = "[heap] (glibc main arena)"
      else if (path == "" && (size == 2048 || size == 8192) && guard) g = "thread stacks"
      else if (path == "" && start ~ /[048c]000000$/) g = "per-thread malloc arenas"
      else if (path == "") g = "other anonymous (large malloc blocks: mmap-ed Vec/VecDeque buffers)"
      R[g] += rss; P[g] += pss; V[g] += priv
      tr += rss; tp += pss; tv += priv
    }
    /^[0-9a-f]+-[0-9a-f]+ / {
      flush(); have = 1; path = (NF >= 6 ? $6 : ""); rss = pss = priv = size = 0
      # A thread stack is an anonymous mapping right after its guard page
      # (4 KB, no access); a malloc arena of a thread starts 64 MiB-aligned.
      guard = (prev_perm == "---p" && prev_size == 4 && prev_end == substr($1, 1, index($1, "-") - 1))
      start = substr($1, 1, index($1, "-") - 1); end = substr($1, index($1, "-") + 1); perm = $2
      next
    }
    /^Size:/ { size = $2; prev_size = $2; prev_perm = perm; prev_end = end }
    /^Rss:/ { rss = $2 }
    /^Pss:/ { pss = $2 }
    /^Private_(Clean|Dirty):/ { priv += $2 }
    END {
      flush()
      for (g in R) printf "%s\t%d\t%d\t%d\n", g, R[g], P[g], V[g]
      printf "total\t%d\t%d\t%d\n", tr, tp, tv
    }' "/proc/$pid/smaps"
  awk '/^VmHWM:/ { h = $2 } /^Threads:/ { t = $2 } END { printf "hwm\t%d\t%d\t0\n", h, t }' \
    "/proc/$pid/status"
}

# mem_run LABEL OUT CMD...: CMD reads the QoS 0 input from a FIFO that stays
# open 1 s after the last line (so CMD has published everything and waits
# for more), then its memory is snapshotted into OUT and the FIFO closed.
mem_run() {
  local label=$1 out=$2 tpid pid _
  shift 2
  local fifo="$work/hold.fifo"
  rm -f "$fifo"
  mkfifo "$fifo"
  timeout -k 5 "$run_limit" "$@" < "$fifo" > /dev/null 2> "$work/mem.err" &
  tpid=$!
  pids+=("$tpid")
  exec 4> "$fifo"
  cat "$work/q0.txt" >&4
  sleep 1
  pid=""
  for _ in $(seq 50); do
    pid=$(ps -o pid= --ppid "$tpid" | head -n 1 | tr -d ' ')
    [ -z "$pid" ] || break
    sleep 0.02
  done
  [ -n "$pid" ] || die "$label: its process is gone: $(cat "$work/mem.err")"
  mem_snapshot "$pid" > "$out"
  exec 4>&-
  wait "$tpid" || die "$label failed: $(cat "$work/mem.err")"
  forget_pid "$tpid"
}

# mem_field OUT GROUP COLUMN: a number from mem_run's OUT (2 rss, 3 pss, 4 private).
mem_field() { awk -F '\t' -v g="$2" -v c="$3" '$1 == g { print $c; f = 1 } END { if (!f) print 0 }' "$1"; }

say "memory: $q0_count x $msg_size B QoS 0 on a plain connection, plain build, TLS build" \
  "and mosquitto_pub, $runs runs each (peak RSS: GNU time; breakdown: /proc at the end)"
declare -A mem_hwm mem_peak
mem_builds=(plain tls mosq)
for ((i = 1; i <= runs; i++)); do
  for b in "${mem_builds[@]}"; do
    case $b in
      plain) cmd=("$uiot_plain" pub -c "$work/pub.ini" -t /bench/q0 -q 0 -l) ;;
      tls) cmd=("$uiot" pub -c "$work/pub.ini" -t /bench/q0 -q 0 -l) ;;
      mosq) cmd=(mosquitto_pub -h 127.0.0.1 -p "$port" -V mqttv311 -i bench-mosq-pub -t /bench/q0 -q 0 -l) ;;
    esac
    run_timed "$b: pub -l (memory)" "$work/q0.txt" "${cmd[@]}"
    mem_hwm[$b]+="$rss "
    # The breakdown of the last run only (it is a picture, not a statistic).
    [ "$i" -lt "$runs" ] || mem_run "$b: pub -l (breakdown)" "$work/mem-$b.txt" "${cmd[@]}"
  done
done
for b in "${mem_builds[@]}"; do
  # shellcheck disable=SC2086 # the list of numbers is meant to split
  mem_peak[$b]=$(median ${mem_hwm[$b]})
  say "  $b: peak RSS ${mem_hwm[$b]}KB (median ${mem_peak[$b]}); at the end:" \
    "$(tr '\t\n' ' ;' < "$work/mem-$b.txt")"
done

# ---- 3: the library API -------------------------------------------------------
# The on-disk queue lives in the temp dir; name its filesystem, since fsync
# costs depend on it (tmpfs would make fsync free).
queue_dir="$work/queue"
if command -v findmnt >/dev/null 2>&1; then
  queue_fs="$(findmnt -n -o FSTYPE -T "$work") on $(findmnt -n -o SOURCE -T "$work")"
else
  queue_fs=$(stat -f -c %T "$work")
fi
say "library API (examples/bench_pub.rs), $runs runs each; on-disk queue in" \
  "${work%/*} ($queue_fs)"
# Each run is its own process, so each has its own peak RSS.
l0_rates=() l0_rsss=() l1_rates=() l1_rsss=() rtt_meds=() rtt_p99s=() raw_meds=() raw_p99s=()
qa_rates=() qa_bpms=() qi_rates=() qi_bpms=()
lib1_topic=/bench/lib1
for ((i = 1; i <= runs; i++)); do
  run_timed "bench_pub qos 0" /dev/null \
    env BENCH_TOPIC=/bench/lib0 "$bench_pub" "$port" 0 "$q0_count" "$msg_size"
  l0_rates+=("$(field msgs_per_s "$out")"); l0_rsss+=("$rss")
  run_timed "bench_pub qos 1" /dev/null \
    env BENCH_TOPIC="$lib1_topic" "$bench_pub" "$port" 1 "$q1_count" "$msg_size"
  l1_rates+=("$(field msgs_per_s "$out")"); l1_rsss+=("$rss")
  # The same QoS 1 messages through the on-disk queue (a fresh directory
  # each time): fsync every $fsync_ms ms, then fsync always (fewer messages:
  # one fdatasync per message makes it slow).
  rm -rf "$queue_dir"
  run_timed "bench_pub qos 1 on-disk queue, fsync interval_ms $fsync_ms" /dev/null \
    env BENCH_TOPIC="$lib1_topic" BENCH_QUEUE_DIR="$queue_dir" BENCH_FSYNC="$fsync_ms" \
    "$bench_pub" "$port" 1 "$q1_count" "$msg_size"
  qi_rates+=("$(field msgs_per_s "$out")"); qi_bpms+=("$(field bytes_per_msg "$out")")
  rm -rf "$queue_dir"
  run_timed "bench_pub qos 1 on-disk queue, fsync always" /dev/null \
    env BENCH_TOPIC="$lib1_topic" BENCH_QUEUE_DIR="$queue_dir" BENCH_FSYNC=always \
    "$bench_pub" "$port" 1 "$q1_always_count" "$msg_size"
  qa_rates+=("$(field msgs_per_s "$out")"); qa_bpms+=("$(field bytes_per_msg "$out")")
  rm -rf "$queue_dir"
  run_timed "bench_pub rtt" /dev/null \
    env BENCH_TOPIC=/bench/rtt "$bench_pub" "$port" 1 "$rtt_count" "$msg_size" rtt
  rtt_meds+=("$(field rtt_median_us "$out")"); rtt_p99s+=("$(field rtt_p99_us "$out")")
  rtt_rss=$rss
  # The floor: the same round trips over a bare TcpStream, no client library.
  run_timed "bench_pub raw-rtt" /dev/null \
    env BENCH_TOPIC=/bench/rtt "$bench_pub" "$port" 1 "$rtt_count" "$msg_size" raw-rtt
  raw_meds+=("$(field rtt_median_us "$out")"); raw_p99s+=("$(field rtt_p99_us "$out")")
  say "  run $i: qos0 ${l0_rates[-1]} msgs/s (${l0_rsss[-1]} KB)," \
    "qos1 ${l1_rates[-1]} msgs/s (${l1_rsss[-1]} KB)," \
    "qos1 queue interval_ms $fsync_ms ${qi_rates[-1]} msgs/s (${qi_bpms[-1]} B/msg on disk)," \
    "qos1 queue always ${qa_rates[-1]} msgs/s (${qa_bpms[-1]} B/msg on disk)," \
    "rtt median ${rtt_meds[-1]} us p99 ${rtt_p99s[-1]} us (${rtt_rss} KB)," \
    "bare-socket rtt median ${raw_meds[-1]} us p99 ${raw_p99s[-1]} us"
done
for v in "${l0_rates[@]}" "${l1_rates[@]}" "${rtt_meds[@]}" "${rtt_p99s[@]}" \
  "${raw_meds[@]}" "${raw_p99s[@]}" "${qi_rates[@]}" "${qi_bpms[@]}" \
  "${qa_rates[@]}" "${qa_bpms[@]}"; do
  [[ "$v" =~ ^[0-9.]+$ ]] || die "bench_pub printed no number (got '$v'); run it by hand"
done
lib0_rate=$(median "${l0_rates[@]}") lib0_rss=$(median "${l0_rsss[@]}")
lib1_rate=$(median "${l1_rates[@]}") lib1_rss=$(median "${l1_rsss[@]}")
rtt_med=$(median "${rtt_meds[@]}") rtt_p99=$(median "${rtt_p99s[@]}")
raw_med=$(median "${raw_meds[@]}") raw_p99=$(median "${raw_p99s[@]}")
qi_rate=$(median "${qi_rates[@]}") qi_bpm=$(median "${qi_bpms[@]}")
qa_rate=$(median "${qa_rates[@]}") qa_bpm=$(median "${qa_bpms[@]}")

# ---- 4: TLS -------------------------------------------------------------------
say "TLS ($tls_session): QoS 0: $q0_count x $msg_size B, uiot pub -l vs" \
  "mosquitto_pub -l --cafile, $runs runs each"
bench_cli 0 "$q0_count" "$work/q0.txt" tls
t0_uiot_rate=$uiot_rate t0_uiot_cpu=$uiot_cpu t0_uiot_rss=$uiot_rss
t0_r_rate=$r_rate t0_r_cpu=$r_cpu t0_r_rss=$r_rss
t0_r_rate_med=$r_rate_med t0_r_cpu_med=$r_cpu_med
t0_mosq_rate=$mosq_rate t0_mosq_cpu=$mosq_cpu t0_mosq_rss=$mosq_rss
say "TLS: QoS 1: $q1_count x $msg_size B, uiot pub -l vs mosquitto_pub -l --cafile, $runs runs each"
bench_cli 1 "$q1_count" "$work/q1.txt" tls
t1_uiot_rate=$uiot_rate t1_uiot_cpu=$uiot_cpu t1_uiot_rss=$uiot_rss
t1_r_rate=$r_rate t1_r_cpu=$r_cpu t1_r_rss=$r_rss
t1_r_rate_med=$r_rate_med t1_r_cpu_med=$r_cpu_med
t1_mosq_rate=$mosq_rate t1_mosq_cpu=$mosq_cpu t1_mosq_rss=$mosq_rss

# The library's connect time: only `Client::connect` is timed (thread start,
# TCP connect, TLS handshake with the CA file read and the certificate
# checked, CONNECT until CONNACK); the disconnect after each is not.
# The third variant points OpenSSL's default CA file at the bench CA
# (SSL_CERT_FILE, SSL_CERT_DIR): uiot's TLS context never loads OpenSSL's
# default store (src/transport/tls.rs), so the two must be the same; a gap
# would mean the system CA bundle (/etc/ssl/certs) is loaded again. Each
# connect here is a new Client, so each builds its context.
say "library connect time (Client::connect until CONNACK), $connect_count connects" \
  "x $runs runs: plain, TLS, TLS without the system CA bundle"
cp_meds=() cp_p99s=() ct_meds=() ct_p99s=() cs_meds=() cs_p99s=()
for ((i = 1; i <= runs; i++)); do
  run_timed "bench_pub connect (plain)" /dev/null \
    "$bench_pub" "$port" 0 "$connect_count" 0 connect
  cp_meds+=("$(field connect_median_us "$out")"); cp_p99s+=("$(field connect_p99_us "$out")")
  run_timed "bench_pub connect (tls)" /dev/null \
    env BENCH_CA="$ca" BENCH_HOST=localhost "$bench_pub" "$tls_port" 0 "$connect_count" 0 connect
  ct_meds+=("$(field connect_median_us "$out")"); ct_p99s+=("$(field connect_p99_us "$out")")
  run_timed "bench_pub connect (tls, SSL_CERT_FILE)" /dev/null \
    env SSL_CERT_FILE="$ca" SSL_CERT_DIR="$work/no-such-dir" BENCH_CA="$ca" \
    BENCH_HOST=localhost "$bench_pub" "$tls_port" 0 "$connect_count" 0 connect
  cs_meds+=("$(field connect_median_us "$out")"); cs_p99s+=("$(field connect_p99_us "$out")")
  say "  run $i: plain median ${cp_meds[-1]} us p99 ${cp_p99s[-1]} us," \
    "TLS median ${ct_meds[-1]} us p99 ${ct_p99s[-1]} us," \
    "TLS without the system bundle median ${cs_meds[-1]} us p99 ${cs_p99s[-1]} us"
done
for v in "${cp_meds[@]}" "${cp_p99s[@]}" "${ct_meds[@]}" "${ct_p99s[@]}" \
  "${cs_meds[@]}" "${cs_p99s[@]}"; do
  [[ "$v" =~ ^[0-9.]+$ ]] || die "bench_pub connect printed no number (got '$v'); run it by hand"
done
conn_plain_med=$(median "${cp_meds[@]}") conn_plain_p99=$(median "${cp_p99s[@]}")
conn_tls_med=$(median "${ct_meds[@]}") conn_tls_p99=$(median "${ct_p99s[@]}")
conn_slim_med=$(median "${cs_meds[@]}") conn_slim_p99=$(median "${cs_p99s[@]}")

# proc_ms LABEL CMD...: the wall time of one whole process in ms (from just
# before `timeout` starts it until it exits), in $ms.
proc_ms() {
  local label=$1 t0 t1 rc=0
  shift
  t0=$EPOCHREALTIME
  timeout -k 2 10 "$@" < /dev/null > /dev/null 2> "$work/proc.err" || rc=$?
  t1=$EPOCHREALTIME
  [ "$rc" -eq 0 ] || die "$label failed (exit $rc): $(cat "$work/proc.err")"
  ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }')
}

# One empty QoS 0 message per process, alternating uiot and mosquitto_pub:
# process start, (TLS) connect, PUBLISH, DISCONNECT, exit.
say "one empty message per process: uiot pub -m '' vs mosquitto_pub -n," \
  "$((runs * proc_count)) processes each, plain and TLS"
declare -A one_uiot one_mosq one_ratio one_ratio_med
for transport in plain tls; do
  ini=pub.ini
  [ "$transport" = plain ] || ini=pub-tls.ini
  mapfile -t mosq < <(mosq_args "$transport")
  u_ms=() m_ms=() p_ms=()
  for ((i = 1; i <= runs * proc_count; i++)); do
    proc_ms "uiot pub -m '' ($transport)" "$uiot" pub -c "$work/$ini" -t /bench/one -m ''
    u_ms+=("$ms")
    proc_ms "mosquitto_pub -n ($transport)" mosquitto_pub "${mosq[@]}" -V mqttv311 \
      -i bench-mosq-one -t /bench/one -n
    m_ms+=("$ms")
    p_ms+=("$(quot "${u_ms[-1]}" "${m_ms[-1]}")")
  done
  one_ratio[$transport]=$(spread "${p_ms[@]}")
  one_ratio_med[$transport]=$(median "${p_ms[@]}")
  one_uiot[$transport]=$(median "${u_ms[@]}")
  one_mosq[$transport]=$(median "${m_ms[@]}")
  say "  $transport: uiot pub median ${one_uiot[$transport]} ms (min $(minimum "${u_ms[@]}") ms)," \
    "mosquitto_pub median ${one_mosq[$transport]} ms (min $(minimum "${m_ms[@]}") ms)"
done

# ---- 4b: platform round trips against uiot-sim -------------------------------
# The simulator (src/bin/uiot-sim) answers the system topics on the plain
# listener; its stdin is a FIFO this script holds open (fd 3), and cleanup
# stops it with the other background processes.
say "platform round trips against uiot-sim: $plat_count shadow reports and property" \
  "posts x $runs runs (library), then $((runs * proc_count)) property-post processes:" \
  "uiot property post vs mosquitto_rr"
mkfifo "$work/sim.in"
exec 3<> "$work/sim.in"
timeout -k 2 "$broker_limit" "$uiot_sim" --host 127.0.0.1 --port "$port" \
  --username bench-sim --password unused --client-id bench-sim \
  < "$work/sim.in" > "$work/sim.out" 2> "$work/sim.log" &
pids+=("$!")
for _ in $(seq 100); do
  grep -q '"ready"' "$work/sim.out" 2>/dev/null && break
  sleep 0.05
done
grep -q '"ready"' "$work/sim.out" || die "uiot-sim did not start: $(tail -n 3 "$work/sim.log")"
sr_meds=() sr_p99s=() pp_meds=() pp_p99s=()
for ((i = 1; i <= runs; i++)); do
  run_timed "bench_platform" /dev/null "$bench_platform" "$port" "$plat_count"
  sr_meds+=("$(field shadow_report_median_us "$out")"); sr_p99s+=("$(field shadow_report_p99_us "$out")")
  pp_meds+=("$(field property_post_median_us "$out")"); pp_p99s+=("$(field property_post_p99_us "$out")")
  say "  run $i: shadow report median ${sr_meds[-1]} us p99 ${sr_p99s[-1]} us," \
    "property post median ${pp_meds[-1]} us p99 ${pp_p99s[-1]} us"
done
for v in "${sr_meds[@]}" "${sr_p99s[@]}" "${pp_meds[@]}" "${pp_p99s[@]}"; do
  [[ "$v" =~ ^[0-9.]+$ ]] || die "bench_platform printed no number (got '$v'); run it by hand"
done
sr_med=$(median "${sr_meds[@]}") sr_p99=$(median "${sr_p99s[@]}")
pp_med=$(median "${pp_meds[@]}") pp_p99=$(median "${pp_p99s[@]}")
# The same property post as a whole process: uiot (connect, subscribe to
# the replies, post, wait for post_reply, disconnect) vs mosquitto_rr
# (MQTT 5 request/response: connect, subscribe to post_reply, publish the
# same request, wait for one reply), both answered by the simulator.
tm="/\$system/benchproduct0001/bench-pub-0001/tmodel/property"
u_ms=() m_ms=() p_ms=()
for ((i = 1; i <= runs * proc_count; i++)); do
  proc_ms "uiot property post" "$uiot" property post -c "$work/pub.ini" '{"counter":1}'
  u_ms+=("$ms")
  proc_ms "mosquitto_rr" mosquitto_rr -h 127.0.0.1 -p "$port" -i bench-pub-rr -q 1 -W 5 \
    -t "$tm/post" -e "$tm/post_reply" -m '{"RequestID":"1","Property":{"counter":{"Value":1}}}'
  m_ms+=("$ms")
  p_ms+=("$(quot "${u_ms[-1]}" "${m_ms[-1]}")")
done
pp_proc_uiot=$(median "${u_ms[@]}") pp_proc_mosq=$(median "${m_ms[@]}") pp_proc_ratio=$(spread "${p_ms[@]}")
say "  uiot property post median $pp_proc_uiot ms, mosquitto_rr median $pp_proc_mosq ms"

# ---- 4d: OTA download ---------------------------------------------------------
# A second simulator with its HTTP server on a free loopback port; `ota
# push` to a device that is not online just makes the firmware URL.
ota_mb=20
say "OTA download: a $ota_mb MB image from uiot-sim's firmware server, bench_ota vs curl -o, $runs runs each"
head -c $((ota_mb * 1024 * 1024)) /dev/urandom > "$work/fw.bin"
ota_size=$(stat -c %s "$work/fw.bin")
ota_md5=$(md5sum "$work/fw.bin" | cut -d " " -f 1)
mkfifo "$work/simota.in"
exec 4<> "$work/simota.in"
timeout -k 2 "$broker_limit" "$uiot_sim" --host 127.0.0.1 --port "$port" \
  --username bench-sim-ota --password unused --client-id bench-sim-ota \
  --http-port 0 --device benchproduct0001:bench-ota-0001:unused \
  < "$work/simota.in" > "$work/simota.out" 2> "$work/simota.log" &
pids+=("$!")
simota_pid=$!
for _ in $(seq 100); do
  grep -q '"ready"' "$work/simota.out" 2>/dev/null && break
  sleep 0.05
done
grep -q '"ready"' "$work/simota.out" || die "uiot-sim --http-port did not start: $(tail -n 3 "$work/simota.log")"
echo "ota push benchproduct0001 bench-ota-0001 default 9 $work/fw.bin" >&4
ota_url=""
for _ in $(seq 100); do
  ota_url=$(grep '"pushed"' "$work/simota.out" 2>/dev/null | sed -n 's/.*"url":"\([^"]*\)".*/\1/p' | head -n 1 || true)
  [ -n "$ota_url" ] && break
  sleep 0.05
done
[[ "$ota_url" == http://127.0.0.1:* ]] || die "uiot-sim pushed no firmware URL: $(tail -n 3 "$work/simota.out")"
mkdir -p "$work/ota"
ota_u_mbs=() ota_c_mbs=() ota_u_rss=() ota_c_rss=() ota_r=()
for ((i = 1; i <= runs; i++)); do
  rm -f "$work/ota/"*
  run_timed "bench_ota" /dev/null "$bench_ota" "$ota_url" "$ota_size" "$ota_md5" "$work/ota"
  cmp -s "$out" "$work/fw.bin" || die "bench_ota's image $out differs from the firmware"
  ota_u_mbs+=("$(awk -v b="$ota_size" -v w="$wall" 'BEGIN { printf "%.1f", b / w / 1048576 }')")
  ota_u_rss+=("$rss")
  rm -f "$work/ota/"*
  run_timed "curl -o" /dev/null curl -s -f -o "$work/ota/curl.bin" "$ota_url"
  cmp -s "$work/ota/curl.bin" "$work/fw.bin" || die "curl's copy differs from the firmware"
  ota_c_mbs+=("$(awk -v b="$ota_size" -v w="$wall" 'BEGIN { printf "%.1f", b / w / 1048576 }')")
  ota_c_rss+=("$rss")
  ota_r+=("$(quot "${ota_u_mbs[-1]}" "${ota_c_mbs[-1]}")")
  say "  run $i: bench_ota ${ota_u_mbs[-1]} MB/s ${ota_u_rss[-1]} KB, curl ${ota_c_mbs[-1]} MB/s ${ota_c_rss[-1]} KB"
done
rm -f "$work/ota/"* "$work/fw.bin"
# Only one simulator may answer the system topics from here on.
kill "$simota_pid" 2>/dev/null || true
exec 4>&-
ota_u_med=$(median "${ota_u_mbs[@]}") ota_c_med=$(median "${ota_c_mbs[@]}") ota_ratio=$(spread "${ota_r[@]}")
ota_u_rss_med=$(median "${ota_u_rss[@]}") ota_c_rss_med=$(median "${ota_c_rss[@]}")

# ---- 4c: the board daemon ------------------------------------------------------
# `uiot run` with a [serial] port on one end of a socat pty pair: serial
# line -> cloud latency (examples/bench_serial.rs writes the other end and
# times the message at a subscriber), and one message per process through
# the daemon's socket vs on a connection of its own. The daemon stays up
# for the idle row (section 6).
command -v socat >/dev/null || die "socat is missing (scripts/install-deps.sh installs it)"
say "the board daemon: serial line -> cloud latency over a pty ($plat_count lines x $runs runs)," \
  "then $((runs * proc_count)) messages: uiot pub through the daemon vs --direct"
socat pty,raw,echo=0,link="$work/ttyB0" pty,raw,echo=0,link="$work/ttyB1" 2>/dev/null &
pids+=("$!")
for _ in $(seq 100); do [ -e "$work/ttyB1" ] && break; sleep 0.05; done
write_config "$work/run.ini" bench-run-0001
cat >> "$work/run.ini" <<EOF
[daemon]
socket = $work/uiot.sock

[serial.bench]
device = $work/ttyB0
baud = 115200
uplink_topic = /bench/serial
uplink_qos = 0
EOF
chmod 600 "$work/run.ini"
timeout -k 2 "$broker_limit" "$uiot" run -c "$work/run.ini" 2> "$work/run.log" &
pids+=("$!")
for _ in $(seq 100); do grep -q "serial bench:" "$work/run.log" 2>/dev/null && break; sleep 0.05; done
grep -q "serial bench:" "$work/run.log" || die "uiot run did not start: $(tail -n 3 "$work/run.log")"
# The daemon itself, not the `timeout` around it (the idle row counts its threads).
run_pid=$(pgrep -P "${pids[-1]}" | head -n 1)
[ -n "$run_pid" ] || die "cannot find the uiot run process under timeout (pid ${pids[-1]})"
sl_meds=() sl_p99s=()
for ((i = 1; i <= runs; i++)); do
  run_timed "bench_serial" /dev/null "$bench_serial" "$work/ttyB1" "$port" /bench/serial "$plat_count"
  sl_meds+=("$(field serial_median_us "$out")"); sl_p99s+=("$(field serial_p99_us "$out")")
  say "  run $i: serial line -> cloud median ${sl_meds[-1]} us p99 ${sl_p99s[-1]} us"
done
for v in "${sl_meds[@]}" "${sl_p99s[@]}"; do
  [[ "$v" =~ ^[0-9.]+$ ]] || die "bench_serial printed no number (got '$v'); run it by hand"
done
sl_med=$(median "${sl_meds[@]}") sl_p99=$(median "${sl_p99s[@]}")
u_ms=() m_ms=() p_ms=()
for ((i = 1; i <= runs * proc_count; i++)); do
  proc_ms "uiot pub via the daemon" "$uiot" pub -c "$work/run.ini" --via-daemon -t /bench/x -q 1 -m ''
  u_ms+=("$ms")
  proc_ms "uiot pub --direct" "$uiot" pub -c "$work/pub.ini" --direct -t /bench/x -q 1 -m ''
  m_ms+=("$ms")
  p_ms+=("$(quot "${u_ms[-1]}" "${m_ms[-1]}")")
done
via_daemon=$(median "${u_ms[@]}") via_direct=$(median "${m_ms[@]}") via_ratio=$(spread "${p_ms[@]}")
say "  uiot pub through the daemon median $via_daemon ms, --direct median $via_direct ms"

# ---- 5: reconnect after a broker restart ---------------------------------------
# A broker of its own (plain TCP, the same settings), so killing it does not
# disturb the other rows. It runs as `bash -c 'echo $$ > PIDFILE; exec
# mosquitto'` under timeout, so PIDFILE holds mosquitto's own pid: kill -9
# must hit the broker, not the timeout around it.
rc_conf="$work/rc-mosquitto.conf" rc_log="$work/rc-mosquitto.log" rc_pidfile="$work/rc.pid"
rc_port=0 rc_broker=""  # rc_broker: the timeout process around the current broker


# port_answers PORT: whether 127.0.0.1:PORT accepts a TCP connection now.
port_answers() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# rc_launch: starts the reconnect broker on $rc_port (in the background).
rc_launch() {
  # shellcheck disable=SC2016 # $$ and $1.. belong to the inner bash
  timeout -k 5 "$broker_limit" bash -c 'echo "$$" > "$1"; exec "$2" -c "$3"' \
    rc-broker "$rc_pidfile" "$mosquitto" "$rc_conf" >> "$rc_log" 2>&1 &
  rc_broker=$!
  pids+=("$rc_broker")
}

# rc_wait_up: polls the port every 10 ms (5 s at most); sets up_at to the
# time it first answered.
rc_wait_up() {
  local _
  for _ in $(seq 500); do
    if port_answers "$rc_port"; then
      up_at=$EPOCHREALTIME
      return 0
    fi
    kill -0 "$rc_broker" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

# The first free port after the TLS one.
rc_port=$((tls_port + 1))
for try in 1 2 3 4 5 6 7 8 9 10; do
  {
    echo "listener $rc_port 127.0.0.1"
    echo "allow_anonymous true"
    echo "set_tcp_nodelay true"
    echo "max_queued_messages 0"
    echo "persistence false"
    echo "log_dest file $rc_log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "log_type information"
    if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
  } > "$rc_conf"
  : > "$rc_log"
  if ! port_answers "$rc_port"; then
    rc_launch
    for _ in $(seq 50); do
      grep -q 'mosquitto version .* running' "$rc_log" && break 2
      kill -0 "$rc_broker" 2>/dev/null || break
      sleep 0.1
    done
    kill "$rc_broker" 2>/dev/null || true
    wait "$rc_broker" 2>/dev/null || true
    forget_pid "$rc_broker"
  fi
  say "port $rc_port unusable for the reconnect broker (try $try)"
  rc_port=$((rc_port + 1))
  [ "$try" -lt 10 ] || die "the reconnect broker did not start on 10 ports; its log: $(cat "$rc_log")"
done
rc_wait_up || die "the reconnect broker does not answer on port $rc_port: $(cat "$rc_log")"

# since_up T: ms from $up_at to the wall-clock time T (0 if T is earlier).
since_up() {
  awk -v a="$up_at" -v b="$1" 'BEGIN { d = (b - a) * 1000; printf "%.1f", (d > 0 ? d : 0) }'
}

# stamp: prefixes every line of stdin with the time it was read.
stamp() {
  local line
  while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done
}

# rc_row DOWN: connects `bench_pub reconnect` and `mosquitto_sub -d` to the
# reconnect broker, then $restarts times: kill -9 the broker, wait DOWN
# seconds, start it again on the same port, stamp when the port answers,
# wait until both clients are connected again, and give them 1.2 s (more
# than bench_pub's stable_after of 1 s) before the next restart. Sets
# rc_uiot and rc_mosq to the median reconnect times in ms, and rc_uiot_all,
# rc_mosq_all and rc_down_all to the single values.
rc_row() {
  local down=$1 i _ uiot_pid mosq_pid ok t v line
  local -a u=() m=() dn=()
  local uout="$work/rc-uiot.out" mout="$work/rc-mosq.out"
  : > "$uout"; : > "$mout"
  timeout -k 5 "$run_limit" "$bench_pub" "$rc_port" 0 "$restarts" 0 reconnect \
    > "$uout" 2> "$work/rc-uiot.err" &
  uiot_pid=$!
  pids+=("$uiot_pid")
  # mosquitto_sub's debug lines (stdout, line-buffered) with a time stamp each.
  timeout -k 5 "$run_limit" stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$rc_port" \
    -V mqttv311 -i bench-rc-mosq -t /bench/rc > >(stamp > "$mout") 2>&1 &
  mosq_pid=$!
  pids+=("$mosq_pid")
  # wait_both N: until bench_pub printed its Nth reconnect (0: connected)
  # and mosquitto_sub received its (N+1)th CONNACK; 10 s at most.
  wait_both() {
    local want=$1 u_line=connected
    [ "$want" -eq 0 ] || u_line="reconnected $want "
    for _ in $(seq 1000); do
      if grep -q "^$u_line" "$uout"; then
        [ "$(grep -c 'received CONNACK' "$mout")" -le "$want" ] || return 0
      else
        # (After its last reconnect bench_pub exits by itself: it may have
        # printed that line between the grep above and this check.)
        kill -0 "$uiot_pid" 2>/dev/null || grep -q "^$u_line" "$uout" \
          || die "bench_pub reconnect exited: $(cat "$uout" "$work/rc-uiot.err")"
      fi
      kill -0 "$mosq_pid" 2>/dev/null || die "mosquitto_sub exited during the reconnect test: $(cat "$mout")"
      sleep 0.01
    done
    die "no reconnect within 10 s after broker restart $want; bench_pub said: \
$(cat "$uout" "$work/rc-uiot.err"), mosquitto_sub said: $(tail -n 5 "$mout")"
  }
  wait_both 0
  sleep 1.2
  for ((i = 1; i <= restarts; i++)); do
    kill -9 "$(cat "$rc_pidfile")"
    wait "$rc_broker" 2>/dev/null || true
    forget_pid "$rc_broker"
    [ "$down" = 0 ] || sleep "$down"
    rc_launch
    rc_wait_up || die "the restarted broker does not answer on port $rc_port: $(tail -n 5 "$rc_log")"
    wait_both "$i"
    # Both from this script's stamp of the port answering (0 if a client won
    # the race against its 10 ms poll): mosquitto_sub's (i+1)th CONNACK
    # line, bench_pub's wall clock at Event::Connected. bench_pub's own poll
    # (after_up_ms) is logged as a cross-check.
    line=$(grep "^reconnected $i " "$uout")
    t=$(grep 'received CONNACK' "$mout" | sed -n "$((i + 1))p" | cut -d ' ' -f 1)
    m+=("$(since_up "$t")")
    u+=("$(since_up "$(field connected_epoch_s "$line")")")
    dn+=("$(field down_ms "$line")")
    say "  restart $i (down ${down}s): uiot ${u[-1]} ms (by its own poll" \
      "$(field after_up_ms "$line") ms), mosquitto_sub ${m[-1]} ms after the port" \
      "answered (uiot saw the broker away for ${dn[-1]} ms)"
    sleep 1.2
  done
  ok=0
  wait "$uiot_pid" || ok=$?
  forget_pid "$uiot_pid"
  [ "$ok" -eq 0 ] || die "bench_pub reconnect failed (exit $ok): $(cat "$work/rc-uiot.err")"
  kill "$mosq_pid" 2>/dev/null || true
  wait "$mosq_pid" 2>/dev/null || true
  forget_pid "$mosq_pid"
  for v in "${u[@]}" "${m[@]}"; do
    [[ "$v" =~ ^[0-9.]+$ ]] || die "the reconnect test got no number (got '$v'); see $uout and $mout"
  done
  rc_uiot=$(median "${u[@]}")
  rc_mosq=$(median "${m[@]}")
  rc_uiot_all="${u[*]}" rc_mosq_all="${m[*]}" rc_down_all="${dn[*]}"
}

say "reconnect after kill -9 of the broker on 127.0.0.1:$rc_port, $restarts restarts" \
  "each: started again at once, then after 1 s down"
rc_row 0
rc0_uiot=$rc_uiot rc0_mosq=$rc_mosq
say "  at once: uiot median $rc0_uiot ms ($rc_uiot_all), mosquitto_sub median $rc0_mosq ms" \
  "($rc_mosq_all); uiot saw the broker away for $rc_down_all ms"
rc1_uiot="" rc1_mosq=""
if ! $quick; then
  rc_row 1
  rc1_uiot=$rc_uiot rc1_mosq=$rc_mosq
  say "  down 1 s: uiot median $rc1_uiot ms ($rc_uiot_all), mosquitto_sub median $rc1_mosq ms" \
    "($rc_mosq_all); uiot saw the broker away for $rc_down_all ms"
fi
kill "$rc_broker" 2>/dev/null || true
wait "$rc_broker" 2>/dev/null || true
forget_pid "$rc_broker"

# ---- 6: idle subscribers ------------------------------------------------------
idle_uiot="" idle_mosq="" idle_run=""
if ! $quick; then
  say "idle: uiot sub and mosquitto_sub -k $keep_alive side by side for $idle_secs s"
  # Both stop by themselves after $limit s (-W), even if this script is killed.
  limit=$((idle_secs + 20))
  "$uiot" sub -c "$work/sub.ini" -t /bench/idle -W "$limit" \
    > "$work/idle-uiot.out" 2> "$work/idle-uiot.err" &
  sub_uiot=$!
  pids+=("$sub_uiot")
  mosquitto_sub -h 127.0.0.1 -p "$port" -V mqttv311 \
    -i bench-idle-mosq -k "$keep_alive" -t /bench/idle -W "$limit" \
    > "$work/idle-mosq.out" 2> "$work/idle-mosq.err" &
  sub_mosq=$!
  pids+=("$sub_mosq")
  started=$EPOCHREALTIME
  # Both are connected and subscribed once a probe message reaches both.
  ready=false
  for _ in $(seq 50); do
    sleep 0.2
    mosquitto_pub -h 127.0.0.1 -p "$port" -i bench-probe -t /bench/idle -m probe
    if grep -q probe "$work/idle-uiot.out" && grep -q probe "$work/idle-mosq.out"; then
      ready=true
      break
    fi
  done
  $ready || die "the idle subscribers did not receive a probe within 10 s; uiot said: \
$(cat "$work/idle-uiot.err") mosquitto_sub said: $(cat "$work/idle-mosq.err")"
  uiot_pid=$sub_uiot mosq_pid=$sub_mosq
  # First sample at t = 2 s after start (or right after the probe, if later).
  sleep "$(awk -v s="$started" -v n="$EPOCHREALTIME" 'BEGIN { d = 2 - (n - s); print (d > 0 ? d : 0) }')"
  ctx_snapshot "$uiot_pid" > "$work/u0"
  ctx_snapshot "$mosq_pid" > "$work/m0"
  ctx_snapshot "$run_pid" > "$work/r0"
  sleep "$idle_secs"
  kill -0 "$uiot_pid" 2>/dev/null || die "uiot sub exited during the idle test: $(cat "$work/idle-uiot.err")"
  kill -0 "$mosq_pid" 2>/dev/null || die "mosquitto_sub exited during the idle test: $(cat "$work/idle-mosq.err")"
  ctx_snapshot "$uiot_pid" > "$work/u1"
  ctx_snapshot "$mosq_pid" > "$work/m1"
  ctx_snapshot "$run_pid" > "$work/r1"
  idle_run=$(ctx_delta "$work/r0" "$work/r1")
  say "  uiot run (serial port quiet): $idle_run switches ($(ctx_detail "$work/r0" "$work/r1"))"
  idle_uiot=$(ctx_delta "$work/u0" "$work/u1")
  idle_mosq=$(ctx_delta "$work/m0" "$work/m1")
  say "  uiot sub: $idle_uiot switches (per thread, voluntary/nonvoluntary:" \
    "$(ctx_detail "$work/u0" "$work/u1"))"
  say "  mosquitto_sub: $idle_mosq switches ($(ctx_detail "$work/m0" "$work/m1"))"
fi

# ---- the table ----------------------------------------------------------------
# Formatting helpers (awk does the arithmetic).
num() { awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
# at_least VALUE TARGET / at_most VALUE TARGET: "yes", or "no" and by how much.
at_least() { awk -v v="$1" -v t="$2" 'BEGIN { if (v >= t) print "yes"; else printf "no, %.1f%% short\n", (1 - v / t) * 100 }'; }
at_most() { awk -v v="$1" -v t="$2" 'BEGIN { if (v <= t) print "yes"; else printf "no, %.2fx the target\n", v / t }'; }

q0_ratio=$(awk -v a="$q0_uiot_rate" -v b="$q0_mosq_rate" 'BEGIN { printf "%.4f", a / b }')
q0_count_s=$(num "$q0_count") q1_count_s=$(num "$q1_count") rtt_count_s=$(num "$rtt_count")

# Reference column: mosquitto_pub / mosquitto_sub run the same way, or for
# round trips the same exchange over a bare TcpStream (the broker + loopback
# floor, which no client can beat).
q0="QoS 0, $q0_count_s x $msg_size B, \`pub -l\`"
q1="QoS 1, $q1_count_s x $msg_size B, \`pub -l\`"
rt="Library QoS 1 round trip, $rtt_count_s blocking publishes"
echo "| Measurement | uiot | Reference | uiot / reference: median of pairs (min-max) | Target | Met (median) |"
echo "|---|---:|---:|---:|---|---|"
echo "| $q0 vs \`mosquitto_pub -l\` (broker without per-message logging): msgs/s | $(num "$q0_uiot_rate") | $(num "$q0_mosq_rate") | $q0_r_rate | >= 1.5x mosquitto_pub | $(at_least "$q0_r_rate_med" 1.5) |"
echo "| $q0: broker busy during the run (its CPU time / wall time; 1.00 = a whole core, the broker is the bottleneck) | $q0_uiot_busy | $q0_mosq_busy | - | - | - |"
echo "| $q0: client CPU (user+sys of the process) per msg | $q0_uiot_cpu us | $q0_mosq_cpu us | $q0_r_cpu | <= 0.67x mosquitto_pub | $(at_most "$q0_r_cpu_med" 0.67) |"
echo "| $q0: peak RSS (default TLS build; see the memory table for the plain build) | $(num "$q0_uiot_rss") KB | $(num "$q0_mosq_rss") KB | $q0_r_rss | <= 3 MB (3,072 KB) | $(at_most "$q0_uiot_rss" 3072) |"
echo "| $q1 vs \`mosquitto_pub -l\`, end to end: msgs/s | $(num "$q1_uiot_rate") | $(num "$q1_mosq_rate") | $q1_r_rate | >= 1.5x mosquitto_pub | $(at_least "$q1_r_rate_med" 1.5) |"
echo "| $q1: broker busy during the run (CPU time / wall time) | $q1_uiot_busy | $q1_mosq_busy | - | - | - |"
echo "| $q1: CPU (user+sys) per msg | $q1_uiot_cpu us | $q1_mosq_cpu us | $q1_r_cpu | - | - |"
echo "| $q1: peak RSS | $(num "$q1_uiot_rss") KB | $(num "$q1_mosq_rss") KB | $q1_r_rss | - | - |"
echo "| $q0, plain connection, plain build (\`--no-default-features\`): peak RSS (GNU time; PSS and private in the memory table) | $(num "${mem_peak[plain]}") KB | $(num "${mem_peak[mosq]}") KB | $(ratio "${mem_peak[plain]}" "${mem_peak[mosq]}") | <= 2 MB (2,048 KB) | $(at_most "${mem_peak[plain]}" 2048) |"
echo "| $q0, plain connection, TLS build: peak RSS (GNU time) | $(num "${mem_peak[tls]}") KB | $(num "${mem_peak[mosq]}") KB | $(ratio "${mem_peak[tls]}" "${mem_peak[mosq]}") | <= 3 MB (3,072 KB) | $(at_most "${mem_peak[tls]}" 3072) |"
echo "| Library QoS 0, $q0_count_s x $msg_size B: msgs/s | $(num "$lib0_rate") | - | - | - | - |"
echo "| Library QoS 0, $q0_count_s x $msg_size B: peak RSS | $(num "$lib0_rss") KB | - | - | <= 2 MB (2,048 KB) | $(at_most "$lib0_rss" 2048) |"
echo "| Library QoS 1, $q1_count_s x $msg_size B, end to end: msgs/s | $(num "$lib1_rate") | - | - | >= 25,000 | $(at_least "$lib1_rate" 25000) |"
echo "| Library QoS 1, $q1_count_s x $msg_size B: peak RSS | $(num "$lib1_rss") KB | - | - | - | - |"
# The QoS 1 PUBLISH of the queue rows on the wire (topic /bench/lib1): the
# reference for the bytes written to disk per message.
pub_rem=$((2 + ${#lib1_topic} + 2 + msg_size))
pub_len=$((1 + (pub_rem < 128 ? 1 : 2) + pub_rem))
qd="on-disk queue in ${work%/*} ($queue_fs)"
echo "| Library QoS 1, $q1_count_s x $msg_size B, end to end, $qd, fsync = interval_ms $fsync_ms: msgs/s (reference: no queue, as above) | $(num "$qi_rate") | $(num "$lib1_rate") | $(ratio "$qi_rate" "$lib1_rate") | - | - |"
echo "| Library QoS 1, $(num "$q1_always_count") x $msg_size B, end to end, $qd, fsync = always: msgs/s (reference: no queue, $q1_count_s msgs) | $(num "$qa_rate") | $(num "$lib1_rate") | $(ratio "$qa_rate" "$lib1_rate") | - | - |"
echo "| On-disk queue: bytes written to disk per QoS 1 message (\`queue_stats\`: bytes_written / stored), fsync interval_ms $fsync_ms / always (reference: the PUBLISH packet on the wire) | $qi_bpm / $qa_bpm B | $pub_len B | $(ratio "$qi_bpm" "$pub_len") | - | - |"
echo "| $rt: median (reference: bare TcpStream) | $rtt_med us | $raw_med us | $(ratio "$rtt_med" "$raw_med") | <= 50 us | $(at_most "$rtt_med" 50) |"
echo "| $rt: p99 (reference: bare TcpStream) | $rtt_p99 us | $raw_p99 us | $(ratio "$rtt_p99" "$raw_p99") | <= 150 us | $(at_most "$rtt_p99" 150) |"
plat="blocking, one after another, against uiot-sim on loopback, $(num "$plat_count") x $runs runs"
echo "| Shadow round trip: \`Shadow::report\` (update with the version, until the sim's reply), $plat: median (reference: library QoS 1 round trip) | $sr_med us | $rtt_med us | $(ratio "$sr_med" "$rtt_med") | - | - |"
echo "| Shadow round trip, $plat: p99 (reference: library QoS 1 round trip) | $sr_p99 us | $rtt_p99 us | $(ratio "$sr_p99" "$rtt_p99") | - | - |"
echo "| Property post round trip: \`Thing::post\` (until post_reply with its RequestID), $plat: median (reference: library QoS 1 round trip) | $pp_med us | $rtt_med us | $(ratio "$pp_med" "$rtt_med") | - | - |"
echo "| Property post round trip, $plat: p99 (reference: library QoS 1 round trip) | $pp_p99 us | $rtt_p99 us | $(ratio "$pp_p99" "$rtt_p99") | - | - |"
echo "| Property post, whole process (start, connect, post, reply, exit): \`uiot property post\` vs \`mosquitto_rr\` (the same request, MQTT 5 request/response), median of $((runs * proc_count)) | $pp_proc_uiot ms | $pp_proc_mosq ms | $pp_proc_ratio | - | - |"
echo "| OTA download, $ota_mb MB from uiot-sim's firmware server on loopback: \`ota::download\` (examples/bench_ota: to disk in 16 KiB chunks, MD5 on the way, fsync, Size and MD5 checked) vs \`curl -s -o\` (no check), median of $runs: MB/s | $ota_u_med | $ota_c_med | $ota_ratio | - | - |"
echo "| OTA download, $ota_mb MB: peak RSS | $(num "$ota_u_rss_med") KB | $(num "$ota_c_rss_med") KB | $(ratio "$ota_u_rss_med" "$ota_c_rss_med") | - | - |"
echo "| Serial line -> cloud through \`uiot run\` (a socat pty pair, line framing, QoS 0, until a subscriber has it), $(num "$plat_count") lines x $runs runs: median / p99 | $sl_med / $sl_p99 us | - | - | - | - |"
echo "| One QoS 1 message per process, \`uiot pub --via-daemon\` (the daemon's socket and login) vs \`uiot pub --direct\` (a connection of its own), median of $((runs * proc_count)) | $via_daemon ms | $via_direct ms | $via_ratio | - | - |"
t0s="TLS: QoS 0, $q0_count_s x $msg_size B, \`pub -l\`"
t1s="TLS: QoS 1, $q1_count_s x $msg_size B, \`pub -l\`"
echo "| $t0s vs \`mosquitto_pub -l --cafile\`: msgs/s | $(num "$t0_uiot_rate") | $(num "$t0_mosq_rate") | $t0_r_rate | - | - |"
echo "| $t0s: CPU (user+sys) per msg | $t0_uiot_cpu us | $t0_mosq_cpu us | $t0_r_cpu | - | - |"
echo "| $t0s: peak RSS | $(num "$t0_uiot_rss") KB | $(num "$t0_mosq_rss") KB | $t0_r_rss | - | - |"
echo "| $t1s vs \`mosquitto_pub -l --cafile\`, end to end: msgs/s | $(num "$t1_uiot_rate") | $(num "$t1_mosq_rate") | $t1_r_rate | - | - |"
echo "| $t1s: CPU (user+sys) per msg | $t1_uiot_cpu us | $t1_mosq_cpu us | $t1_r_cpu | - | - |"
echo "| $t1s: peak RSS | $(num "$t1_uiot_rss") KB | $(num "$t1_mosq_rss") KB | $t1_r_rss | - | - |"
# ms_pair MEDIAN_US P99_US: "M / P ms".
ms_pair() { awk -v m="$1" -v p="$2" 'BEGIN { printf "%.2f / %.2f ms", m / 1000, p / 1000 }'; }
conn="$(num "$connect_count") connects x $runs runs: median / p99"
echo "| Library connect, plain TCP: \`Client::connect\` until CONNACK, $conn | $(ms_pair "$conn_plain_med" "$conn_plain_p99") | - | - | - | - |"
echo "| Library connect, TLS: \`Client::connect\` (TCP, TLS handshake, CONNECT) until CONNACK, $conn; every connect is a new Client, so each builds its TLS context, which a reconnect does not (reference: the same with SSL_CERT_FILE = the bench CA: the ratio is what a library user pays for OpenSSL loading the default CA bundle once per Client; the uiot binary sets SSL_CERT_FILE=/dev/null) | $(ms_pair "$conn_tls_med" "$conn_tls_p99") | $(ms_pair "$conn_slim_med" "$conn_slim_p99") | $(ratio "$conn_tls_med" "$conn_slim_med") | - | - |"
one="One empty message, whole process (start, connect, publish, disconnect, exit), median of $((runs * proc_count))"
echo "| $one, plain: \`uiot pub -m ''\` vs \`mosquitto_pub -n\` | ${one_uiot[plain]} ms | ${one_mosq[plain]} ms | ${one_ratio[plain]} | - | - |"
echo "| $one, TLS: \`uiot pub -m ''\` vs \`mosquitto_pub --cafile -n\` | ${one_uiot[tls]} ms | ${one_mosq[tls]} ms | ${one_ratio[tls]} | <= 1.5x mosquitto_pub --cafile | $(at_most "${one_ratio_med[tls]}" 1.5) |"
rc="Reconnect after \`kill -9\` of the broker, started again on the same port"
rc_how="port answering until connected again, median of $restarts (library: reconnect min 100 ms, max 1 s; reference: \`mosquitto_sub\`, libmosquitto's fixed 1 s retry)"
echo "| $rc at once: $rc_how | $rc0_uiot ms | $rc0_mosq ms | $(ratio "$rc0_uiot" "$rc0_mosq") | - | - |"
if $quick; then
  echo "| $rc after 1 s down | skipped (--quick) | skipped | - | - | - |"
else
  echo "| $rc after 1 s down: $rc_how | $rc1_uiot ms | $rc1_mosq ms | $(ratio "$rc1_uiot" "$rc1_mosq") | - | - |"
fi
idle="Idle \`uiot sub\`, $idle_secs s, keep-alive $keep_alive: context switches, all threads (reference: \`mosquitto_sub -k $keep_alive\`)"
if $quick; then
  echo "| $idle | skipped (--quick) | skipped | - | <= 6 | - |"
else
  echo "| $idle | $idle_uiot | $idle_mosq | - | <= 6 | $(at_most "$idle_uiot" 6) |"
fi
idle_d="Idle \`uiot run\` (a serial port that stays quiet, the socket open, no hooks), the same $idle_secs s: context switches, all threads (reference: the idle \`uiot sub\` above)"
if $quick; then
  echo "| $idle_d | skipped (--quick) | skipped | - | - | - |"
else
  echo "| $idle_d | $idle_run | $idle_uiot | - | - | - |"
fi
# The second table: where the memory of the QoS 0 publishers goes.
# mem_cell BUILD GROUP: "RSS / PSS / private" KB of GROUP.
mem_cell() {
  local f="$work/mem-$1.txt"
  printf '%s / %s / %s' "$(num "$(mem_field "$f" "$2" 2)")" "$(num "$(mem_field "$f" "$2" 3)")" \
    "$(num "$(mem_field "$f" "$2" 4)")"
}
echo
echo "Memory of \`pub -l\` with $q0_count_s x $msg_size B QoS 0 on a plain connection, read from /proc 1 s after the last line (everything published, input still open), last run; KB as RSS / PSS / private:"
echo
echo "| Mapping | uiot, plain build | uiot, TLS build | mosquitto_pub |"
echo "|---|---:|---:|---:|"
echo "| peak RSS so far (VmHWM) | $(num "$(mem_field "$work/mem-plain.txt" hwm 2)") | $(num "$(mem_field "$work/mem-tls.txt" hwm 2)") | $(num "$(mem_field "$work/mem-mosq.txt" hwm 2)") |"
echo "| threads | $(mem_field "$work/mem-plain.txt" hwm 3) | $(mem_field "$work/mem-tls.txt" hwm 3) | $(mem_field "$work/mem-mosq.txt" hwm 3) |"
echo "| all mappings | $(mem_cell plain total) | $(mem_cell tls total) | $(mem_cell mosq total) |"
for g in "binary (text, data)" "libc" "libcrypto + libssl" \
  "other shared libraries (ld.so, libgcc_s, libmosquitto, ...)" "[heap] (glibc main arena)" \
  "thread stacks" "per-thread malloc arenas" \
  "other anonymous (large malloc blocks: mmap-ed Vec/VecDeque buffers)" \
  "rest ([stack], vdso, vvar, ...)"; do
  echo "| $g | $(mem_cell plain "$g") | $(mem_cell tls "$g") | $(mem_cell mosq "$g") |"
done
say "done: $runs run(s) per throughput row, medians shown; broker mosquitto $("$mosquitto" -h 2>/dev/null | head -n 1 | awk '{ print $3 }'); load average $(cut -d " " -f 1-3 /proc/loadavg)"
