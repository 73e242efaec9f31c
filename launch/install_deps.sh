#!/usr/bin/env bash
# Installs the Debian packages mlarun builds against, when any is missing. CUDA (nvcc, cuBLAS, NCCL) is not a
# Debian package: it is used when /usr/local/cuda or nvcc on PATH provides it, and the build goes CPU-only
# otherwise.
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config libyaml-cpp-dev libgtest-dev libgmock-dev nlohmann-json3-dev libpcre2-dev
          libcli11-dev libopenmpi-dev openmpi-bin libcpp-httplib-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "mlarun: installing missing packages: ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
