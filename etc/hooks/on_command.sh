#!/bin/sh
# Example hook for platform commands (thing-model services) of `uiot run`.
# Installed as /etc/uiot/hooks/on_command.sh; runs when uiot.ini says
#   [hooks]
#   on_command = /etc/uiot/hooks/on_command.sh
# once per command the platform sends to the device.
#
# Environment:
#   UIOT_EVENT=command
#   UIOT_IDENTIFIER   the command's identifier from the thing model (here
#                     "set_led" or "reboot")
#   UIOT_REQUEST_ID   the platform's request id (the daemon puts it in the
#                     reply; shown here for logging only)
#   UIOT_TOPIC, UIOT_QOS   the topic and QoS the command came on
#   UIOT_PRODUCT_SN, UIOT_DEVICE_SN   this device
# Stdin: the command's input parameters, one JSON object, e.g. {"state":1}.
# Stdout: one JSON object: on exit 0 the command's output parameters (the
#   daemon replies success with them); on any other exit status
#   {"reason":"..."} (the daemon replies failure with that reason).
# Stderr goes to the daemon's log.
#
# JSON without jq: these examples pick scalar values out with sed, which is
# enough for flat objects like the ones above. For real parsing use
# jsonfilter on OpenWrt (in the base system: jsonfilter -s "$in" -e '@.state')
# or jq on Raspberry Pi OS (apt install jq: jq -r .state).
#
# Example only: UIOT_HOOK_STATE_DIR (default /run/uiot, writable under the
# systemd sandbox) is where set_led records the state; UIOT_HOOK_DRY_RUN=1
# makes reboot only say what it would do. Neither is set by the daemon.

state_dir=${UIOT_HOOK_STATE_DIR:-/run/uiot}

# json_get KEY: the scalar value of "KEY" in $in (quotes removed), or nothing.
json_get() {
	printf '%s' "$in" | tr '\n' ' ' | sed -n \
		-e "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" -e t \
		-e "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([^,}[:space:]]*\).*/\1/p"
}
# fail REASON: print {"reason":REASON} (REASON must need no JSON escaping) and exit 1.
fail() {
	printf '{"reason":"%s"}\n' "$1"
	exit 1
}

in=$(cat)
id=$UIOT_IDENTIFIER
echo "on_command: $id (request ${UIOT_REQUEST_ID:-?}) input $in" >&2

case "$id" in
set_led)
	# Input {"state":0|1}; a real board would write
	# /sys/class/leds/ACT/brightness (Pi) instead, which under systemd needs
	# ProtectKernelTunables=no in a drop-in (/sys is read-only otherwise).
	state=$(json_get state)
	case "$state" in
	0 | 1 | true | false) ;;
	*) fail "set_led: state must be 0 or 1" ;;
	esac
	[ "$state" = true ] && state=1
	[ "$state" = false ] && state=0
	printf '%s\n' "$state" > "$state_dir/led" || fail "set_led: cannot write $state_dir/led"
	printf '{"state":%s}\n' "$state"
	;;
reboot)
	# Reply first, reboot a few seconds later, detached from the daemon's
	# pipes so the reply is sent before the system goes down.
	delay=5
	printf '{"rebooting":true,"delay":%s}\n' "$delay"
	if [ "${UIOT_HOOK_DRY_RUN:-}" = 1 ]; then
		echo "on_command: dry run: would reboot in $delay s" >&2
	else
		(sleep "$delay"; reboot) </dev/null >/dev/null 2>&1 &
	fi
	;;
*)
	# Unknown identifiers are refused; only [A-Za-z0-9_-] is echoed back so
	# the reason never needs JSON escaping.
	case "$id" in
	'' | *[!A-Za-z0-9_-]*) fail "unknown command" ;;
	*) fail "unknown command: $id" ;;
	esac
	;;
esac
exit 0
