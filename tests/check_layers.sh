#!/usr/bin/env bash
# Fails when a source file includes a header from a folder above its own. The layers, top to bottom:
#   launch -> bench -> engine -> model -> parallel -> kernels -> runtime
# A file may include its own folder and any folder below it. Usage: check_layers.sh [ROOT] (default: the repo).
set -euo pipefail
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
layers=(runtime kernels parallel model engine bench launch)
rank_of() { local i; for i in "${!layers[@]}"; do [[ ${layers[$i]} == "$1" ]] && { echo "$i"; return; }; done; echo -1; }

bad=0
for dir in "${layers[@]}"; do
  [[ -d $root/$dir ]] || continue
  own=$(rank_of "$dir")
  while IFS= read -r hit; do
    file=${hit%%:*}; rest=${hit#*:}; line=${rest%%:*}
    target=$(sed -E 's/.*#[[:space:]]*include[[:space:]]*"([^/"]+)\/.*/\1/' <<<"$rest")
    to=$(rank_of "$target")
    if (( to > own )); then
      echo "${file#$root/}:$line: $dir/ includes $target/ (a layer above it): $(sed -E 's/^[0-9]+://' <<<"$rest")"
      bad=1
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^/"]+/' "$root/$dir" \
             --include='*.h' --include='*.cpp' --include='*.cu' --include='*.cuh' || true)
done
if (( bad )); then
  echo "layer check failed: folders depend one way, ${layers[*]} (each may include only those before it)" >&2
  exit 1
fi
echo "layer check passed: ${layers[*]}"
