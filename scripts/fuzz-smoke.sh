#!/usr/bin/env bash
# Short fuzz run for CI: each fuzz target replays its corpus in
# fuzz/corpus/<target>/ and then tries new inputs for a few seconds.
# Exits non-zero if any input crashes (panics, times out, or grows memory
# past the limit); the crashing input is left in fuzz/artifacts/<target>/.
#
# Owns: the CI invocation of the fuzz targets. Must not touch: the corpus in
# the repository (new inputs go to a scratch directory), the targets.
#
# Usage: scripts/fuzz-smoke.sh [target...]     (default: decode ini platform ota)
# Environment: FUZZ_SECONDS (per target, default 20).
#
# Toolchain: `cargo +nightly` if rustup has a nightly toolchain, else the
# default (stable) toolchain with RUSTC_BOOTSTRAP=1, which cargo-fuzz needs
# for its -Z flags. cargo-fuzz is installed with `cargo install` if missing.
# No sanitizer (-s none): the crate is #![forbid(unsafe_code)], so ASan
# would only slow the run; a panic is what these targets look for.
# The long documented run is described in docs/fuzz.md.
set -euo pipefail

cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(decode ini platform ota)
fi

if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
    cargo=(cargo +nightly)
    echo "fuzz-smoke: using the nightly toolchain"
else
    cargo=(cargo)
    export RUSTC_BOOTSTRAP=1
    echo "fuzz-smoke: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

status=0
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    if [ ! -d "$corpus" ]; then
        echo "fuzz-smoke: $corpus is missing; every target keeps its corpus there" >&2
        exit 2
    fi
    mkdir -p "$scratch/$target"
    echo "fuzz-smoke: $target: $(find "$corpus" -type f | wc -l) corpus inputs, then ${seconds}s of new ones"
    # New inputs go to the scratch directory (the first one); the
    # repository's corpus is only read. One process, one job.
    if ! "${cargo[@]}" fuzz run -s none "$target" "$scratch/$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=4096 \
        -print_final_stats=1 2>"$scratch/$target.log"; then
        # The panic message and libFuzzer's verdict, then the end of the log.
        grep -E -A1 'panicked at|^==[0-9]+== ERROR|^SUMMARY' "$scratch/$target.log" >&2 || true
        tail -n 15 "$scratch/$target.log" >&2
        echo "fuzz-smoke: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        status=1
        continue
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$scratch/$target.log" || true
    echo "fuzz-smoke: $target ok"
done
exit "$status"
