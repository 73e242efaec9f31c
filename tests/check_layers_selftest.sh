#!/usr/bin/env bash
# The layer check must fail on an upward include and pass on a downward one. Builds a two-file tree in a temp
# folder and runs check_layers.sh (its path is the first argument) on it.
set -uo pipefail
check=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/runtime" "$tmp/model"
echo '#include "runtime/tensor.h"' > "$tmp/model/ok.cpp"
if ! bash "$check" "$tmp" >/dev/null; then echo "FAIL: a downward include was refused"; exit 1; fi
echo '#include "model/deepseek_model.h"' > "$tmp/runtime/tensor.h"
out=$(bash "$check" "$tmp" 2>&1) && { echo "FAIL: an upward include passed"; exit 1; }
grep -q 'runtime/tensor.h:1: runtime/ includes model/' <<<"$out" || { echo "FAIL: message does not name the file: $out"; exit 1; }
echo "ok: upward include refused: $out"
