#!/usr/bin/env bash
# One command for a GPU machine (H100/H200): build mlarun for sm_90a, run the gpu tests normally and under
# compute-sanitizer memcheck, check both fixtures on the GPU (mlarun score/generate --device cuda against the fp32
# references; tensor parallelism on one GPU through the mpi communicator; NCCL at world size 1), run the kernel
# workbenches, and time `mlarun bench decode` on config_236B cut to 2 layers at batch 64 and batch 1. Logs and
# JSON go to $OUT (./gpu_out when unset), at most 8 files, so the results are quick to copy off the machine; a
# table ends the run.
#
# What the GPU machine needs: an sm_90a GPU (H100/H200) and its driver; the CUDA toolkit (nvcc, cuBLAS,
# compute-sanitizer); CMake, ninja and a C++ compiler; OpenMPI (mpirun) and NCCL (in the CUDA toolkit or under
# /usr, see cmake/FindNCCL.cmake); the libraries launch/install_deps.sh installs (yaml-cpp, GoogleTest,
# nlohmann-json, CLI11); python3 to read the benchmark JSON. PyTorch and transformers are needed only for the
# reference checks (regenerating the fixtures, timing PyTorch beside our kernels), never by this script.
# A machine with internet access gets what it lacks from launch/install_deps.sh. A machine without internet
# usually lacks CLI11 (a header-only library): run `prepare-carry` on a machine that has it, then copy the
# git-ignored .carry/ folder along with the source tree; the build uses .carry/cli11 whenever it exists.
#
#   launch/gpu_check.sh                 every phase: build test memcheck parity tp bench
#   launch/gpu_check.sh build test      only those phases, in that order
#   launch/gpu_check.sh prepare-carry   on a machine WITH CLI11: copy its headers and CMake package into
#                                       .carry/cli11 for a GPU machine without it
#
# When each command on the GPU machine runs under a time limit (memcheck alone may take many minutes), run the
# phases in separate invocations on the same machine; later phases reuse the build directory:
#   launch/gpu_check.sh build test parity tp
#   launch/gpu_check.sh memcheck
#   launch/gpu_check.sh bench
# Environment: OUT (where logs go), MLARUN_BUILD_DIR (default build).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${MLARUN_BUILD_DIR:-build}
out=${OUT:-$root/gpu_out}
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
row() { printf '%-10s %-6s %s\n' "$1" "$2" "$3" | tee -a "$summary"; }

prepare_carry() {
  local dest=.carry/cli11
  [ -f /usr/include/CLI/CLI.hpp ] || { echo "no CLI11 in /usr/include on this machine" >&2; return 1; }
  rm -rf "$dest" && mkdir -p "$dest/include" "$dest/share/cmake"
  cp -r /usr/include/CLI "$dest/include/"
  cp -r /usr/share/cmake/CLI11 "$dest/share/cmake/" 2>/dev/null || cp -r /usr/lib/cmake/CLI11 "$dest/share/cmake/"
  echo "CLI11 copied to $dest ($(du -sh "$dest" | cut -f1)); copy .carry/ to the GPU machine with the source tree"
}

phase_build() {
  local extra=()
  if [ -f .carry/cli11/share/cmake/CLI11/CLI11Config.cmake ]; then
    extra+=("-DCLI11_DIR=$root/.carry/cli11/share/cmake/CLI11")
  elif [ ! -f /usr/include/CLI/CLI.hpp ]; then
    echo "CLI11 is missing: run 'launch/gpu_check.sh prepare-carry' where it exists, copy .carry/ here" | tee "$out/build.log"
    row build FAIL "CLI11 missing (see build.log)"
    return 1
  fi
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DMLARUN_CUDA=ON \
      "${extra[@]}" && cmake --build "$build" -j "$(nproc)"; } >"$out/build.log" 2>&1
  local rc=$?
  row build "$([ $rc = 0 ] && echo ok || echo FAIL)" "$(head -1 "$out/build.log"); log build.log"
  return $rc
}

phase_test() {
  (cd "$build" && ctest -L gpu --output-on-failure -j 4 --timeout 600) >"$out/ctest_gpu.log" 2>&1
  local rc=$?
  row test "$([ $rc = 0 ] && echo ok || echo FAIL)" \
    "$(grep -E 'tests passed|tests failed' "$out/ctest_gpu.log" | tail -1); skipped $(grep -c '\*\*\*Skipped' "$out/ctest_gpu.log")"
}

phase_memcheck() {
  local log="$out/memcheck.log" errors=0 failed=0
  : >"$log"
  for bin in "$build"/tests/test_gpu_*; do
    [ -x "$bin" ] || continue
    echo "== $(basename "$bin")" >>"$log"
    timeout 900 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 86 "$bin" --gtest_brief=1 \
      >>"$log" 2>&1 || failed=$((failed + 1))
  done
  errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | awk '{s += $3} END {print s + 0}')
  row memcheck "$([ "$errors" = 0 ] && [ $failed = 0 ] && echo ok || echo FAIL)" \
    "$errors errors reported, $failed binaries failed; log memcheck.log"
}

phase_parity() {
  local log="$out/parity.log"
  { "$build/tests/test_gpu_model" --gtest_brief=1; "$build/tests/test_gpu_cli" --gtest_brief=1; } >"$log" 2>&1
  local rc=$?
  row parity "$([ $rc = 0 ] && echo ok || echo FAIL)" "log parity.log"
  grep -E '^GPU (parity|generate)' "$log" | sed 's/^/           /' | tee -a "$summary"
}

phase_tp() {
  local log="$out/parity.log" m="$build/launch/mlarun" fixture=tests/data/deepseek-v2-tiny
  local args="generate --device cuda --model $fixture --prompt-ids 5,17,42,9,100,3,77,12 --max-new-tokens 10"
  args+=" --temperature 0 --ignore-eos --gpu-memory-utilization 0.3 --max-seq-len 256 --max-num-batched-tokens 512"
  local mpi="mpirun --allow-run-as-root --oversubscribe"
  local one two nccl
  one=$($m $args 2>>"$log" | tail -1)
  two=$($mpi -np 2 $m $args --comm mpi --tp 2 2>>"$log" | grep -E '^[0-9,]+$' | head -1)
  nccl=$($mpi -np 1 $m $args --comm nccl 2>>"$log" | grep -E '^[0-9,]+$' | head -1)
  echo "tp1: $one / tp2 (mpi, one GPU): $two / nccl world 1: $nccl" >>"$log"
  row tp "$([ -n "$one" ] && [ "$one" = "$two" ] && [ "$one" = "$nccl" ] && echo ok || echo FAIL)" \
    "tokens tp1 [$one] tp2-mpi [$two] nccl-1 [$nccl]"
}

phase_bench() {
  local log="$out/benches.log" m="$build/launch/mlarun"
  : >"$log"
  for wb in "$build"/kernels/bench*; do
    [ -x "$wb" ] || continue
    echo "== $(basename "$wb")" >>"$log"
    timeout 300 "$wb" >>"$log" 2>&1
    local wb_rc=$?
    row bench "$([ $wb_rc = 0 ] && echo ok || echo FAIL)" "workbench $(basename "$wb") (exit $wb_rc)"
  done
  for batch in 64 1; do
    echo "== bench decode batch $batch" >>"$log"
    timeout 600 "$m" bench decode --config configs/config_236B.json --layers 2 --batch "$batch" --seq-len 4096 \
      --device cuda --attention mla --iters 10 --warmup 2 --json "$out/bench_decode_b$batch.json" >>"$log" 2>&1
    local rc=$?
    local ms
    ms=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['records'][0]; print('%.2f ms/step, %.0f tok/s' % (1e3*r['median_latency'], r['tokens_per_second']))" \
      "$out/bench_decode_b$batch.json" 2>/dev/null || echo "no JSON")
    row bench "$([ $rc = 0 ] && echo ok || echo FAIL)" "decode 236B/2 layers, batch $batch, 4096 cached: $ms"
  done
}

phases=("$@")
[ ${#phases[@]} = 0 ] && phases=(build test memcheck parity tp bench)
if [ "${phases[0]}" = prepare-carry ]; then prepare_carry; exit $?; fi
echo "== mlarun gpu_check: ${phases[*]} (build dir $build, output $out)" | tee -a "$summary"
status=0
for p in "${phases[@]}"; do
  case $p in
    build) phase_build || { status=1; break; } ;;
    test | memcheck | parity | tp | bench) "phase_$p" ;;
    *) echo "unknown phase '$p' (build test memcheck parity tp bench prepare-carry)" >&2; exit 2 ;;
  esac
done
grep -q ' FAIL ' "$summary" && status=1
echo "== summary (also $summary)"
cat "$summary"
exit $status
