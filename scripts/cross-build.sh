#!/usr/bin/env bash
# Cross-compiles the uiot binary for Raspberry Pi OS (glibc) and OpenWrt
# (static musl), offline on Debian 12 x86_64. Owns only what it writes under
# target/ (tools, generated cargo configs, OpenSSL builds, sysroots); it never
# writes a .cargo/config.toml, so normal `cargo build` is unaffected.
#
# Usage: scripts/cross-build.sh [--tls|--plain|--both] TARGET...|all
#   --tls    (default) with TLS  -> target/<TARGET>/release/uiot
#   --plain  --no-default-features (plain MQTT only) -> target/plain/<TARGET>/release/uiot
#   --both   both of the above
# TARGETs:
#   armv7-unknown-linux-gnueabihf   Pi OS 32-bit (Pi 2/3/4/5), dynamic, system libssl3
#   aarch64-unknown-linux-gnu       Pi OS 64-bit (Pi 3/4/5), dynamic, system libssl3
#   armv7-unknown-linux-musleabihf  OpenWrt/any Linux armv7, fully static
#   aarch64-unknown-linux-musl      OpenWrt/any Linux arm64, fully static
#   mipsel-unknown-linux-musl       OpenWrt ramips/ath79 (MIPS32r2 LE soft-float), fully static
#   all                             every target above
#   x86_64-unknown-linux-musl       the routers' static build for this machine, to measure it
#                                   (memory, CPU) natively; not part of 'all'
#
# How (see README.md, "Raspberry Pi and OpenWrt builds"): the Rust standard library for each target is built
# from Debian's source (rustc-web, cargo-web, rust-web-src; -Z build-std with
# RUSTC_BOOTSTRAP=1), because `rustup target add` cannot download here.
# glibc targets link with Debian's cross gcc against Debian bookworm's own
# libssl3 for armhf/arm64 (downloaded as .debs into a private sysroot, no
# foreign dpkg architecture). musl targets use zig (PyPI `ziglang`) as C
# compiler and linker and a small static OpenSSL built here from the
# openssl-src crate's source with only what a TLS 1.2/1.3 client needs
# (mipsel: no-asm and -DBROKEN_CLANG_ATOMICS).
# Installs what is missing with apt-get and pip (needs root or sudo).
# Env: UIOT_CROSS_JOBS (default: nproc) for the OpenSSL build.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cross="$root/target/cross"
jobs=${UIOT_CROSS_JOBS:-$(nproc)}
all_targets=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu
  armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl mipsel-unknown-linux-musl)
# The PyPI zig release this was proven with.
zig_version=0.17.1

die() { echo "cross-build: $*" >&2; exit 1; }
say() { echo "cross-build: $*" >&2; }
usage() { sed -n '6,20p' "$0" | sed 's/^# \{0,1\}//'; }

flavours=(tls)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tls) flavours=(tls) ;;
    --plain) flavours=(plain) ;;
    --both) flavours=(tls plain) ;;
    -h|--help) usage; exit 0 ;;
    all) targets+=("${all_targets[@]}") ;;
    -*) die "unknown option '$1'; see $0 --help" ;;
    *)
      case " ${all_targets[*]} x86_64-unknown-linux-musl " in
        *" $1 "*) targets+=("$1") ;;
        *) die "unsupported target '$1'; supported: ${all_targets[*]} (or 'all')" ;;
      esac ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || { usage >&2; die "name at least one TARGET (or 'all')"; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=false
# apt_install PKG...: installs the packages that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  if ! $apt_updated; then
    # An unreachable extra source must not stop us; the install below fails
    # clearly if a package really cannot be found.
    $sudo apt-get update -qq || say "apt-get update reported errors (continuing)"
    apt_updated=true
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed; install them by hand and re-run"
}

# ---------------------------------------------------------------- toolchain
needs_zig=false
needs_gcc=()
for t in "${targets[@]}"; do
  case "$t" in
    *-musl*) needs_zig=true ;;
    armv7-unknown-linux-gnueabihf) needs_gcc+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
    aarch64-unknown-linux-gnu) needs_gcc+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
  esac
