#!/usr/bin/env bash
# Builds the Raspberry Pi OS .deb of uiot with dpkg-deb and verifies it.
# Owns only target/package/ (staging tree and the .deb); the package's
# maintainer scripts and templates live in packaging/deb/.
#
# Usage: scripts/package-deb.sh [--no-build] [TARGET]
#   TARGET  armv7-unknown-linux-gnueabihf (default, Debian arch armhf) or
#           aarch64-unknown-linux-gnu (arm64)
#   --no-build  package target/TARGET/release/uiot as it is (else
#               scripts/cross-build.sh builds it first)
# Output: target/package/uiot_<version>_<arch>.deb, containing
#   /usr/bin/uiot
#   /etc/uiot/uiot.ini                 conffile (from etc/uiot.ini), mode 0600
#   /etc/uiot/hooks/*.sh               conffiles (example hooks from etc/hooks/), mode 0755
#   /etc/uiot/ota/*.sh                 conffiles (OTA apply scripts from etc/ota/), mode 0755
#   /usr/share/doc/uiot/{README.md,copyright}
#   /lib/systemd/system/uiot.service   from packaging/systemd/ (not enabled), maintainer scripts from packaging/deb/
# Depends: libc6 (>= 2.34), libssl3 (Raspberry Pi OS bookworm or newer) and
# adduser (the postinst creates group uiot for the daemon's socket).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "package-deb: $*" >&2; exit 1; }

build=true
target=armv7-unknown-linux-gnueabihf
for a in "$@"; do
  case "$a" in
    --no-build) build=false ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$a'; see $0 --help" ;;
    *) target=$a ;;
  esac
done
case "$target" in
  armv7-unknown-linux-gnueabihf) arch=armhf ;;
  aarch64-unknown-linux-gnu) arch=arm64 ;;
  *) die "no .deb for '$target': use armv7-unknown-linux-gnueabihf or aarch64-unknown-linux-gnu (musl builds go into the .ipk)" ;;
esac
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian's dpkg package)"

version=$(awk -F'"' '/^version = /{print $2; exit}' "$root/Cargo.toml")
[ -n "$version" ] || die "no version in Cargo.toml"
bin="$root/target/$target/release/uiot"
if $build; then
  bash "$root/scripts/cross-build.sh" --tls "$target"
fi
[ -x "$bin" ] || die "$bin missing; build it: scripts/cross-build.sh $target"

out="$root/target/package"
stage="$out/deb-$arch"
deb="$out/uiot_${version}_${arch}.deb"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/uiot" "$stage/usr/share/doc/uiot"
install -m 0755 "$bin" "$stage/usr/bin/uiot"
# The config will hold the device secret: readable by root only.
install -m 0600 "$root/etc/uiot.ini" "$stage/etc/uiot/uiot.ini"
install -m 0644 "$root/README.md" "$stage/usr/share/doc/uiot/README.md"
install -m 0644 "$root/packaging/deb/copyright" "$stage/usr/share/doc/uiot/copyright"
echo /etc/uiot/uiot.ini > "$stage/DEBIAN/conffiles"
# Example hooks (etc/hooks/) and OTA apply scripts (etc/ota/) for `uiot
# run` ([hooks] and [ota] in uiot.ini): executable, and conffiles so that
# an administrator's edits survive upgrades.
scripts=()
for d in hooks ota; do
  mkdir -p "$stage/etc/uiot/$d"
  for h in "$root"/etc/$d/*; do
    [ -f "$h" ] || continue
    install -m 0755 "$h" "$stage/etc/uiot/$d/${h##*/}"
    echo "/etc/uiot/$d/${h##*/}" >> "$stage/DEBIAN/conffiles"
    scripts+=("$d/${h##*/}")
  done
done

# The systemd unit: shipped when packaging/systemd/uiot.service exists,
# with the maintainer scripts (reload systemd, create group uiot). The unit
# is never enabled by the package: the config must be filled in with the
# device's identity first (README.md, "Running uiot as a service").
if [ -f "$root/packaging/systemd/uiot.service" ]; then
  mkdir -p "$stage/lib/systemd/system"
  install -m 0644 "$root/packaging/systemd/uiot.service" "$stage/lib/systemd/system/uiot.service"
  for s in postinst prerm postrm; do
    install -m 0755 "$root/packaging/deb/$s" "$stage/DEBIAN/$s"
  done
fi

installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_kb/" \
  "$root/packaging/deb/control.in" > "$stage/DEBIAN/control"

mkdir -p "$out"
rm -f "$deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null

# Verify: the control data and every file a user relies on.
info=$(dpkg-deb --info "$deb")
contents=$(dpkg-deb --contents "$deb")
echo "$info"
echo "$contents"
echo "$info" | grep -q "Architecture: $arch" || die "wrong Architecture in $deb"
echo "$info" | grep -q "Depends: .*libssl3" || die "Depends lacks libssl3 in $deb"
echo "$contents" | grep -q -- '-rwxr-xr-x root/root .* \./usr/bin/uiot$' || die "usr/bin/uiot missing or not 0755 root in $deb"
echo "$contents" | grep -q -- '-rw------- root/root .* \./etc/uiot/uiot\.ini$' || die "etc/uiot/uiot.ini missing or not 0600 root in $deb"
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/uiot/uiot.ini \
  || die "/etc/uiot/uiot.ini is not a conffile in $deb"
cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/bin/uiot) "$bin" \
  || die "the binary in $deb differs from $bin"
for h in "${scripts[@]}"; do
  echo "$contents" | grep -q -- "-rwxr-xr-x root/root .* \./etc/uiot/${h//./\\.}\$" \
    || die "etc/uiot/$h missing or not 0755 root in $deb"
  dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx "/etc/uiot/$h" \
    || die "/etc/uiot/$h is not a conffile in $deb"
done
if [ -f "$root/packaging/systemd/uiot.service" ]; then
  echo "$contents" | grep -q -- '-rw-r--r-- root/root .* \./lib/systemd/system/uiot\.service$' \
    || die "lib/systemd/system/uiot.service missing or not 0644 root in $deb"
  dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./postinst | grep -q 'addgroup --system uiot' \
    || die "the postinst in $deb does not create group uiot"
fi
echo "package-deb: $deb ($(stat -c %s "$deb") bytes) verified"
