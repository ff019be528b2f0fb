#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each on the stable toolchain (--sanitizer none) and
# fails on any crash, panic, broken invariant, oversized allocation or timeout.
#
#   fuzz/run-all.sh 30            # what CI runs
#   fuzz/run-all.sh 3600          # a longer local run
#
# The committed seeds (fuzz/corpus/<target>) are read, never written: new inputs go to
# fuzz/scratch/<target>, crashes to fuzz/artifacts/<target> (both git-ignored).
# Needs cargo-fuzz: `cargo install cargo-fuzz` (installed here if missing).
set -euo pipefail

seconds="${1:?usage: fuzz/run-all.sh SECONDS}"
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-all: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

# Temporary store directories of open_directory: on tmpfs when there is one.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi

cargo fuzz build --sanitizer none -O

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "scratch/$target" "artifacts/$target" "corpus/$target"
    echo "run-all: $target for ${seconds}s" >&2
    # -timeout: one input taking over 10 s is a hang. -rss_limit_mb: memory growth.
    if ! cargo fuzz run "$target" --sanitizer none -O "scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/"; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "run-all: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "run-all: every target ran ${seconds}s without a crash" >&2
