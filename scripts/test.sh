#!/usr/bin/env bash
# The tests: `scripts/test.sh [CARGO TEST ARGS]` runs `cargo test` (which
# builds every guest component first), then the Python package's tests
# (integrations/python/run-tests.sh: its wheel is built from the same target
# dir and profile, so only its native module is compiled again).
set -euo pipefail
cd "$(dirname "$0")/.."

# The target dir cargo uses, so that the Python tests find this build.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    CARGO_TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
fi
export CARGO_TARGET_DIR

cargo test "$@"
integrations/python/run-tests.sh
