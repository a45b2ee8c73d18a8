#!/usr/bin/env bash
# Builds the fuzz targets with stable rustc and runs each for a bounded
# time: `fuzz/run.sh [SECONDS]` (default 60 per target). Exits non-zero
# when a target finds an input that crashes it, after printing that input.
#
# The targets are built like the tests (dev profile, same CARGO_TARGET_DIR)
# so wasmtime and every other dependency come from the test build; only
# hookhost and the targets are compiled again, instrumented for libFuzzer
# by `fuzz/rustc-wrapper.sh`. Everything the run writes (new corpus
# entries, crash inputs) goes to a temporary folder that is removed at the
# end: the clone is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
targets=(event_json config metadata)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hookhost/target}"

RUSTC_WORKSPACE_WRAPPER="$PWD/fuzz/rustc-wrapper.sh" \
    cargo build -p hookhost-fuzz --bins

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for target in "${targets[@]}"; do
    printf -- '--- fuzzing %s for %s s\n' "$target" "$seconds"
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    # New inputs go to the first corpus folder (temporary); the seeds in
    # fuzz/corpus are only read. -timeout: an input that takes 10 s is a
    # hang worth reporting. The progress lines (one per new input) are left
    # out of the log; everything else, crash reports included, is kept.
    set +e
    "$CARGO_TARGET_DIR/debug/$target" \
        -max_total_time="$seconds" \
        -timeout=10 \
        -print_final_stats=1 \
        -artifact_prefix="$work/$target/artifacts/" \
        "$work/$target/corpus" "fuzz/corpus/$target" 2>&1 |
        grep -v -E '^(#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|[[:space:]]+NEW_FUNC)'
    status="${PIPESTATUS[0]}"
    set -e
    if [ "$status" -ne 0 ]; then
        for crash in "$work/$target/artifacts/"*; do
            [ -e "$crash" ] || continue
            printf '\n%s found a failing input (%s), base64:\n' "$target" "$(basename "$crash")"
            base64 "$crash"
        done
        printf '\nreproduce: save the input to a file and run %s FILE\n' \
            "$CARGO_TARGET_DIR/debug/$target"
        exit 1
    fi
done
