#!/bin/sh
# Example hook run by `uiot run` each time it has connected to the broker.
# Installed as /etc/uiot/hooks/on_connect.sh; runs when uiot.ini says
#   [hooks]
#   on_connect = /etc/uiot/hooks/on_connect.sh
#
# Environment:
#   UIOT_EVENT=connect
#   UIOT_PRODUCT_SN, UIOT_DEVICE_SN   this device
# Stdin: nothing (/dev/null).
# Stdout: ignored. Exit status: logged by the daemon if not 0; it changes
#   nothing (the connection stays up).
#
# This example writes one line to syslog (journal on Raspberry Pi OS,
# `logread` on OpenWrt; logger is in both base systems).

logger -t uiot-hook "connected to UIoT Core as ${UIOT_PRODUCT_SN:-?}/${UIOT_DEVICE_SN:-?}"