done
# Debian's Rust 1.96 (std source for build-std), perl/make for OpenSSL,
# python3-venv for zig, file to show what was built.
apt_install rustc-web cargo-web rust-web-src perl make python3-venv file "${needs_gcc[@]}"
[ -d /usr/lib/rustlib/src/rust/library ] \
  || die "std source missing at /usr/lib/rustlib/src/rust/library; apt-get install --reinstall rust-web-src"

mkdir -p "$cross/bin"
zig=""
if $needs_zig; then
  venv="$cross/zig-venv"
  if ! "$venv/bin/python" -c "import ziglang" >/dev/null 2>&1; then
    say "installing zig $zig_version from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed; apt-get install python3-venv"
    "$venv/bin/pip" install -q "ziglang==$zig_version" \
      || die "pip install ziglang==$zig_version failed (PyPI reachable?)"
  fi
  zig=$("$venv/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
  [ -x "$zig" ] || die "zig binary not found at $zig; remove $venv and re-run"
  # Keep zig's caches inside target/ (cargo clean removes them).
  export ZIG_GLOBAL_CACHE_DIR="$cross/zig-cache" ZIG_LOCAL_CACHE_DIR="$cross/zig-cache"
  for tool in ar ranlib; do
    printf '#!/bin/sh\nZIG_GLOBAL_CACHE_DIR="%s" ZIG_LOCAL_CACHE_DIR="%s" exec "%s" %s "$@"\n' \
      "$ZIG_GLOBAL_CACHE_DIR" "$ZIG_LOCAL_CACHE_DIR" "$zig" "$tool" > "$cross/bin/zig-$tool"
    chmod +x "$cross/bin/zig-$tool"
  done
fi

# zig_cc TRIPLE ZIGTARGET...: writes the compiler/linker wrapper for TRIPLE.
# cc-rs passes --target=<rust triple>, which zig refuses: filter it out.
zig_cc() {
  local t=$1; shift
  cat > "$cross/bin/$t-cc" <<EOF
#!/bin/sh
# Generated by scripts/cross-build.sh: zig cc for $t.
for a in "\$@"; do shift; case "\$a" in --target=*) ;; *) set -- "\$@" "\$a";; esac; done
ZIG_GLOBAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR" ZIG_LOCAL_CACHE_DIR="$ZIG_LOCAL_CACHE_DIR" \\
  exec "$zig" cc -target $* "\$@"
EOF
  chmod +x "$cross/bin/$t-cc"
}

# ------------------------------------------------------------------ OpenSSL
# What a TLS 1.2/1.3 client needs, nothing else: no legacy provider, engines,
# DTLS/QUIC, SSLv3/TLS 1.0/1.1, CMS/OCSP/TS/CMP/CT, PSK/SRP, old or national
# ciphers and post-quantum signatures. Kept: ECDHE (x25519, P-256/384),
# DHE, RSA/ECDSA/Ed25519 certificates, AES-GCM, ChaCha20-Poly1305, error strings.
openssl_options=(no-shared no-apps no-docs no-tests no-module no-legacy
  no-engine no-dynamic-engine no-dso no-async no-autoload-config no-ui-console
  no-dtls no-quic no-ssl3 no-tls1 no-tls1_1 no-tls1-method no-tls1_1-method no-dgram
  no-cms no-ocsp no-ts no-cmp no-ct no-http no-srp no-psk no-srtp no-sctp
  no-comp no-nextprotoneg no-rfc3779 no-ssl-trace no-multiblock no-secure-memory
  no-thread-pool no-default-thread-pool no-filenames
  no-idea no-md4 no-mdc2 no-rc2 no-rc4 no-bf no-cast no-des no-seed no-camellia no-aria
  no-sm2 no-sm3 no-sm4 no-whirlpool no-rmd160 no-gost no-ec2m no-scrypt no-siphash
  no-siv no-ocb no-blake2 no-argon2 no-dsa no-ml-kem no-ml-dsa no-slh-dsa no-lms)
openssl_cflags=(-Os -ffunction-sections -fdata-sections -DOPENSSL_SMALL_FOOTPRINT)

