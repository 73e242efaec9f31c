#!/usr/bin/env bash
# Builds mlarun and runs the whole test suite (cpu, mpi and gpu labels; gpu tests skip without a GPU).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/install_deps.sh"
bash "$root/launch/build.sh"
build=${MLARUN_BUILD_DIR:-$root/build}
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
