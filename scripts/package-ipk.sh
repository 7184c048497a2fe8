#!/usr/bin/env bash
# Builds an OpenWrt .ipk (opkg package) of the static musl uiot with tar and
# gzip, the way OpenWrt's ipkg-build lays it out, and verifies it.
# Owns only target/package/ (staging tree and the .ipk); the control
# template lives in packaging/openwrt/.
#
# Usage: scripts/package-ipk.sh [--no-build] [--arch OPKG_ARCH] [TARGET]
#   TARGET  mipsel-unknown-linux-musl (default; opkg arch mipsel_24kc: ramips
#           MT7620/MT7621/MT76x8), armv7-unknown-linux-musleabihf (default
#           arch arm_cortex-a7_neon-vfpv4), aarch64-unknown-linux-musl
#           (default arch aarch64_cortex-a53)
#   --arch  the router's opkg architecture (first line of
#           `opkg print-architecture` with the highest priority), if it is
#           not the default above; the binary runs on any CPU of that family
#   --no-build  package target/TARGET/release/uiot as it is (else
#               scripts/cross-build.sh builds it first)
# Output: target/package/uiot_<version>-1_<arch>.ipk: a gzipped tar of
# ./debian-binary, ./data.tar.gz, ./control.tar.gz (OpenWrt's format since
# 2017; opkg also reads the older ar form). Contents:
#   /usr/bin/uiot, /etc/uiot/uiot.ini (conffile, mode 0600),
#   /etc/uiot/hooks/*.sh (example hooks from etc/hooks/, conffiles, 0755),
#   /etc/uiot/ota/*.sh (OTA apply scripts from etc/ota/, conffiles, 0755),
#   /lib/upgrade/keep.d/uiot (sysupgrade keeps /etc/uiot/),
#   /etc/init.d/uiot from packaging/openwrt/uiot.init (enabled on install).
# For opkg-based OpenWrt (up to 24.10); OpenWrt 25.x uses apk: copy the
# static binary instead (README.md, "Raspberry Pi and OpenWrt builds").
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "package-ipk: $*" >&2; exit 1; }

build=true
target=mipsel-unknown-linux-musl
arch=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=false ;;
    --arch) [ $# -ge 2 ] || die "--arch needs a value, e.g. --arch mipsel_24kc"; arch=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1'; see $0 --help" ;;
    *) target=$1 ;;
  esac
  shift
done
case "$target" in
  mipsel-unknown-linux-musl) : "${arch:=mipsel_24kc}" ;;
  armv7-unknown-linux-musleabihf) : "${arch:=arm_cortex-a7_neon-vfpv4}" ;;
  aarch64-unknown-linux-musl) : "${arch:=aarch64_cortex-a53}" ;;
  *) die "no .ipk for '$target': use one of the static musl targets (see $0 --help)" ;;
esac
[[ "$arch" =~ ^[A-Za-z0-9_.+-]+$ ]] || die "--arch '$arch' is not an opkg architecture name"

version=$(awk -F'"' '/^version = /{print $2; exit}' "$root/Cargo.toml")
[ -n "$version" ] || die "no version in Cargo.toml"
pkgver="$version-1"
bin="$root/target/$target/release/uiot"
if $build; then
  bash "$root/scripts/cross-build.sh" --tls "$target"
fi
[ -x "$bin" ] || die "$bin missing; build it: scripts/cross-build.sh $target"

out="$root/target/package"
stage="$out/ipk-$arch"
ipk="$out/uiot_${pkgver}_${arch}.ipk"
rm -rf "$stage"
mkdir -p "$stage/data/usr/bin" "$stage/data/etc/uiot" "$stage/control" "$stage/outer"
install -m 0755 "$bin" "$stage/data/usr/bin/uiot"
# The config will hold the device secret: readable by root only.
install -m 0600 "$root/etc/uiot.ini" "$stage/data/etc/uiot/uiot.ini"
echo /etc/uiot/uiot.ini > "$stage/control/conffiles"
# Example hooks (etc/hooks/) and OTA apply scripts (etc/ota/) for `uiot
# run` ([hooks] and [ota] in uiot.ini): executable, and conffiles so that
# an administrator's edits survive upgrades.
scripts=()
for d in hooks ota; do
  mkdir -p "$stage/data/etc/uiot/$d"
  for h in "$root"/etc/$d/*; do
    [ -f "$h" ] || continue
    install -m 0755 "$h" "$stage/data/etc/uiot/$d/${h##*/}"
    echo "/etc/uiot/$d/${h##*/}" >> "$stage/control/conffiles"
    scripts+=("$d/${h##*/}")
  done
done

