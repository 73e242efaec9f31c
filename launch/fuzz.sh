#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz) with clang into ${MLARUN_FUZZ_BUILD_DIR:-build-fuzz} (ASAN+UBSAN,
# coverage on the runtime library; only the fuzz targets and what they link), seeds a corpus from tests/data and
# configs/, and runs each fuzzer for SECONDS (default 60). Exits non-zero when any fuzzer finds a crash, a leak or
# a broken invariant; the failing inputs are kept in the build dir (crash-*, leak-*, timeout-*, oom-*).
#   launch/fuzz.sh [SECONDS] [FUZZER...]      e.g. launch/fuzz.sh 20   or   launch/fuzz.sh 300 fuzz_config
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-60}
shift || true
fuzzers=("$@")
((${#fuzzers[@]})) || fuzzers=(fuzz_safetensors fuzz_json fuzz_config fuzz_requests)
build=${MLARUN_FUZZ_BUILD_DIR:-$root/build-fuzz}
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

generator=()
command -v ninja >/dev/null && [[ ! -f "$build/CMakeCache.txt" ]] && generator=(-G Ninja)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S "$root" -B "$build" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMLARUN_CUDA=OFF -DMLARUN_FUZZ=ON -DMLARUN_SANITIZE=address,undefined >/dev/null
cmake --build "$build" -j "$(nproc)" --target mlarun_fuzzers

# Seed corpus: small valid safetensors files of each dtype, the fixtures' headers (data cut off), the sharded
# index, every config in JSON and YAML, a few request lines.
seeds=$build/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds"/{safetensors,json,config,requests}
le64() { local n=$1; printf "$(printf '\\x%02x' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)) 0 0 0 0)"; }
st_seed() {  # st_seed OUT HEADER DATA_BYTES
  { le64 ${#2}; printf '%s' "$2"; head -c "$3" /dev/urandom; } >"$1"
}
i=0
for dt in F32:4 BF16:2 F16:2 F8_E4M3:1 I32:4 I64:8 U8:1 BOOL:1; do
  name=${dt%%:*} size=${dt##*:}
  st_seed "$seeds/safetensors/$name.st" \
    "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"$name\",\"shape\":[2,3],\"offsets\":[0,$((6 * size))]},\"b\":{\"dtype\":\"$name\",\"shape\":[3],\"offsets\":[$((6 * size)),$((9 * size))]}}" \
    $((9 * size))
done
st_seed "$seeds/safetensors/empty.st" '{}' 0
st_seed "$seeds/safetensors/scalar.st" '{"s":{"dtype":"F32","shape":[],"offsets":[0,4]},"z":{"dtype":"F32","shape":[0,5],"offsets":[4,4]}}' 4
while IFS= read -r -d '' f; do  # the fixtures' headers: real names and shapes, the data cut off
  n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
  ((n < 65536)) && head -c $((8 + n)) "$f" >"$seeds/safetensors/header-$i.st"
  i=$((i + 1))
done < <(find "$root/tests/data" -name '*.safetensors' -print0 | sort -z | head -z -n 6)
cp "$root/tests/data/deepseek-v3-tiny/model.safetensors.index.json" "$seeds/safetensors/index.json"
i=0
while IFS= read -r -d '' f; do
  cp "$f" "$seeds/config/$((i)).${f##*.}"
  [[ $f == *.json ]] && cp "$f" "$seeds/json/$((i)).json"
  i=$((i + 1))
done < <(find "$root/configs" "$root/tests/data" \( -name '*.json' -o -name '*.yaml' \) -print0 | sort -z)
printf '%s\n' '{"a": [1, 2.5e-3, -0.0, "x\u00e9", true, null], "b": {"c": 18446744073709551615}}' >"$seeds/json/mixed.json"
printf '%s\n' '{"prompt_ids": [5, 17, 42], "max_tokens": 16}' >"$seeds/requests/one.jsonl"
printf '%s\n' '{"prompt_ids": [1], "temperature": 0.7, "top_p": 0.9, "top_k": 50, "seed": 1, "stop_token_ids": [2]}' \
  '' '{"prompt_ids": [3, 4], "ignore_eos": true, "id": 7}' '{"prompt_ids": []}' 'not json' >"$seeds/requests/mixed.jsonl"

# Each fuzzer grows its own corpus (kept between runs) from the seeds; artifacts land in $build/fuzz-artifacts.
failed=()
for fz in "${fuzzers[@]}"; do
  case $fz in
    fuzz_safetensors) seed_dir=safetensors ;; fuzz_json) seed_dir=json ;;
    fuzz_config) seed_dir=config ;; fuzz_requests) seed_dir=requests ;;
    *) echo "fuzz.sh: unknown fuzzer $fz" >&2; exit 2 ;;
  esac
  corpus=$build/fuzz-corpus/$fz
  artifacts=$build/fuzz-artifacts/$fz/
  mkdir -p "$corpus" "$artifacts"
  log=$build/fuzz-artifacts/$fz.log
  echo "fuzz.sh: $fz for ${seconds}s (log $log)"
  start=$SECONDS
  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$build/tests/fuzz/$fz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" "$seeds/$seed_dir" >"$log" 2>&1; then
    echo "fuzz.sh: $fz ok after $((SECONDS - start))s: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs, $(find "$corpus" -type f | wc -l) corpus files"
  else
    echo "fuzz.sh: $fz FAILED after $((SECONDS - start))s; inputs in $artifacts; the report:" >&2
    grep -E -A25 'ERROR: |FUZZ_CHECK|SUMMARY|deadly signal|uncaught' "$log" | head -60 >&2 || tail -40 "$log" >&2
    failed+=("$fz")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: findings in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no findings (${#fuzzers[@]} fuzzers, ${seconds}s each)"
