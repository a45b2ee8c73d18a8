#!/usr/bin/env bash
# The tests: `scripts/test.sh [CARGO TEST ARGS]` runs `cargo test` (which
# builds every guest component first), then the Python package's tests
# (integrations/python/run-tests.sh, which finds the target dir cargo uses:
# its wheel is built from the same build, so only its native module is
# compiled again).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test "$@"
integrations/python/run-tests.sh
