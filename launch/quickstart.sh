#!/usr/bin/env bash
# The first command a user runs: installs what is missing, builds mlarun, and runs the main job: what MLA's
# latent cache buys against MHA, GQA and MQA for DeepSeek-V2 (configs/config_236B.json), per token, per rank under
# tensor parallelism, and in an 80 GiB budget, measured on the real allocator; then a short generation on the
# bundled tiny model. The chart and JSON go to ${MLARUN_OUT_DIR:-<build>/out}.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/install_deps.sh"
bash "$root/launch/build.sh"
build=${MLARUN_BUILD_DIR:-$root/build}
out=${MLARUN_OUT_DIR:-$build/out}
mkdir -p "$out"
echo
echo "== mlarun bench cache --config configs/config_236B.json --tp 1,2,4,8,16"
"$build/launch/mlarun" bench cache --config "$root/configs/config_236B.json" --tp 1,2,4,8,16 \
  --json "$out/cache_236B.json" --chart "$out/cache_236B.svg"
echo
echo "== mlarun generate --model tests/data/deepseek-v2-tiny --prompt-ids 5,17,42 --max-new-tokens 8"
"$build/launch/mlarun" generate --model "$root/tests/data/deepseek-v2-tiny" --prompt-ids 5,17,42 --max-new-tokens 8
echo
echo "chart: $out/cache_236B.svg (open it in a browser)"
echo "JSON:  $out/cache_236B.json"