openssl_src() {
  local lock_ver dir
  lock_ver=$(awk '/^name = "openssl-src"/{getline; gsub(/"/,"",$3); print $3; exit}' "$root/Cargo.lock")
  [ -n "$lock_ver" ] || die "openssl-src is not in Cargo.lock (the vendored-openssl feature puts it there)"
  dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"openssl-src-$lock_ver"/openssl 2>/dev/null | head -n 1)
  if [ -z "$dir" ]; then
    (cd "$root" && cargo fetch --locked >/dev/null) || die "cargo fetch failed (crates.io reachable?)"
    dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"openssl-src-$lock_ver"/openssl 2>/dev/null | head -n 1)
  fi
  [ -n "$dir" ] && [ -x "$dir/Configure" ] || die "OpenSSL source of openssl-src $lock_ver not found in the cargo registry"
  echo "$dir"
}

# build_openssl TRIPLE CONFIGURE_TARGET [no-nistz256] EXTRA...: static
# OpenSSL for a musl target into $cross/openssl/TRIPLE, built in a copy of
# the source (rebuilt only when the recipe changes). no-nistz256 drops the
# ARM assembly P-256 implementation and its 158 KB precomputed table (P-256
# then uses OpenSSL's generic C code; every other assembly routine stays).
build_openssl() {
  local t=$1 ossl_target=$2; shift 2
  local prefix="$cross/openssl/$t" build="$cross/openssl-build/$t" src stamp_want nistz=true
  if [ "${1:-}" = no-nistz256 ]; then nistz=false; shift; fi
  src=$(openssl_src)
  stamp_want="$src ${ossl_target} nistz256=$nistz ${openssl_options[*]} ${openssl_cflags[*]} $*"
  if [ -f "$prefix/.stamp" ] && [ "$(cat "$prefix/.stamp")" = "$stamp_want" ]; then
    return 0
  fi
  say "building OpenSSL for $t ($ossl_target $*), a few minutes"
  rm -rf "$prefix" "$build"
  mkdir -p "$build"
  cp -a "$src/." "$build/"
  if ! $nistz; then
    sed -i -e 's/^\( *\$ECASM_armv4\)=.*/\1=/' -e 's/^\( *\$ECDEF_armv4\)=.*/\1=/' \
      -e 's/^\( *\$ECASM_aarch64\)=ecp_nistz256.c ecp_nistz256-armv8.S$/\1=/' \
      -e 's/^\( *\$ECDEF_aarch64\)=ECP_NISTZ256_ASM$/\1=/' "$build/crypto/ec/build.info"
    ! grep -q 'ECDEF_armv4=ECP_NISTZ256_ASM' "$build/crypto/ec/build.info" \
      || die "could not take ecp_nistz256 out of OpenSSL's crypto/ec/build.info"
  fi
  (
    cd "$build"
    CC="$cross/bin/$t-cc" AR="$cross/bin/zig-ar" RANLIB="$cross/bin/zig-ranlib" \
      perl ./Configure "$ossl_target" --prefix="$prefix" --libdir=lib \
      "${openssl_options[@]}" "${openssl_cflags[@]}" "$@" > configure.log 2>&1 \
      || { tail -n 30 configure.log; exit 1; }
    make -j"$jobs" build_libs > make.log 2>&1 || { tail -n 40 make.log; exit 1; }
    make install_dev > install.log 2>&1 || { tail -n 20 install.log; exit 1; }
  ) || die "OpenSSL build for $t failed; logs in $build"
  echo "$stamp_want" > "$prefix/.stamp"
}

