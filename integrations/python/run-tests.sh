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

# The oldest Python the wheel supports reads an event's strings another way
# (see `utf8` in src/lib.rs): the embedded host's tests again on 3.9, when
# the machine has it (on the PATH, or installed by pyenv).
python39=""
for candidate in python3.9 "$(pyenv root 2> /dev/null)"/versions/3.9*/bin/python3.9; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 9)' 2> /dev/null; then
        python39="$candidate"
        break
    fi
done
if [ -n "$python39" ]; then
    venv39="$CARGO_TARGET_DIR/python/venv39"
    if [ ! -x "$venv39/bin/python" ]; then
        "$python39" -m venv "$venv39"
    fi
    "$venv39/bin/pip" install --quiet --disable-pip-version-check "pytest>=7"
    "$venv39/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/hookhost-*.whl
    echo "the embedded host's tests on $("$venv39/bin/python" --version):"
    "$venv39/bin/python" -m pytest -q test_host.py
else
    echo "python3.9 not found: the embedded host's tests ran on $("$venv/bin/python" --version) only"
fi
