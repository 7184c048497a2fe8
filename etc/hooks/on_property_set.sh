#!/bin/sh
# Example hook for property set requests (thing model) of `uiot run`.
# Installed as /etc/uiot/hooks/on_property_set.sh; runs when uiot.ini says
#   [hooks]
#   on_property_set = /etc/uiot/hooks/on_property_set.sh
# once per request of the platform to set properties of the device.
#
# Environment:
#   UIOT_EVENT=property_set
#   UIOT_REQUEST_ID   the platform's request id (the daemon puts it in the
#                     reply; shown here for logging only)
#   UIOT_TOPIC, UIOT_QOS   the topic and QoS the request came on
#   UIOT_PRODUCT_SN, UIOT_DEVICE_SN   this device
# Stdin: the properties to set, one JSON object, e.g. {"led":1,"target_temp":22}.
# Stdout: one JSON object: on exit 0 the properties as now set (the daemon
#   replies success); on any other exit status {"reason":"..."} (the daemon
#   replies failure with that reason and nothing counts as set).
# Stderr goes to the daemon's log.
#
# JSON without jq: scalar values are picked out with sed (flat objects
# only). For real parsing use jsonfilter on OpenWrt (in the base system:
# jsonfilter -s "$in" -e '@.led') or jq on Raspberry Pi OS (apt install jq).
#
# Example only: UIOT_HOOK_STATE_DIR (default /run/uiot, writable under the
# systemd sandbox) is where the values are kept, one file per property. The
# daemon does not set it.

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
# is_int VALUE: VALUE is a decimal integer, optionally negative.
is_int() {
	case "$1" in
	'' | - | *[!0-9-]* | ?*-*) return 1 ;;
	esac
	return 0
}

in=$(cat)
echo "on_property_set: request ${UIOT_REQUEST_ID:-?} $in" >&2

# Known properties: check all first, so a bad value sets nothing.
led=$(json_get led)
temp=$(json_get target_temp)
[ -n "$led$temp" ] || fail "no known property (led, target_temp)"
case "$led" in
'' | 0 | 1) ;;
*) fail "led must be 0 or 1" ;;
esac
if [ -n "$temp" ]; then
	is_int "$temp" || fail "target_temp must be an integer"
	[ "$temp" -ge 5 ] && [ "$temp" -le 35 ] || fail "target_temp must be 5..35"
fi

# Apply, and print what is now set.
out=""
if [ -n "$led" ]; then
	printf '%s\n' "$led" > "$state_dir/led" || fail "cannot write $state_dir/led"
	out="\"led\":$led"
fi
if [ -n "$temp" ]; then
	printf '%s\n' "$temp" > "$state_dir/target_temp" || fail "cannot write $state_dir/target_temp"
	out="${out:+$out,}\"target_temp\":$temp"
fi
printf '{%s}\n' "$out"
exit 0
