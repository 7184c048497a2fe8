#!/bin/sh
# Example hook run by `uiot run` for each message on a topic the daemon
# subscribes to that no more specific hook (command, property set, shadow)
# handles.
# Installed as /etc/uiot/hooks/on_message.sh; runs when uiot.ini says
#   [hooks]
#   on_message = /etc/uiot/hooks/on_message.sh
#
# Environment:
#   UIOT_EVENT=message
#   UIOT_TOPIC        the topic, e.g. /PRODUCT_SN/DEVICE_SN/download
#   UIOT_QOS          0 or 1
#   UIOT_PRODUCT_SN, UIOT_DEVICE_SN   this device
# Stdin: the payload, as received (any bytes, not necessarily JSON).
# Stdout: ignored. Exit status: logged by the daemon if not 0; the message
#   counts as delivered either way.
#
# This example keeps the last payload in $UIOT_HOOK_STATE_DIR/last_message
# (default /run/uiot; the daemon does not set the variable) and logs one
# line to syslog (journal on Raspberry Pi OS, `logread` on OpenWrt). For
# JSON payloads: jsonfilter on OpenWrt, jq on Raspberry Pi OS.

state_dir=${UIOT_HOOK_STATE_DIR:-/run/uiot}

tmp="$state_dir/.last_message.$$"
cat > "$tmp" && mv -f "$tmp" "$state_dir/last_message" || { rm -f "$tmp"; exit 1; }
bytes=$(wc -c < "$state_dir/last_message" | tr -d ' ')
logger -t uiot-hook "message on ${UIOT_TOPIC:-?} (QoS ${UIOT_QOS:-?}, $bytes bytes)"
