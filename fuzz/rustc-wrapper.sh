#!/usr/bin/env bash
# RUSTC_WORKSPACE_WRAPPER for `fuzz/run.sh`: cargo calls it as
# `rustc-wrapper.sh <rustc> <args>` for workspace crates only, so the
# dependencies (wasmtime and the rest) keep the test build's flags and are
# reused, while hookhost and the fuzz targets get the coverage
# instrumentation libFuzzer needs: the flags `cargo fuzz` passes with
# `--sanitizer none`, which stable rustc accepts.
#
# Build scripts are left alone: they are linked without libFuzzer, so the
# instrumentation's hooks would be undefined symbols there.
set -euo pipefail
rustc="$1"
shift
case " $* " in
*" --crate-name build_script_"*) exec "$rustc" "$@" ;;
esac
exec "$rustc" "$@" \
    -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing
