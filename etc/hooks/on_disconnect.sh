#!/bin/sh
# Example hook run by `uiot run` each time the broker connection is lost or
# closed (the daemon then reconnects by itself, as [reconnect] says).
# Installed as /etc/uiot/hooks/on_disconnect.sh; runs when uiot.ini says
#   [hooks]
#   on_disconnect = /etc/uiot/hooks/on_disconnect.sh
#
# Environment:
#   UIOT_EVENT=disconnect
#   UIOT_PRODUCT_SN, UIOT_DEVICE_SN   this device
# Stdin: nothing (/dev/null).
# Stdout: ignored. Exit status: logged by the daemon if not 0; it changes
#   nothing (reconnecting goes on).
#
# This example writes one line to syslog (journal on Raspberry Pi OS,
# `logread` on OpenWrt; logger is in both base systems).

logger -t uiot-hook "disconnected from UIoT Core (${UIOT_PRODUCT_SN:-?}/${UIOT_DEVICE_SN:-?})"
