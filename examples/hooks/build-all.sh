#!/usr/bin/env bash
# build-all.sh - builds the echo hook in every language (python, javascript,
# c) with each folder's build.sh, and says where each component went.
#
# Usage: build-all.sh [OUT_DIR]
#   Without OUT_DIR each component goes to <lang>/build/<lang>-echo.wasm;
#   with it, to OUT_DIR/<lang>-echo.wasm (for example a plugins folder).
# A language whose build fails does not stop the others; the exit status is
# non-zero if any failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT_DIR="${1:-}"
if [ -n "$OUT_DIR" ]; then
    mkdir -p "$OUT_DIR"
    OUT_DIR="$(cd "$OUT_DIR" && pwd)"
fi

built=() failed=()
for lang in python javascript c; do
    out="${OUT_DIR:+$OUT_DIR/$lang-echo.wasm}"
    out="${out:-$HERE/$lang/build/$lang-echo.wasm}"
    printf '==> [%s] %s/build.sh %s\n' "$lang" "$lang" "$out" >&2
    if "$HERE/$lang/build.sh" "$out"; then
        built+=("$(printf '%-10s %s (%s bytes)' "$lang" "$out" "$(wc -c <"$out")")")
    else
        failed+=("$lang")
    fi
done

echo
echo "built:"
for line in "${built[@]}"; do echo "  $line"; done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]} (see the errors above)"
    exit 1
fi
