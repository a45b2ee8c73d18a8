#!/usr/bin/env bash
# Builds the Python package's wheel and runs its tests in a virtualenv:
# `integrations/python/run-tests.sh [PYTEST ARGS]`.
#
# The wheel is built with the tests' profile (dev) in the tests' target dir,
# so the host crate and its dependencies come from the `cargo test` build;
# only the native module is compiled again. The virtualenv (maturin,
# pytest) is kept in the target dir, outside the clone. The guest
# components the tests load come from that build too (HOOKHOST_GUEST_DIR).
#
# The end-to-end test (tests/test_baselinr_e2e.py) installs baselinr 0.9.0
# from PyPI and this wheel into a second virtualenv it keeps in
# $CARGO_TARGET_DIR/python/baselinr-venv, and runs the `hookhost` binary of
# the same build as a daemon (built here if `cargo test` has not built it).
set -euo pipefail
cd "$(dirname "$0")"

# The target dir cargo uses (as scripts/test.sh finds it), unless set.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    CARGO_TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
fi
export CARGO_TARGET_DIR
venv="$CARGO_TARGET_DIR/python/venv"
wheels="$CARGO_TARGET_DIR/python/wheels"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7"

rm -rf "$wheels"
"$venv/bin/maturin" build --profile dev --out "$wheels" --quiet
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/hookhost-*.whl

if [ ! -x "$CARGO_TARGET_DIR/debug/hookhost" ]; then
    cargo build --quiet -p hookhost --bin hookhost
fi

export HOOKHOST_GUEST_DIR="$CARGO_TARGET_DIR/wasm32-guests/components"
export HOOKHOST_WHEEL_DIR="$wheels"
export HOOKHOST_BIN="$CARGO_TARGET_DIR/debug/hookhost"
cd tests
"$venv/bin/python" -m pytest -q "$@"