# sysupgrade keeps what /lib/upgrade/keep.d/* lists: /etc/uiot/ holds the
# config, device.secret (dynamic registration), http.token and the OTA
# state file, none of them all conffiles, and an OTA by sysupgrade must
# come back as the same device with its pending upgrade to settle.
mkdir -p "$stage/data/lib/upgrade/keep.d"
echo /etc/uiot/ > "$stage/data/lib/upgrade/keep.d/uiot"
chmod 0644 "$stage/data/lib/upgrade/keep.d/uiot"

# The procd init script: when packaging/openwrt/uiot.init exists it is
# shipped as /etc/init.d/uiot, enabled on install the OpenWrt way (it
# starts at the next boot, by which time the config should be filled in)
# and stopped on removal.
if [ -f "$root/packaging/openwrt/uiot.init" ]; then
  mkdir -p "$stage/data/etc/init.d"
  install -m 0755 "$root/packaging/openwrt/uiot.init" "$stage/data/etc/init.d/uiot"
  echo /etc/init.d/uiot >> "$stage/control/conffiles"
  printf '#!/bin/sh\n[ -n "$IPKG_INSTROOT" ] || /etc/init.d/uiot enable\nexit 0\n' > "$stage/control/postinst"
  printf '#!/bin/sh\n[ -n "$IPKG_INSTROOT" ] || { /etc/init.d/uiot stop; /etc/init.d/uiot disable; }\nexit 0\n' > "$stage/control/prerm"
  chmod 0755 "$stage/control/postinst" "$stage/control/prerm"
fi

installed=$(du -sb "$stage/data" | cut -f1)
sed -e "s/@VERSION@/$pkgver/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed/" \
  "$root/packaging/openwrt/control.in" > "$stage/control/control"
echo "2.0" > "$stage/outer/debian-binary"

# Reproducible tars: root-owned, sorted, one fixed time.
mtime="@${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}"
rtar() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" "$@"; }
rtar -C "$stage/data" -cf - . | gzip -9n > "$stage/outer/data.tar.gz"
rtar -C "$stage/control" -cf - . | gzip -9n > "$stage/outer/control.tar.gz"
mkdir -p "$out"
rm -f "$ipk"
rtar -C "$stage/outer" -cf - ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -9n > "$ipk"

# Verify by listing it as opkg would read it.
echo "== $ipk"
tar -tzvf "$ipk"
echo "== control.tar.gz"
tar -xzOf "$ipk" ./control.tar.gz | tar -tzvf -
tar -xzOf "$ipk" ./control.tar.gz | tar -xzOf - ./control
echo "== data.tar.gz"
data=$(tar -xzOf "$ipk" ./data.tar.gz | tar -tzvf -)
echo "$data"
[ "$(tar -xzOf "$ipk" ./debian-binary)" = "2.0" ] || die "debian-binary is not 2.0 in $ipk"
tar -xzOf "$ipk" ./control.tar.gz | tar -xzOf - ./control | grep -qx "Architecture: $arch" \
  || die "wrong Architecture in $ipk"
echo "$data" | grep -q -- '-rwxr-xr-x 0/0 .* \./usr/bin/uiot$' || die "usr/bin/uiot missing or not 0755 root in $ipk"
echo "$data" | grep -q -- '-rw------- 0/0 .* \./etc/uiot/uiot\.ini$' || die "etc/uiot/uiot.ini missing or not 0600 root in $ipk"
cmp -s <(tar -xzOf "$ipk" ./data.tar.gz | tar -xzOf - ./usr/bin/uiot) "$bin" \
  || die "the binary in $ipk differs from $bin"
conffiles=$(tar -xzOf "$ipk" ./control.tar.gz | tar -xzOf - ./conffiles)
for h in "${scripts[@]}"; do
  echo "$data" | grep -q -- "-rwxr-xr-x 0/0 .* \./etc/uiot/${h//./\\.}\$" \
    || die "etc/uiot/$h missing or not 0755 root in $ipk"
  echo "$conffiles" | grep -qx "/etc/uiot/$h" || die "/etc/uiot/$h is not a conffile in $ipk"
done
[ "$(tar -xzOf "$ipk" ./data.tar.gz | tar -xzOf - ./lib/upgrade/keep.d/uiot)" = /etc/uiot/ ] \
  || die "lib/upgrade/keep.d/uiot missing or not /etc/uiot/ in $ipk"
if [ -f "$root/packaging/openwrt/uiot.init" ]; then
  echo "$data" | grep -q -- '-rwxr-xr-x 0/0 .* \./etc/init\.d/uiot$' \
    || die "etc/init.d/uiot missing or not 0755 root in $ipk"
fi
echo "package-ipk: $ipk ($(stat -c %s "$ipk") bytes) verified"
