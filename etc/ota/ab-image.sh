#!/bin/sh
# OTA apply script for `uiot run`: installs an image into the inactive one
# of two slots, verifies it, switches to it. Installed as
# /etc/uiot/ota/ab-image.sh. Two modes (UIOT_AB_MODE):
#
# block (the default): an OS or root file system image written raw to the
#   inactive partition of UIOT_AB_SLOTS, read back and compared by MD5, then
#   UIOT_AB_SWITCH makes the boot loader boot it and UIOT_AB_REBOOT reboots.
#     [ota]
#     apply = UIOT_AB_SWITCH='fw_setenv boot_slot "$UIOT_AB_NEXT_NUMBER"' /etc/uiot/ota/ab-image.sh
#     version_file = /etc/firmware.version
#   (the version file is part of each image; the console's firmware version
#   must be what it holds).
#
# file: an application module (not the OS) kept in UIOT_AB_DIR as two
#   directories a/ and b/ and a symlink current -> a or b. The image (a tar,
#   gzipped or not, is unpacked; anything else is copied as
#   UIOT_AB_FILE_NAME, mode 0755) goes into the directory current does not
#   point to, with a VERSION file holding UIOT_OTA_VERSION; then current is
#   switched to it (atomically) and UIOT_AB_RESTART runs (if it fails,
#   current is switched back and the script fails).
#     [ota.myapp]
#     apply = UIOT_AB_MODE=file UIOT_AB_DIR=/opt/myapp UIOT_AB_RESTART='systemctl restart myapp' /etc/uiot/ota/ab-image.sh
#     version_file = /opt/myapp/current/VERSION
#
# Environment (set by the daemon):
#   UIOT_EVENT=ota
#   UIOT_OTA_FILE      the verified image; UIOT_OTA_MD5 its MD5 (checked
#                      again here), UIOT_OTA_SIZE its size in bytes
#   UIOT_OTA_MODULE    the module; UIOT_OTA_VERSION the target version
#   UIOT_OTA_FROM      the running version
#   UIOT_PRODUCT_SN, UIOT_DEVICE_SN
# Settings (the defaults below; set them in the environment, e.g. before
# the path in `apply =`, or edit them here):
#   UIOT_AB_MODE         block or file
#   UIOT_AB_SLOTS        block: the two partitions, e.g.
#                        "/dev/mmcblk0p2 /dev/mmcblk0p3"
#   UIOT_AB_ACTIVE_FILE  block: marker naming the slot last switched to
#                        (used when root= in UIOT_AB_CMDLINE, default
#                        /proc/cmdline, names neither slot; neither: the
#                        first slot is taken as the active one)
#   UIOT_AB_SWITCH       block: the command (sh -c) that makes the boot
#                        loader boot UIOT_AB_NEXT_SLOT (the partition) /
#                        UIOT_AB_NEXT_NUMBER (1 or 2) next. A PLACEHOLDER:
#                        unset, the script refuses to write anything. E.g.
#                        U-Boot: fw_setenv boot_slot "$UIOT_AB_NEXT_NUMBER";
#                        Raspberry Pi: rewrite autoboot.txt's boot_partition.
#   UIOT_AB_REBOOT       block: the command that reboots, default reboot
#                        (its failure is logged; the new slot boots at the
#                        next reboot)
#   UIOT_AB_DIR          file: the module's directory (required)
#   UIOT_AB_FILE_NAME    file: the name of a copied (non-tar) image,
#                        default image
#   UIOT_AB_RESTART      file: the command restarting the application,
#                        default none
# Stdin: nothing. Stdout, stderr: the daemon's log.
# Exit status: 0 = installed and switched (block: the reboot is under way;
#   the daemon reports the version after it), non-zero = failed (reported
#   as ErrCode -5): a wrong MD5 or size, the active slot as the target,
#   an unset UIOT_AB_SWITCH, a write or read-back failure.
#
# Under the packaged systemd unit, block mode needs the partitions in a
# drop-in (sudo systemctl edit uiot): DeviceAllow=/dev/mmcblk0p2 rw and
# DeviceAllow=/dev/mmcblk0p3 rw; file mode needs ReadWritePaths=UIOT_AB_DIR.

set -eu

: "${UIOT_AB_MODE:=block}"
: "${UIOT_AB_SLOTS:=/dev/mmcblk0p2 /dev/mmcblk0p3}"
: "${UIOT_AB_ACTIVE_FILE:=/etc/uiot/ab-active-slot}"
: "${UIOT_AB_CMDLINE:=/proc/cmdline}"
: "${UIOT_AB_SWITCH:=}"
: "${UIOT_AB_REBOOT:=reboot}"
: "${UIOT_AB_DIR:=}"
: "${UIOT_AB_FILE_NAME:=image}"
: "${UIOT_AB_RESTART:=}"

