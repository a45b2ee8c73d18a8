#!/usr/bin/env bash
# regen-bindings.sh - regenerates the committed C bindings in bindings/ from
# wit/echo.wit and the repository's wit/ folder, with wit-bindgen-cli.
# Only needed when the world or the WIT changes; build.sh does not run it.
#
# Usage: regen-bindings.sh
#
# Installs wit-bindgen-cli (pinned, from crates.io; needs Rust's cargo) under
# ${HOOKHOST_TOOLCHAINS:-~/.cache/hookhost/toolchains}/cargo when missing.
set -euo pipefail

WIT_BINDGEN_VERSION=0.61.1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WIT="${HOOKHOST_WIT:-$HERE/../../../wit}"
TOOLCHAINS="${HOOKHOST_TOOLCHAINS:-$HOME/.cache/hookhost/toolchains}"
WIT_BINDGEN="$TOOLCHAINS/cargo/bin/wit-bindgen"

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ -d "$WIT" ] || die "WIT folder not found at $WIT (set HOOKHOST_WIT to the hookhost wit/ folder)"

if [ "$("$WIT_BINDGEN" --version 2>/dev/null)" != "wit-bindgen-cli $WIT_BINDGEN_VERSION" ]; then
    hint="cargo install --locked wit-bindgen-cli --version $WIT_BINDGEN_VERSION --no-default-features --features c --root $TOOLCHAINS/cargo"
    command -v cargo >/dev/null || die "wit-bindgen-cli $WIT_BINDGEN_VERSION is missing and cargo is not installed. Install Rust (https://rustup.rs), then: $hint"
    step "installing wit-bindgen-cli $WIT_BINDGEN_VERSION into $TOOLCHAINS/cargo (cargo install, a few minutes)"
    # A target dir of its own, so no other cargo build's target dir is touched.
    CARGO_TARGET_DIR="$(mktemp -d)"
    export CARGO_TARGET_DIR
    cargo install --quiet --locked wit-bindgen-cli --version "$WIT_BINDGEN_VERSION" \
        --no-default-features --features c --root "$TOOLCHAINS/cargo" ||
        die "could not install wit-bindgen-cli $WIT_BINDGEN_VERSION from crates.io. By hand: $hint"
    rm -rf "$CARGO_TARGET_DIR"
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/wit/deps/hooks"
cp "$HERE"/wit/*.wit "$TMP/wit/"
cp "$WIT"/*.wit "$TMP/wit/deps/hooks/"

step "wit-bindgen c $WIT_BINDGEN_VERSION: world echo -> $HERE/bindings/"
"$WIT_BINDGEN" c --world echo --out-dir "$TMP/out" "$TMP/wit" >/dev/null
rm -rf "$HERE/bindings"
mkdir -p "$HERE/bindings"
cp "$TMP"/out/* "$HERE/bindings/"
ls -l "$HERE/bindings" >&2
