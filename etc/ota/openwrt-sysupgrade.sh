#!/bin/sh
# OTA apply script for `uiot run` on OpenWrt: flashes a verified firmware
# image with sysupgrade. Installed as /etc/uiot/ota/openwrt-sysupgrade.sh;
# runs when uiot.ini says
#   [ota]
#   apply = /etc/uiot/ota/openwrt-sysupgrade.sh
#   version_command = . /etc/openwrt_release; echo "$DISTRIB_REVISION"
# The firmware's version in the UIoT Core console must be what the new
# image's version_command prints (DISTRIB_REVISION, e.g. r23630-842932a63d,
# or a version file the image carries: version_file = /etc/firmware.version,
# written by the image build, never under a kept path such as /etc/uiot/
# or /etc/config/, or the old file would be restored over the new one).
# The daemon reports success only once that version runs.
#
# Environment (set by the daemon):
#   UIOT_EVENT=ota
#   UIOT_OTA_FILE      the verified image (Size and MD5 checked)
#   UIOT_OTA_MODULE    the module (default)
#   UIOT_OTA_VERSION   the target version; UIOT_OTA_FROM the running one
#   UIOT_OTA_MD5, UIOT_OTA_SIZE, UIOT_PRODUCT_SN, UIOT_DEVICE_SN
# Settings (environment, or put them before the path in `apply =`):
#   UIOT_SYSUPGRADE_ARGS  extra sysupgrade options; default none, which
#       KEEPS the settings (/etc/config, /etc/sysupgrade.conf's files,
#       changed conffiles): the device's identity and network survive.
#       `-n` discards them: the image must then carry a complete
#       /etc/uiot/ (uiot.ini with the device secret) and network config, or
#       the device never comes back online to report the new version.
#   UIOT_SYSUPGRADE_CONF  default /etc/sysupgrade.conf; UIOT_SYSUPGRADE_KEEP,
#       default /etc/uiot/, is added to it (once) when settings are kept,
#       so that device.secret (dynamic registration) and http.token, which
#       are no conffiles, survive too.
# Stdin: nothing. Stdout, stderr: the daemon's log.
# Exit status: 0 = flashing started (normally it never returns: sysupgrade
#   stops every process, uiot included, flashes and reboots; the daemon
#   reports the result after the reboot), non-zero = nothing flashed
#   (reported as ErrCode -5): `sysupgrade -T` refused the image, or
#   sysupgrade failed.
#
# The new image must contain uiot (built into the image, or installed again
# by a uci-defaults script): packages installed with opkg are not kept by
# sysupgrade. Test the image first: sysupgrade -T FILE.

set -eu

UIOT_SYSUPGRADE_ARGS=${UIOT_SYSUPGRADE_ARGS-}
UIOT_SYSUPGRADE_CONF=${UIOT_SYSUPGRADE_CONF:-/etc/sysupgrade.conf}
UIOT_SYSUPGRADE_KEEP=${UIOT_SYSUPGRADE_KEEP:-/etc/uiot/}

die() {
	echo "openwrt-sysupgrade: $*" >&2
	exit 1
}

file=${UIOT_OTA_FILE:-}
[ -n "$file" ] || die "UIOT_OTA_FILE is not set: this script is run by uiot run ([ota] apply)"
[ -f "$file" ] || die "$file: no such image file"
command -v sysupgrade >/dev/null 2>&1 || die "sysupgrade not found: this script is for OpenWrt"

# Test first: an image for another board (or a corrupt one) is refused
# here, before anything is stopped or written. The options are words on
# purpose (unquoted).
# shellcheck disable=SC2086
if ! sysupgrade -T $UIOT_SYSUPGRADE_ARGS "$file"; then
	die "$file is not a valid image for this board (sysupgrade -T refused it, see above): nothing flashed"
fi

case " $UIOT_SYSUPGRADE_ARGS " in
*" -n "*)
	echo "openwrt-sysupgrade: -n: settings are discarded; the image must carry /etc/uiot/ itself" >&2
	;;
*)
	if ! grep -qxF "$UIOT_SYSUPGRADE_KEEP" "$UIOT_SYSUPGRADE_CONF" 2>/dev/null; then
		echo "$UIOT_SYSUPGRADE_KEEP" >>"$UIOT_SYSUPGRADE_CONF" ||
			die "cannot add $UIOT_SYSUPGRADE_KEEP to $UIOT_SYSUPGRADE_CONF: nothing flashed"
	fi
	;;
esac

echo "openwrt-sysupgrade: flashing ${UIOT_OTA_MODULE:-default} ${UIOT_OTA_FROM:-?} -> ${UIOT_OTA_VERSION:-?} from $file; the board reboots" >&2
# shellcheck disable=SC2086
exec sysupgrade $UIOT_SYSUPGRADE_ARGS "$file"
