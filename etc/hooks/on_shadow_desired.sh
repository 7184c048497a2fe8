#!/bin/sh
# Example hook for device shadow changes of `uiot run`.
# Installed as /etc/uiot/hooks/on_shadow_desired.sh; runs when uiot.ini says
#   [hooks]
#   on_shadow_desired = /etc/uiot/hooks/on_shadow_desired.sh
# whenever the shadow's desired state holds something for the device (at
# connect and when the platform changes it).
#
# Environment:
#   UIOT_EVENT=shadow_desired
#   UIOT_TOPIC, UIOT_QOS   the topic and QoS the shadow document came on
#   UIOT_PRODUCT_SN, UIOT_DEVICE_SN   this device
# Stdin: the desired state, one JSON object, e.g. {"interval":30}.
# Stdout: one JSON object: on exit 0 the state now applied, which the
#   daemon reports as the shadow's reported state ({} reports nothing); on
#   any other exit status {"reason":"..."}: nothing is reported, the
#   daemon logs the reason and the desired state stays pending.
# Stderr goes to the daemon's log.
#
# JSON without jq: scalar values are picked out with sed (flat objects
# only). For real parsing use jsonfilter on OpenWrt (in the base system:
# jsonfilter -s "$in" -e '@.interval') or jq on Raspberry Pi OS (apt install jq).
#
# Example only: UIOT_HOOK_STATE_DIR (default /run/uiot) is where the
# applied value is written, for other programs to read:
# /run/uiot/interval. /run/uiot rather than /tmp because the systemd unit
# gives the daemon a private /tmp that nobody else sees. The daemon does
# not set this variable.

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
echo "on_shadow_desired: $in" >&2

# The one setting this example knows: a reporting interval in seconds.
interval=$(json_get interval)
if [ -z "$interval" ]; then
	# Nothing for us: report nothing.
	printf '{}\n'
	exit 0
fi
case "$interval" in
*[!0-9]*) fail "interval must be a whole number of seconds" ;;
esac
[ "$interval" -ge 1 ] && [ "$interval" -le 86400 ] || fail "interval must be 1..86400"

# Write it atomically (a temp file, then rename) so a reader never sees half.
tmp="$state_dir/.interval.$$"
printf '%s\n' "$interval" > "$tmp" && mv -f "$tmp" "$state_dir/interval" \
	|| { rm -f "$tmp"; fail "cannot write $state_dir/interval"; }
printf '{"interval":%s}\n' "$interval"
exit 0