# glibc_sysroot TRIPLE DEBARCH MULTIARCH: Debian bookworm's libssl3 and
# libssl-dev for DEBARCH, unpacked into $cross/sysroot/TRIPLE. Uses a private
# apt state (no `dpkg --add-architecture`, nothing installed system-wide).
glibc_sysroot() {
  local t=$1 arch=$2 multi=$3
  local sys="$cross/sysroot/$t" aptd="$cross/apt" o
  if [ -f "$sys/usr/lib/$multi/libssl.so" ] && [ -d "$sys/usr/include/openssl" ]; then
    return 0
  fi
  say "fetching Debian bookworm libssl3/libssl-dev for $arch"
  mkdir -p "$aptd/lists/partial" "$aptd/cache/archives/partial" "$aptd/debs/$arch"
  # bookworm-security is left out on purpose: its armhf/arm64 indexes are
  # often mid-sync on the mirror and make `apt-get update` fail.
  cat > "$aptd/sources.list" <<EOF
deb [arch=armhf,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [arch=armhf,arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
EOF
  o=(-o "Dir::State::Lists=$aptd/lists" -o "Dir::Cache=$aptd/cache"
    -o "Dir::Etc::SourceList=$aptd/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::status=/dev/null" -o "APT::Architecture=$arch"
    -o "APT::Architectures::=$arch" -o "APT::Sandbox::User=root")
  if [ ! -f "$aptd/.updated-$arch" ]; then
    apt-get "${o[@]}" update -qq || say "apt-get update ($arch) reported errors (continuing)"
    touch "$aptd/.updated-$arch"
  fi
  (cd "$aptd/debs/$arch" && rm -f ./*.deb && apt-get "${o[@]}" download -qq "libssl3:$arch" "libssl-dev:$arch") \
    || die "could not download libssl3/libssl-dev for $arch from Debian; is deb.debian.org reachable?"
  rm -rf "$sys"
  mkdir -p "$sys"
  local deb
  for deb in "$aptd/debs/$arch"/*.deb; do dpkg-deb -x "$deb" "$sys"; done
  # openssl-sys takes one include directory: merge the arch-specific headers.
  cp -a "$sys/usr/include/$multi/openssl/." "$sys/usr/include/openssl/"
  [ -f "$sys/usr/lib/$multi/libssl.so" ] || die "libssl.so missing in $sys after unpacking"
}

# ------------------------------------------------------------------- builds
# write_config TRIPLE: the cargo config for TRIPLE, in target/cross/TRIPLE.toml.
# Usable by hand too:
#   RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build --release \
#     --target TRIPLE --config target/cross/TRIPLE.toml
write_config() {
  local t=$1 u cfg="$cross/$1.toml"
  u=${t//-/_}
  {
    echo "# Generated by scripts/cross-build.sh for $t; do not edit."
    echo "[unstable]"
    echo 'build-std = ["std", "panic_abort"]'
    # std's own size-over-speed variants of its algorithms (smaller binaries
    # for 8-16 MB routers; uiot's hot paths are syscalls, not std sorting).
    echo 'build-std-features = ["optimize_for_size"]'
    echo "[target.$t]"
    case "$t" in
      armv7-unknown-linux-gnueabihf)
        echo 'linker = "arm-linux-gnueabihf-gcc"'
        echo 'runner = ["qemu-arm-static", "-L", "/usr/arm-linux-gnueabihf"]'
        echo "[env]"
        echo "CC_$u = \"arm-linux-gnueabihf-gcc\""
        echo "OPENSSL_LIB_DIR = \"$cross/sysroot/$t/usr/lib/arm-linux-gnueabihf\""
        echo "OPENSSL_INCLUDE_DIR = \"$cross/sysroot/$t/usr/include\""
        ;;
      aarch64-unknown-linux-gnu)
        echo 'linker = "aarch64-linux-gnu-gcc"'
        echo 'runner = ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"]'
        echo "[env]"
        echo "CC_$u = \"aarch64-linux-gnu-gcc\""
        echo "OPENSSL_LIB_DIR = \"$cross/sysroot/$t/usr/lib/aarch64-linux-gnu\""
        echo "OPENSSL_INCLUDE_DIR = \"$cross/sysroot/$t/usr/include\""
        ;;
      *-musl*)
        echo "linker = \"$cross/bin/$t-cc\""
        # +crt-static: mipsel-musl links dynamically by default. No
        # rustc-provided crt objects exist with build-std: zig supplies them.
        # 32-bit: libc_unstable_musl_v1_2 (and the env below, for std's older
        # libc) = musl's 64-bit time_t ABI; see the [env] comment.
        case "$t" in
          mipsel-*|armv7-*)
            echo 'rustflags = ["-C", "target-feature=+crt-static", "-C", "link-self-contained=no", "--cfg", "libc_unstable_musl_v1_2"]' ;;
          *) echo 'rustflags = ["-C", "target-feature=+crt-static", "-C", "link-self-contained=no"]' ;;
        esac
        echo "[env]"
        echo "CC_$u = \"$cross/bin/$t-cc\""
        echo "AR_$u = \"$cross/bin/zig-ar\""
        echo "RANLIB_$u = \"$cross/bin/zig-ranlib\""
        [ "$t" = mipsel-unknown-linux-musl ] && echo "CFLAGS_$u = \"-DBROKEN_CLANG_ATOMICS\""
        # zig's musl is 1.2.5 (64-bit time_t everywhere). By default the libc
        # crate still describes 32-bit targets with musl's old 32-bit time_t,
        # and rustix's libc backend (used on MIPS, where its raw-syscall
        # backend needs nightly asm) passes its 64-bit itimerspec to that
        # 32-bit timerfd_settime: the uiot timer is armed with garbage, so
        # keep-alive pings never fire and disconnect hangs joining the timer
        # thread. This makes the libc crate (std's and ours) use musl's
        # time64 ABI, which is what the C library really has.
        case "$t" in
          mipsel-*|armv7-*) echo 'RUST_LIBC_UNSTABLE_MUSL_V1_2_3 = "1"' ;;
        esac
        echo "OPENSSL_DIR = \"$cross/openssl/$t\""
        echo 'OPENSSL_STATIC = "1"'
        ;;
    esac
  } > "$cfg"
}

prepare() {
  local t=$1
  case "$t" in
    armv7-unknown-linux-gnueabihf) glibc_sysroot "$t" armhf arm-linux-gnueabihf ;;
    aarch64-unknown-linux-gnu) glibc_sysroot "$t" arm64 aarch64-linux-gnu ;;
    armv7-unknown-linux-musleabihf)
      zig_cc "$t" arm-linux-musleabihf -mcpu=generic+v7a+vfp3d16+thumb2-neon ;;
    aarch64-unknown-linux-musl) zig_cc "$t" aarch64-linux-musl ;;
    mipsel-unknown-linux-musl) zig_cc "$t" mipsel-linux-musleabi -mcpu=mips32r2 ;;
    x86_64-unknown-linux-musl) zig_cc "$t" x86_64-linux-musl ;;
  esac
  write_config "$t"
}

prepare_openssl() {
  case "$1" in
    armv7-unknown-linux-musleabihf) build_openssl "$1" linux-armv4 no-nistz256 no-pic ;;
    aarch64-unknown-linux-musl) build_openssl "$1" linux-aarch64 ;;
    # OpenSSL's MIPS assembly, assembled by zig/clang, corrupts records at
    # run time (bad record MAC, SIGSEGV); 32-bit MIPS has no 64-bit atomics.
    mipsel-unknown-linux-musl) build_openssl "$1" linux-mips32 no-asm -DBROKEN_CLANG_ATOMICS ;;
    x86_64-unknown-linux-musl) build_openssl "$1" linux-x86_64 ;;
  esac
}

built=()
for t in "${targets[@]}"; do
  prepare "$t"
  for f in "${flavours[@]}"; do
    args=(build --locked --release --bin uiot --target "$t" --config "$cross/$t.toml")
    tdir="$root/target"
    if [ "$f" = plain ]; then
      args+=(--no-default-features)
      tdir="$root/target/plain"
    else
      # TLS and the HTTP client (the default features less `sim`: uiot-sim
      # is not built for boards, and its tiny_http need not be compiled).
      args+=(--no-default-features --features tls,http)
      prepare_openssl "$t"
    fi
    say "building uiot ($f) for $t"
    start=$(date +%s)
    (
      cd "$root"
      # Debian's toolchain first: ~/.cargo/bin (rustup) has no std source.
      PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_DIR="$tdir" /usr/bin/cargo "${args[@]}"
    ) || die "cargo build ($f) for $t failed (see above)"
    bin="$tdir/$t/release/uiot"
    [ -x "$bin" ] || die "cargo reported success but $bin is missing"
    say "$t ($f): $(stat -c %s "$bin") bytes in $(( $(date +%s) - start )) s: $bin"
    built+=("$bin")
  done
done

echo
for b in "${built[@]}"; do
  printf '%10s  %s\n' "$(stat -c %s "$b")" "${b#"$root"/}"
  file -b "$b" | sed 's/^/            /'
done