die() {
	echo "ab-image: $*" >&2
	exit 1
}

# The lowercase MD5 of the first $2 bytes of $1 (the whole file without $2).
md5_of() {
	if [ $# -gt 1 ]; then
		head -c "$2" "$1" | md5sum | cut -d' ' -f1
	else
		md5sum <"$1" | cut -d' ' -f1
	fi
}

file=${UIOT_OTA_FILE:-}
[ -n "$file" ] || die "UIOT_OTA_FILE is not set: this script is run by uiot run ([ota] apply)"
[ -f "$file" ] || die "$file: no such image file"
want=$(printf '%s' "${UIOT_OTA_MD5:-}" | tr 'A-F' 'a-f')
[ -n "$want" ] || die "UIOT_OTA_MD5 is not set: cannot verify $file"
size=$(wc -c <"$file" | tr -d ' ')
if [ -n "${UIOT_OTA_SIZE:-}" ] && [ "$size" != "$UIOT_OTA_SIZE" ]; then
	die "$file is $size bytes, not UIOT_OTA_SIZE=$UIOT_OTA_SIZE: nothing installed"
fi
got=$(md5_of "$file")
[ "$got" = "$want" ] || die "$file has MD5 $got, not UIOT_OTA_MD5=$want: nothing installed"
version=${UIOT_OTA_VERSION:-}
[ -n "$version" ] || die "UIOT_OTA_VERSION is not set"

block_mode() {
	# Split into words on purpose.
	# shellcheck disable=SC2086
	set -- $UIOT_AB_SLOTS
	[ $# -eq 2 ] || die "UIOT_AB_SLOTS must name two partitions, not '$UIOT_AB_SLOTS'"
	slot1=$1
	slot2=$2
	[ -n "$UIOT_AB_SWITCH" ] ||
		die "UIOT_AB_SWITCH is not set: give the command that makes the boot loader boot \$UIOT_AB_NEXT_SLOT next (see the top of $0): nothing written"
	active=
	for word in $(cat "$UIOT_AB_CMDLINE" 2>/dev/null || true); do
		case "$word" in
		root="$slot1" | root="$slot2") active=${word#root=} ;;
		esac
	done
	if [ -z "$active" ] && [ -f "$UIOT_AB_ACTIVE_FILE" ]; then
		marked=$(cat "$UIOT_AB_ACTIVE_FILE")
		case "$marked" in
		"$slot1" | "$slot2") active=$marked ;;
		esac
	fi
	if [ "${active:-$slot1}" = "$slot1" ]; then
		next=$slot2 number=2
	else
		next=$slot1 number=1
	fi
	[ -e "$next" ] || die "$next (the inactive slot) does not exist: check UIOT_AB_SLOTS"
	real=$(readlink -f "$next" 2>/dev/null || echo "$next")
	if cut -d' ' -f1 /proc/mounts 2>/dev/null | grep -qxF -e "$next" -e "$real"; then
		die "$next is mounted: it is not the inactive slot (fix $UIOT_AB_ACTIVE_FILE or UIOT_AB_SLOTS): nothing written"
	fi
	# /proc/mounts may call the root file system /dev/root: compare device
	# numbers too, so the running root is never written whatever its name.
	if [ -b "$real" ] && root_dev=$(stat -c %d / 2>/dev/null) &&
		rdev=$(stat -c '%t %T' "$real" 2>/dev/null); then
		set -- $rdev
		major=$((0x$1)) minor=$((0x$2))
		if [ "$root_dev" -eq $(((minor & 255) | (major << 8) | ((minor & ~255) << 12))) ]; then
			die "$next is the running root file system: it is not the inactive slot (fix $UIOT_AB_ACTIVE_FILE or UIOT_AB_SLOTS): nothing written"
		fi
	fi
	if [ -b "$next" ] && command -v blockdev >/dev/null 2>&1; then
		room=$(blockdev --getsize64 "$next")
		[ "$size" -le "$room" ] || die "$file ($size bytes) does not fit $next ($room bytes): nothing written"
	fi
	echo "ab-image: writing ${UIOT_OTA_MODULE:-default} $version to $next" >&2
	dd if="$file" of="$next" bs=65536 conv=notrunc 2>/dev/null ||
		die "writing $file to $next failed"
	sync
	# Read back from the device, not from the page cache, where possible.
	if [ -b "$next" ] && command -v blockdev >/dev/null 2>&1; then
		blockdev --flushbufs "$next" 2>/dev/null || true
	fi
	back=$(md5_of "$next" "$size")
	[ "$back" = "$want" ] ||
		die "read back from $next: MD5 $back, not $want (a bad write or a failing medium): not switched"
	UIOT_AB_NEXT_SLOT=$next
	UIOT_AB_NEXT_NUMBER=$number
	export UIOT_AB_NEXT_SLOT UIOT_AB_NEXT_NUMBER
	sh -c "$UIOT_AB_SWITCH" || die "UIOT_AB_SWITCH failed (exit $?): $next is written but not switched to"
	printf '%s\n' "$next" >"$UIOT_AB_ACTIVE_FILE.tmp" &&
		mv -f "$UIOT_AB_ACTIVE_FILE.tmp" "$UIOT_AB_ACTIVE_FILE" ||
		echo "ab-image: cannot record $next in $UIOT_AB_ACTIVE_FILE" >&2
	sync
	echo "ab-image: $next switched to; rebooting" >&2
	sh -c "$UIOT_AB_REBOOT" ||
		echo "ab-image: UIOT_AB_REBOOT failed (exit $?); $next boots at the next reboot" >&2
}

# Points $UIOT_AB_DIR/current at $1 (a or b), replacing the link atomically.
point_current() {
	ln -sfn "$1" "$UIOT_AB_DIR/.current.tmp"
	mv -fT "$UIOT_AB_DIR/.current.tmp" "$UIOT_AB_DIR/current" 2>/dev/null || {
		# An mv without -T: not atomic, but the same result.
		rm -f "$UIOT_AB_DIR/.current.tmp"
		ln -sfn "$1" "$UIOT_AB_DIR/current"
	}
}

is_gzip() {
	[ "$(od -An -tx1 -N2 "$1" | tr -d ' \n')" = 1f8b ]
}

# Whether $1 is a tar archive (gzipped or not).
is_tar() {
	if is_gzip "$1"; then
		gzip -dc "$1" | tar -tf - >/dev/null 2>&1
	else
		tar -tf "$1" >/dev/null 2>&1
	fi
}

# Unpacks the tar $1 (gzipped or not) into the directory $2, the files
# owned by this user (-o), not by the uids in the archive.
untar() {
	if is_gzip "$1"; then
		gzip -dc "$1" | tar -xof - -C "$2"
	else
		tar -xof "$1" -C "$2"
	fi
}

file_mode() {
	[ -n "$UIOT_AB_DIR" ] || die "UIOT_AB_DIR is not set: give the module's directory (see the top of $0)"
	mkdir -p "$UIOT_AB_DIR"
	current=
	if [ -L "$UIOT_AB_DIR/current" ]; then
		current=$(readlink "$UIOT_AB_DIR/current")
		current=${current%/}
		current=${current##*/}
		case "$current" in
		a | b) ;;
		*) die "$UIOT_AB_DIR/current points to '$current', not a or b: fix the link" ;;
		esac
	elif [ -e "$UIOT_AB_DIR/current" ]; then
		die "$UIOT_AB_DIR/current is not a symlink: move it away (this script keeps a/, b/ and current -> a or b)"
	fi
	case "$current" in
	a) next=b ;;
	*) next=a ;;
	esac
	dest=$UIOT_AB_DIR/$next
	rm -rf "$dest"
	mkdir -p "$dest"
	if is_tar "$file"; then
		untar "$file" "$dest" || die "unpacking $file into $dest failed"
	else
		cp "$file" "$dest/$UIOT_AB_FILE_NAME" || die "copying $file to $dest failed"
		chmod 0755 "$dest/$UIOT_AB_FILE_NAME"
		[ "$(md5_of "$dest/$UIOT_AB_FILE_NAME")" = "$want" ] ||
			die "$dest/$UIOT_AB_FILE_NAME differs from $file after copying: not switched"
	fi
	printf '%s\n' "$version" >"$dest/VERSION"
	sync
	point_current "$next"
	sync
	echo "ab-image: ${UIOT_OTA_MODULE:-default} ${UIOT_OTA_FROM:-?} -> $version in $dest (current -> $next)" >&2
	if [ -n "$UIOT_AB_RESTART" ] && ! sh -c "$UIOT_AB_RESTART"; then
		if [ -n "$current" ]; then
			point_current "$current"
			sync
			sh -c "$UIOT_AB_RESTART" || true
		fi
		die "UIOT_AB_RESTART failed: current points back to ${current:-nothing}"
	fi
}

case "$UIOT_AB_MODE" in
block) block_mode ;;
file) file_mode ;;
*) die "UIOT_AB_MODE must be block or file, not '$UIOT_AB_MODE'" ;;
esac
exit 0
