#!/usr/bin/env bash
# build.sh - builds the JavaScript echo hook (hook.js, canonical.js) into a
# WebAssembly component with @bytecodealliance/componentize-js (build.mjs).
#
# Usage: build.sh [OUTPUT.wasm]   (default: build/javascript-echo.wasm beside this script)
#
# Needs Node.js 20+ with npm. Installs the pinned npm packages from
# package-lock.json into node_modules/ beside this script when missing or
# out of date, and skips the build when the inputs have not changed.
set -euo pipefail

COMPONENTIZE_JS_VERSION=0.23.0   # must match package.json / package-lock.json
NODE_MIN_MAJOR=20

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WIT="${HOOKHOST_WIT:-$HERE/../../../wit}"
OUT="${1:-$HERE/build/javascript-echo.wasm}"

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ -d "$WIT" ] || die "WIT folder not found at $WIT (set HOOKHOST_WIT to the hookhost wit/ folder)"
WIT="$(cd "$WIT" && pwd)"
mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
STAMP="$OUT.stamp"

# A hash of everything the output depends on: the *.js/*.mjs sources, the
# WIT, the lock file (the exact npm packages) and this script.
inputs_hash() {
    (
        cd "$HERE"
        for f in *.js *.mjs wit/*.wit package-lock.json build.sh; do printf '%s ' "$f"; sha256sum <"$f"; done
        for f in "$WIT"/*.wit; do printf '%s ' "$(basename "$f")"; sha256sum <"$f"; done
    ) | sha256sum | cut -d' ' -f1
}
HASH="$(inputs_hash)"
if [ -f "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
    step "javascript-echo is up to date: $OUT"
    exit 0
fi

# --- toolchain -------------------------------------------------------------
npm_hint="cd $HERE && npm install --no-save   (installs @bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION from the npm registry)"

{ command -v node && command -v npm; } >/dev/null ||
    die "node and npm not found. Install Node.js $NODE_MIN_MAJOR+ with npm (Debian: apt-get install nodejs npm, or from nodejs.org), then run: $npm_hint"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge "$NODE_MIN_MAJOR" ] ||
    die "node $(node --version) is too old: componentize-js needs Node.js $NODE_MIN_MAJOR+"

# node_modules is (re)installed from the lock file when the lock file changed.
LOCK_HASH="$(sha256sum <"$HERE/package-lock.json" | cut -d' ' -f1)"
MODULES_STAMP="$HERE/node_modules/.hookhost-lock.sha256"
if [ ! -f "$MODULES_STAMP" ] || [ "$(cat "$MODULES_STAMP")" != "$LOCK_HASH" ]; then
    step "installing @bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION into $HERE/node_modules (npm install)"
    # The versions locked in package-lock.json, without rewriting it. (Not
    # `npm ci`: it rejects a lock file that lacks optional per-platform
    # packages the registry did not serve when the lock was made.)
    # Ask the registry first: an unreachable one would make npm retry every
    # package for many minutes.
    (cd "$HERE" && npm ping --fetch-retries=0 --fetch-timeout=20000 >/dev/null 2>&1) ||
        die "the npm registry ($(cd "$HERE" && npm config get registry 2>/dev/null)) cannot be reached, so @bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION cannot be installed. When it can: $npm_hint"
    (cd "$HERE" && npm install --no-save --no-audit --no-fund --loglevel=error \
        --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=10000) ||
        die "npm ci failed: could not install @bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION from the npm registry. Install it by hand: $npm_hint"
    echo "$LOCK_HASH" >"$MODULES_STAMP"
fi

# --- build -----------------------------------------------------------------
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The world is wit/echo.wit, with the hookhost:hooks package as its dependency.
mkdir -p "$TMP/wit/deps/hooks"
cp "$HERE"/wit/*.wit "$TMP/wit/"
cp "$WIT"/*.wit "$TMP/wit/deps/hooks/"

step "componentize-js $COMPONENTIZE_JS_VERSION: hook.js -> component"
(cd "$HERE" && node build.mjs "$HERE/hook.js" "$TMP/wit" echo "$TMP/hook.wasm")

# Copy next to the output, then rename: a host watching the folder never
# sees a half-written component.
cp "$TMP/hook.wasm" "$OUT.partial"
mv -f "$OUT.partial" "$OUT"
echo "$HASH" >"$STAMP"
step "wrote $OUT ($(wc -c <"$OUT") bytes)"
