#!/bin/sh
# OTA apply script for `uiot run` on Raspberry Pi OS / Debian: installs a
# module shipped as a .deb package with dpkg. Installed as
# /etc/uiot/ota/debian-dpkg.sh; runs when uiot.ini says, for a module
# `myapp` whose package is `myapp`:
#   [ota.myapp]
#   apply = /etc/uiot/ota/debian-dpkg.sh
#   version_command = dpkg-query -W -f='${Version}' myapp
# The firmware's version in the UIoT Core console must be the package's
# Version (dpkg-query prints it, with its epoch and revision if it has
# them): this script refuses a .deb whose Version is not the target, since
# the daemon would never see the target version run.
#
# Environment (set by the daemon):
#   UIOT_EVENT=ota
#   UIOT_OTA_FILE      the verified .deb (Size and MD5 checked)
#   UIOT_OTA_MODULE    the module; UIOT_OTA_VERSION the target version
#   UIOT_OTA_FROM      the running version
#   UIOT_OTA_MD5, UIOT_OTA_SIZE, UIOT_PRODUCT_SN, UIOT_DEVICE_SN
# Settings (environment, or put them before the path in `apply =`):
#   UIOT_DPKG_PACKAGE        if set, the package the .deb must be (e.g.
#                            UIOT_DPKG_PACKAGE=myapp); default: any
#   UIOT_DPKG_CHECK_VERSION  1 (default): the .deb's Version must equal
#                            UIOT_OTA_VERSION; 0: not checked
#   UIOT_DPKG_ARGS           dpkg options, default "--force-confdef
#                            --force-confold" (no prompt about changed
#                            conffiles: the administrator's versions stay)
#   UIOT_DPKG_SYSTEMD_RUN    1 (default): under systemd, dpkg runs in its
#                            own transient unit (below); 0: directly
#   UIOT_DPKG_PRIVATE_TMP    1 (default, as the packaged unit's
#                            PrivateTmp=yes): an image under /tmp or
#                            /var/tmp is refused with systemd-run (dpkg's
#                            unit would not see it); 0 if your drop-in
#                            turned PrivateTmp off
# Stdin: nothing. Stdout, stderr: the daemon's log.
# Exit status: 0 = installed (the daemon then reads the version), non-zero
#   = not installed (reported as ErrCode -5): not a .deb, the wrong package
#   or version, or dpkg's own exit status when dpkg -i fails.
#
# dpkg -i does not fetch dependencies: ship self-contained packages, or
# install their dependencies beforehand.
# Under systemd (the packaged uiot.service), dpkg runs in a transient unit
# of its own (systemd-run --wait --pipe --collect, unit uiot-ota-apply),
# outside the service's sandbox and cgroup: it can write /usr with no
# drop-in, and a package whose postinst restarts uiot.service (the uiot
# package itself) does not kill dpkg half way. This script waits for it
# and returns dpkg's exit status. UIOT_DPKG_SYSTEMD_RUN=0 runs dpkg
# directly (then give the service ProtectSystem=no, ReadWritePaths=/var/lib/dpkg
# /var/cache and RestrictSUIDSGID=no in a drop-in: sudo systemctl edit uiot).
# Not under systemd (no INVOCATION_ID), dpkg runs directly.
# Upgrading uiot itself: the restart stops the daemon while this script
# waits; the new daemon reads the version at start and reports the result.

set -eu

UIOT_DPKG_PACKAGE=${UIOT_DPKG_PACKAGE-}
UIOT_DPKG_CHECK_VERSION=${UIOT_DPKG_CHECK_VERSION:-1}
UIOT_DPKG_ARGS=${UIOT_DPKG_ARGS---force-confdef --force-confold}
UIOT_DPKG_SYSTEMD_RUN=${UIOT_DPKG_SYSTEMD_RUN:-1}
UIOT_DPKG_PRIVATE_TMP=${UIOT_DPKG_PRIVATE_TMP:-1}

die() {
	echo "debian-dpkg: $*" >&2
	exit 1
}

file=${UIOT_OTA_FILE:-}
[ -n "$file" ] || die "UIOT_OTA_FILE is not set: this script is run by uiot run ([ota] apply)"
[ -f "$file" ] || die "$file: no such package file"

if ! info=$(dpkg-deb --info "$file" 2>&1); then
	die "$file is not a Debian package (dpkg-deb --info: $info): nothing installed"
fi
package=$(dpkg-deb --field "$file" Package)
version=$(dpkg-deb --field "$file" Version)
if [ -n "$UIOT_DPKG_PACKAGE" ] && [ "$package" != "$UIOT_DPKG_PACKAGE" ]; then
	die "$file holds package '$package', not '$UIOT_DPKG_PACKAGE' (UIOT_DPKG_PACKAGE): nothing installed"
fi
target=${UIOT_OTA_VERSION:-}
if [ "$UIOT_DPKG_CHECK_VERSION" != 0 ] && [ "$version" != "$target" ]; then
	die "$file is $package version '$version' but the upgrade's target is '$target': \
dpkg-query would never report the target; build the .deb with Version: $target \
(or set UIOT_DPKG_CHECK_VERSION=0): nothing installed"
fi

echo "debian-dpkg: installing $package ${UIOT_OTA_FROM:-?} -> $version from $file" >&2
DEBIAN_FRONTEND=noninteractive
export DEBIAN_FRONTEND
# Under systemd: a transient unit, so that dpkg is neither sandboxed nor
# killed with uiot.service. --pipe hands it our stdout and stderr (the
# daemon's log) and the exit status back.
run=""
if [ "$UIOT_DPKG_SYSTEMD_RUN" != 0 ] && [ -n "${INVOCATION_ID:-}" ]; then
	command -v systemd-run >/dev/null 2>&1 ||
		die "INVOCATION_ID is set (systemd) but systemd-run is not found: set UIOT_DPKG_SYSTEMD_RUN=0 and loosen the unit's sandbox (see this script's header): nothing installed"
	case "$UIOT_DPKG_PRIVATE_TMP:$file" in
	1:/tmp/* | 1:/var/tmp/*)
		die "$file is in the service's private /tmp, which dpkg's own unit does not see: set [ota] dir outside /tmp (default /var/lib/uiot/ota): nothing installed"
		;;
	esac
	run="systemd-run --wait --pipe --collect --quiet --unit=uiot-ota-apply --setenv=DEBIAN_FRONTEND=noninteractive --"
fi
# The options are words on purpose (unquoted).
# shellcheck disable=SC2086
if $run dpkg $UIOT_DPKG_ARGS -i "$file"; then
	exit 0
else
	status=$?
fi
echo "debian-dpkg: dpkg -i $file failed (exit $status); see dpkg's messages above" >&2
exit "$status"
