#!/usr/bin/env bash
# The first command a user runs: installs what is missing, builds mlarun, and runs the main job on the bundled
# DeepSeek-V2 (236B) config.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/install_deps.sh"
bash "$root/launch/build.sh"
build=${MLARUN_BUILD_DIR:-$root/build}
echo
echo "== mlarun info --config configs/config_236B.json"
"$build/launch/mlarun" info --config "$root/configs/config_236B.json"
echo
echo "== mlarun info --model tests/data/deepseek-v3-tiny"
"$build/launch/mlarun" info --model "$root/tests/data/deepseek-v3-tiny"
