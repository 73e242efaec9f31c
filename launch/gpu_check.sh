#!/usr/bin/env bash
# The one-call check for a GPU machine (H100/H200, 16 cores): build what the check needs, validate (kernel
# tests, race repeats, model/CLI parity, TP over MPI on one GPU, NCCL at world size 1, compute-sanitizer), then
# time (PyTorch's anchors on this GPU, the two kernel workbenches beside them, Nsight Compute on each kernel and
# warp-stall sampling by SASS line on four, `mlarun bench decode` at batch 64 and 1, `mlarun bench prefill`, the MoE
# layouts). Run a packed binary by hand there with LD_LIBRARY_PATH=build/prebuilt-lib. Why one script with a hard
# deadline: a GPU session is short and metered, so the whole run must end within 7 minutes
# whatever hangs, validation must come before speed, and the results must be a handful of files that are quick
# to copy off.
#
#   launch/gpu_check.sh [--dry-run] [--budget S] [--skip REGEX] [--only REGEX]
#                                                  the check; DRY_RUN=1 = --dry-run, GPU_CHECK_BUDGET_S = --budget,
#                                                  GPU_CHECK_SKIP = --skip (e.g. 'check-' for no sanitizer),
#                                                  GPU_CHECK_ONLY = --only: only the steps matching it, besides
#                                                  env, prebuilt, configure and build (e.g. 'flash-pipe|bench-flash')
#   launch/gpu_check.sh prepare                    on a machine that has them: copy CLI11, yaml-cpp, GoogleTest,
#                                                  nlohmann-json, PCRE2 and cpp-httplib into the git-ignored .carry/ (alias:
#                                                  prepare-carry); copy .carry/ along with the source tree
#   launch/gpu_check.sh ab-base COMMIT             build COMMIT's bench_mla_decode into .carry/ab/: the earlier
#                                                  build the bench-mla-ab step times this one against
#   launch/gpu_check.sh pack                       build the check's targets here (sm_90a) and pack them, stripped, with
#                                                  the Debian libraries they load (yaml-cpp, PCRE2, cpp-httplib,
#                                                  brotli), into .carry/prebuilt.tar.xz:
#                                                  the check then starts from them instead of a cold build, and builds
#                                                  only if they do not load there (GPU_CHECK_PREBUILT=0: always build)
#
# Deadline: every step runs under `timeout` (its own cap, never past the deadline); a step that would start with
# less than it needs left is skipped and recorded SKIP. Default budget 400 s from the start, so the run ends
# within 7 minutes with the kill grace and the summary. --dry-run runs what needs no GPU for real (argument
# parsing, deadline logic, env.txt, configure and build) and prints the commands of the GPU steps (DRY).
# Output: at most 8 files in $OUT (./gpu_out when unset): summary.txt env.txt build.log kernels.log
# sanitizer.log model.log flash_prefill.json mla_decode.json. PyTorch's anchors (kernels/bench/torch_anchors.py:
# SDPA FA2/cuDNN, DeepSeek's reference MLA einsums and decode step, measured in this run) go to kernels.log (their
# table and whole JSON), to the workbench JSONs beside each shape, and to the bench-decode NOTE.
# Environment: OUT, MLARUN_BUILD_DIR (default build), GPU_CHECK_USE_CARRY=1 (take .carry/ before the system's
# copies), GPU_CHECK_PREBUILT=0 (build even when .carry/prebuilt.tar.xz is there), GPU_CHECK_MLA_ARGS (the MLA
# workbench's shape options, default the decode targets' shapes), GPU_CHECK_MLA_CAP_S (its cap, default 160) and
# GPU_CHECK_AB_ROWS (the rows bench-mla-ab times by this build and by .carry/ab/'s earlier workbench).
# The machine needs nvcc, cuBLAS, NCCL, OpenMPI, CMake and a C++ compiler; CLI11, yaml-cpp, GoogleTest and
# nlohmann-json come from the system or, where missing, from .carry/ (env.txt says which).
set -uo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
root=$(cd "$(dirname "$self")/.." && pwd)
cd "$root" || exit 2
export GC_BUILD=${MLARUN_BUILD_DIR:-build}
export GC_OUT=${OUT:-$root/gpu_out}
carry=$root/.carry/prefix
notes=$root/launch/gpu_check_notes.py  # the summary's NOTE lines, each read from a benchmark's output
arch=$(uname -m)-linux-gnu
mpi_flags="--oversubscribe"
[ "$(id -u)" = 0 ] && mpi_flags="--allow-run-as-root --oversubscribe"

# ---- dependencies: system, carried or missing ----------------------------------------------------------------
# The CMake package directory of $1 (CLI11, yaml-cpp, GTest, nlohmann_json) under prefix $2, if any.
pkg_dir() {
  local d
  for d in "$2/share/cmake/$1" "$2/lib/cmake/$1" "$2/lib/$arch/cmake/$1" "$2/lib64/cmake/$1" "$2/share/$1/cmake"; do
    compgen -G "$d/*onfig.cmake" >/dev/null && { echo "$d"; return 0; }
  done
  return 1
}
# "system <dir>", "carried <dir>" or "missing" for package $1.
dep_state() {
  local p d
  if [ "${GPU_CHECK_USE_CARRY:-0}" = 1 ]; then d=$(pkg_dir "$1" "$carry") && { echo "carried $d"; return; }; fi
  for p in /usr /usr/local ${CONDA_PREFIX:+"$CONDA_PREFIX"}; do
    d=$(pkg_dir "$1" "$p") && { echo "system $d"; return; }
  done
  if [ "$1" = GTest ] && [ -f /usr/include/gtest/gtest.h ]; then  # CMake's FindGTest needs no config file
    for d in /usr/lib /usr/lib64 "/usr/lib/$arch"; do
      compgen -G "$d/libgtest.*" >/dev/null && { echo "system $d (FindGTest)"; return; }
    done
  fi
  d=$(pkg_dir "$1" "$carry") && { echo "carried $d"; return; }
  echo missing
}
deps="CLI11 yaml-cpp GTest nlohmann_json"
# The check's binaries under the build folder; their file names are the CMake targets it builds.
binaries="tests/test_gpu_flash_prefill tests/test_gpu_mla_decode tests/test_gpu_ops tests/test_gpu_model"
binaries+=" tests/test_gpu_cli tests/test_gpu_nccl tests/test_gpu_device launch/mlarun kernels/bench_flash_prefill"
binaries+=" kernels/bench_mla_decode tests/test_gpu_wgmma_probe"
targets=$(for f in $binaries; do printf '%s ' "${f##*/}"; done)
prebuilt=${GC_PREBUILT:-$root/.carry/prebuilt.tar.xz}  # (GC_PREBUILT: another file, for tests/gpu_check_dry_run.sh)

# The folder holding libnccl.so.2 when the loader would not find it on its own (NCCL from PyTorch's wheel, say);
# empty when it is in the toolkit, the system or nowhere.
nccl_extra_dir() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib "/usr/lib/$arch" /usr/lib64 /usr/local/lib; do
    [ -e "$d/libnccl.so.2" ] && return 0
  done
  d=$(timeout 20 python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0] + "/lib")' 2>/dev/null)
  [ -n "$d" ] && [ -e "$d/libnccl.so.2" ] && echo "$d"
}

# ---- prepare: gather the libraries into .carry/prefix (a mirror of their /usr paths) -----------------------
prepare() {
  command -v dpkg >/dev/null || { echo "prepare needs dpkg (Debian/Ubuntu) to list the packages' files" >&2; return 1; }
  local rt lib pkgs=(libcli11-dev libyaml-cpp-dev libgtest-dev libgmock-dev nlohmann-json3-dev libpcre2-dev
                    libcpp-httplib-dev libbrotli-dev) p f n=0
  # The shared libraries behind the -dev packages (their runtime packages), found through the .so links.
  for lib in libyaml-cpp libpcre2-8 libcpp-httplib libbrotlicommon; do
    rt=$(dpkg -S "$(readlink -f /usr/lib/"$arch"/$lib.so 2>/dev/null)" 2>/dev/null | cut -d: -f1)
    [ -n "$rt" ] && pkgs+=("$rt")
  done
  rm -rf "$carry" && mkdir -p "$carry"
  for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || { echo "prepare: $p is not installed here (apt-get install $p)" >&2; return 1; }
    while read -r f; do
      case $f in /usr/share/doc/* | /usr/share/lintian/* | /usr/share/man/* | /usr/src/*) continue ;; esac
      if [ -f "$f" ] || [ -L "$f" ]; then
        mkdir -p "$carry/$(dirname "${f#/usr/}")" && cp -a "$f" "$carry/${f#/usr/}" && n=$((n + 1))
      fi
    done < <(dpkg -L "$p" | grep '^/usr/')
  done
  echo "prepare: $n files of ${pkgs[*]} in .carry/prefix ($(du -sh "$carry" | cut -f1)); copy .carry/ with the tree"
  for p in $deps; do echo "  $p: $(pkg_dir "$p" "$carry" || echo 'NOT FOUND')"; done
}

# ---- pack: the check's binaries built here, for a GPU machine whose cold build would eat its budget -----------
# The binaries keep this tree's absolute path for the test data (MLARUN_SOURCE_DIR): the check links that path to
# its own tree there when the path is free.
# A digest of the sources the binaries are built from (paths and contents of the C++/CUDA/CMake files), the same
# with or without git: pack records it, and the check takes a packed build only where the tree still has it.
source_digest() {
  (cd "$root" && find CMakeLists.txt cmake kernels engine model parallel runtime launch bench tests -type f \
    \( -name '*.cu' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' -o -name 'CMakeLists.txt' \
    -o -name '*.cmake' \) 2>/dev/null | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -c1-16)
}

pack() {
  local b=${MLARUN_BUILD_DIR:-build} t lib f
  grep -q 'CMAKE_CUDA_ARCHITECTURES[^=]*=90a' "$b/CMakeCache.txt" 2>/dev/null ||
    { echo "pack: $b is not configured for sm_90a (-DCMAKE_CUDA_ARCHITECTURES=90a -DMLARUN_CUDA=ON)" >&2; return 1; }
  cmake --build "$b" -j "$(nproc)" --target $targets || return 1
  t=$(mktemp -d) && mkdir -p "$t/pb/lib"
  for f in $binaries; do
    mkdir -p "$t/pb/$(dirname "$f")" && strip -o "$t/pb/$f" "$b/$f" || return 1
  done
  # The libraries of this system that a GPU machine may lack (yaml-cpp's soname is per minor version); MPI, NCCL,
  # CUDA, libc and OpenSSL come from that machine's own copies.
  ldd "$t"/pb/*/* | awk '$1 ~ /^lib(yaml-cpp|pcre2-8|cpp-httplib|brotli(common|dec|enc))\.so/ {print $3}' | sort -u |
    while read -r f; do cp -L "$f" "$t/pb/lib/"; done
  { echo "source: $root"
    echo "commit: $(git rev-parse --short HEAD) $(git status --porcelain -uno | wc -l) changed files"
    echo "sources: $(source_digest)"
    echo "packed: $(date -u +%FT%TZ) on $(hostname)"; } >"$t/pb/STAMP"
  mkdir -p "$root/.carry" && tar -C "$t/pb" -cf - . | xz -9 -T0 >"$prebuilt" && rm -rf "$t" || return 1
  echo "pack: $(du -h "$prebuilt" | cut -f1) in .carry/prebuilt.tar.xz ($(git rev-parse --short HEAD)); carry .carry/"
}

# ---- ab-base: an earlier commit's MLA workbench, for the bench-mla-ab step -------------------------------------
# Builds bench_mla_decode at COMMIT (a git worktree in a temporary folder, sm_90a, Release) and puts it, stripped,
# in .carry/ab/ as bench_mla_decode.<short commit>, replacing any earlier one (the step takes the first it finds).
ab_base() {
  local rev=${1:?usage: launch/gpu_check.sh ab-base COMMIT} short t gen=()
  short=$(git -C "$root" rev-parse --short "$rev^{commit}") || return 1
  t=$(mktemp -d) && git -C "$root" worktree add --detach "$t/src" "$short" >/dev/null || return 1
  command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S "$t/src" -B "$t/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DMLARUN_CUDA=ON >"$t/configure.log" 2>&1 || { tail -20 "$t/configure.log"; return 1; }
  cmake --build "$t/build" -j "$(nproc)" --target bench_mla_decode || return 1
  mkdir -p "$root/.carry/ab" && rm -f "$root"/.carry/ab/bench_mla_decode.* &&
    strip -o "$root/.carry/ab/bench_mla_decode.$short" "$t/build/kernels/bench_mla_decode" || return 1
  git -C "$root" worktree remove --force "$t/src" && rm -rf "$t"
  echo "ab-base: .carry/ab/bench_mla_decode.$short ($(du -h "$root/.carry/ab/bench_mla_decode.$short" | cut -f1));" \
    "carry .carry/ and run the check with bench-mla-ab"
}

# ---- internal subcommands (each one step, run under timeout by the main script) ---------------------------
sub_env() {
  echo "date: $(date -u +%FT%TZ)  host: $(hostname)  cores: $(nproc)  mode: ${GC_MODE:-?}"
  echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1 | head -4)"
  local nvcc; nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  echo "nvcc: $("$nvcc" --version 2>&1 | grep -m1 -i release)"
  echo "cmake: $(cmake --version 2>&1 | head -1)  ninja: $(ninja --version 2>&1)  c++: $(c++ --version 2>&1 | head -1)"
  echo "mpirun: $(mpirun --version 2>&1 | head -1)"
  echo "compute-sanitizer: $( (compute-sanitizer --version || /usr/local/cuda/bin/compute-sanitizer --version) 2>&1 |
    grep -m1 -i version || echo 'not found')"
  echo "nccl: $( (ldconfig -p | grep -m1 libnccl.so; ls /usr/local/cuda/lib*/libnccl.so* 2>/dev/null | head -1) |
    tr -s ' \n' ' ')${GC_NCCL_DIR:+ + $GC_NCCL_DIR}"
  echo "mpi: $(ldconfig -p | grep -m1 libmpi.so | tr -s ' \n' ' ')"
  echo "python: $(timeout 20 python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 | tail -1)"
  local p; for p in $deps; do echo "dep $p: $(dep_state "$p")"; done
  [ -d "$root/.carry" ] && echo "carried: $(du -sh "$root/.carry" | cut -f1) in .carry/"
  echo "git: $(git -C "$root" rev-parse --short HEAD 2>/dev/null) $(git -C "$root" status --porcelain 2>/dev/null | wc -l) changed files"
}

# Unpack .carry/prebuilt.tar.xz into the build folder and check that every binary loads here (no missing library,
# `--version` and `--gtest_list_tests` answer); fails, leaving the build to cmake, where they do not.
sub_prebuilt() {
  local src f bad=0
  local packed now
  packed=$(tar -xJOf "$prebuilt" ./STAMP 2>/dev/null | awk '/^sources: / {print $2}') now=$(source_digest)
  if [ "$packed" != "$now" ]; then  # a pack of other sources would time and test other code
    echo "FAIL: .carry/prebuilt.tar.xz was packed from other sources (digest ${packed:-none}, this tree $now):" \
      "building instead; run launch/gpu_check.sh pack before copying .carry/"
    return 1
  fi
  mkdir -p "$GC_BUILD" && tar -C "$GC_BUILD" -xJf "$prebuilt" || return 1
  mkdir -p "$GC_BUILD/prebuilt-lib" && cp -a "$GC_BUILD"/lib/. "$GC_BUILD/prebuilt-lib/" && rm -rf "${GC_BUILD:?}/lib"
  cat "$GC_BUILD/STAMP"
  src=$(awk '/^source: / {print $2}' "$GC_BUILD/STAMP")
  if [ -n "$src" ] && [ "$src" != "$root" ]; then  # the test binaries read their data under the packing tree's path
    if [ ! -e "$src" ]; then
      mkdir -p "$(dirname "$src")" && ln -s "$root" "$src" && echo "linked $src -> $root"
    elif [ "$(cd "$src" && pwd -P)" != "$(pwd -P)" ]; then
      echo "FAIL: $src (the binaries' source path) exists here and is another folder"; return 1
    fi
  fi
  for f in $binaries; do
    if ldd "$GC_BUILD/$f" | grep 'not found'; then echo "FAIL: $f cannot load"; bad=1; fi
  done
  [ $bad = 0 ] || return 1
  "$GC_BUILD/launch/mlarun" --version && "$GC_BUILD/tests/test_gpu_device" --gtest_list_tests >/dev/null &&
    echo "NOTE: prebuilt binaries load ($(awk '/^commit: / {print $2}' "$GC_BUILD/STAMP"))"
}

sub_configure() {
  local flags=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DMLARUN_CUDA=ON) p s d
  [ -f "$GC_BUILD/CMakeCache.txt" ] || { command -v ninja >/dev/null && flags+=(-G Ninja); }
  command -v nvcc >/dev/null || flags+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  # PCRE2 and cpp-httplib are found through pkg-config: the carried .pc files where the system has none. Each is
  # asked of the system alone and the ones it lacks are copied into one folder put on the path after the loop
  # (adding the carried folder inside the loop made every later package look present, its .pc still naming /usr).
  # Each copy's headers folder holds that package's headers alone: .carry/prefix/include also holds the carried
  # nlohmann-json, which must not shadow a newer system copy (an H200 machine's cold build failed to link on the
  # two json versions' ABI namespaces).
  local pc_missing=$carry/pkgconfig-missing h inc
  rm -rf "$pc_missing"
  for p in libpcre2-8 cpp-httplib libbrotlicommon libbrotlidec libbrotlienc; do  # cpp-httplib's .pc needs brotli's
    if ! pkg-config --exists "$p" 2>/dev/null && [ -f "$carry/lib/$arch/pkgconfig/$p.pc" ]; then
      inc=$pc_missing/include/$p
      mkdir -p "$inc"
      case $p in libpcre2-8) h="pcre2.h pcre2posix.h" ;; cpp-httplib) h=httplib.h ;; *) h=brotli ;; esac
      for f in $h; do ln -sfn "$carry/include/$f" "$inc/$f"; done
      sed -e "s|^prefix=.*|prefix=$carry|" -e "s|^includedir=.*|includedir=$inc|" \
        "$carry/lib/$arch/pkgconfig/$p.pc" >"$pc_missing/$p.pc"
      echo "NOTE: $p from .carry"
    fi
  done
  [ -d "$pc_missing" ] && export PKG_CONFIG_PATH="$pc_missing${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  # NCCL only as PyTorch's wheel ships it (libnccl.so.2, no libnccl.so): a folder of links that FindNCCL accepts.
  if [ -n "${GC_NCCL_DIR:-}" ] && [ -f "$GC_NCCL_DIR/../include/nccl.h" ]; then
    d=/tmp/mlarun-nccl && mkdir -p "$d/lib" && ln -sfn "$(cd "$GC_NCCL_DIR/../include" && pwd)" "$d/include" &&
      ln -sf "$GC_NCCL_DIR/libnccl.so.2" "$d/lib/libnccl.so" && flags+=("-DNCCL_ROOT=$d") &&
      echo "NOTE: NCCL from $GC_NCCL_DIR"
  fi
  for p in $deps; do
    read -r s d _ <<<"$(dep_state "$p")"
    case $s in
      carried) flags+=("-D${p}_DIR=$d") && echo "NOTE: $p from .carry" ;;
      missing) echo "NOTE: $p missing (run 'launch/gpu_check.sh prepare' where it exists)" ;;
    esac
  done
  echo "cmake -S . -B $GC_BUILD ${flags[*]}"
  cmake -S . -B "$GC_BUILD" "${flags[@]}"
}

# Tokens of one greedy generate on the tiny fixture: alone, TP 2 over MPI on one GPU, NCCL at world size 1, and
# TP 2 with DCP 2 (bf16 and fp8 caches).
sub_tp() {
  local m=$GC_BUILD/launch/mlarun one two nccl
  # shellcheck disable=SC2054
  local args=(generate --device cuda --model tests/data/deepseek-v2-tiny --prompt-ids 5,17,42,9,100,3,77,12
              --max-new-tokens 10 --temperature 0 --ignore-eos --gpu-memory-utilization 0.3 --max-model-len 256
              --max-num-batched-tokens 512)
  one=$("$m" "${args[@]}" | grep -E '^[0-9,]+$' | tail -1)
  # shellcheck disable=SC2086
  two=$(mpirun $mpi_flags -np 2 "$m" "${args[@]}" --comm mpi --tensor-parallel-size 2 | grep -E '^[0-9,]+$' | tail -1)
  # shellcheck disable=SC2086
  nccl=$(mpirun $mpi_flags -np 1 "$m" "${args[@]}" --comm nccl | grep -E '^[0-9,]+$' | tail -1)
  # Decode context parallelism (docs/layouts.md §2.6): TP 2 / DCP 2 over MPI on this GPU, 4-token blocks so the
  # sequence's cache spans blocks on both ranks; bf16 against the single rank, fp8 against the single rank's fp8.
  local dcp_args=(--comm mpi --tensor-parallel-size 2 --decode-context-parallel-size 2 --block-size 4) dcp one8 dcp8
  # shellcheck disable=SC2086
  dcp=$(mpirun $mpi_flags -np 2 "$m" "${args[@]}" "${dcp_args[@]}" | grep -E '^[0-9,]+$' | tail -1)
  one8=$("$m" "${args[@]}" --kv-cache-dtype fp8 | grep -E '^[0-9,]+$' | tail -1)
  # shellcheck disable=SC2086
  dcp8=$(mpirun $mpi_flags -np 2 "$m" "${args[@]}" "${dcp_args[@]}" --kv-cache-dtype fp8 | grep -E '^[0-9,]+$' |
    tail -1)
  echo "NOTE: tp1 [$one] tp2-mpi [$two] nccl-1 [$nccl] tp2-dcp2 [$dcp]; fp8: tp1 [$one8] tp2-dcp2 [$dcp8]"
  [ -n "$one" ] && [ "$one" = "$two" ] && [ "$one" = "$nccl" ] && [ "$one" = "$dcp" ] && [ -n "$one8" ] &&
    [ "$one8" = "$dcp8" ]
}

# `bench decode` on config_236B cut to 2 layers, batch 64 and 1 over 4096 cached tokens (the decode-step targets),
# then batch 64 with the 32-row kernel, then DeepSeek's step in torch from the anchors beside it.
sub_bench_decode() {
  local j rc=0 b
  for b in 64 1; do
    j=$GC_TMP/bench_decode_b$b.json
    "$GC_BUILD/launch/mlarun" bench decode --config configs/config_236B.json --layers 2 --batch $b --seq-len 4096 \
      --device cuda --attention mla --iters 10 --warmup 2 --json "$j" || { rc=1; continue; }
    cat "$j"
    python3 "$notes" decode "$j" "236B/2 layers, batch $b, 4096 cached"
  done
  # Batch 64 again with the 32-row tensor-core kernel, the default before AttendKernel::Auto
  # (MLARUN_MLA_DECODE_KERNEL; the workbench compares every kernel at the kernel level).
  local k
  for k in mma; do
    j=$GC_TMP/bench_decode_b64_$k.json
    MLARUN_MLA_DECODE_KERNEL=$k "$GC_BUILD/launch/mlarun" bench decode --config configs/config_236B.json \
      --layers 2 --batch 64 --seq-len 4096 --device cuda --attention mla --iters 10 --warmup 2 --json "$j" ||
      { rc=1; continue; }
    python3 "$notes" decode "$j" "236B/2 layers, batch 64, 4096 cached, attend kernel $k"
  done
  # The same step in torch, DeepSeek's inference/model.py re-implemented (the torch-anchors step, this GPU).
  j=$GC_TMP/bench_decode_b64.json
  [ -s "$j" ] || j=""
  [ -s "${GC_TA_STEP:-}" ] && python3 "$notes" torch-step "$GC_TA_STEP" "$j"
  return $rc
}
# config_16B at full depth (27 layers, random weights, ~31 GB in bf16) decoding over 4096 cached tokens at batch 1,
# 16 and 64: tokens/s beside the step's memory floor. Last, as it needs the most time (a model build per batch).
sub_bench_decode_16b() {
  local j rc=0 b
  for b in 1 16 64; do
    j=$GC_TMP/bench_16b_b$b.json
    "$GC_BUILD/launch/mlarun" bench decode --config configs/config_16B.json --layers 27 --batch $b --seq-len 4096 \
      --device cuda --attention mla --iters 10 --warmup 2 --no-time-split --json "$j" || { rc=1; continue; }
    python3 "$notes" decode "$j" "16B/27 layers, batch $b, 4096 cached"
  done
  return $rc
}
# The routed experts' two layouts (model/mlp.h MoeLayout) on one decode step of config_16B's MoE (64 experts,
# top 6): compact (per-expert GEMMs sized by a host copy) against capacity (one batched GEMM per projection, no
# host copy: the default up to 128 tokens on CUDA; faster at both batches on an H200), at batch 8 and 64.
sub_bench_moe_layouts() {
  local rc=0 b cap j
  for b in 8 64; do
    for cap in 0 -1; do
      j=$GC_TMP/bench_moe_b${b}_c${cap}.json
      "$GC_BUILD/launch/mlarun" bench decode --config configs/config_16B.json --layers 2 --batch $b --seq-len 1024 \
        --device cuda --attention mla --iters 10 --warmup 2 --moe-capacity-max-tokens $cap --json "$j" || rc=1
    done
  done
  python3 "$notes" moe-layouts "$GC_TMP"
  return $rc
}
# MLA's naive vs absorbed path for prefill chunks over a 4096-token prefix (docs/model.md §2.6): config_16B has
# 16 heads of DeepSeek's dims, the TP 8 shape of V2/V3; the crossing it measures is what --mla-absorbed-max-tokens
# auto should be on this GPU (128: an H200 measured every chunk of 2..128 faster absorbed after 1024 and 4096
# cached, docs/model.md §2.6).
sub_bench_prefill() {
  local j=$GC_TMP/bench_prefill.json rc k
  "$GC_BUILD/launch/mlarun" bench prefill --config configs/config_16B.json --layers 1 --device cuda \
    --prefix-lens 1024,4096 --chunk-lens 2,4,8,16,32,64,128,192,256 --batch 8 --iters 5 --warmup 2 --json "$j"
  rc=$?
  [ $rc = 0 ] && cat "$j"
  # A 2048-token chunk over a 65536-token cached prefix on the naive path (the prefix up-projected in pieces of
  # --prefill-context-piece-tokens, merged by log-sum-exp), with each flash kernel: its attention rate by
  # FlashAttention's count, against bench-flash's uniform 192/128 rate in kernels.log (the target: >= 60%).
  local kernels="auto mma wgmma wgmma-ws wgmma-pipelined wgmma-pingpong wgmma-persistent wgmma-persistent-pingpong"
  [ "${GC_PIPE_HUNG:-0}" = 1 ] && kernels="mma wgmma wgmma-ws"  # the pipelined kernel hung smoke-flash-pipe
  for k in $kernels; do
    j=$GC_TMP/bench_prefill_64k_$k.json
    MLARUN_FLASH_PREFILL_KERNEL=$k "$GC_BUILD/launch/mlarun" bench prefill --config configs/config_16B.json \
      --layers 1 --device cuda --prefix-lens 65536 --chunk-lens 2048 --batch 1 --iters 3 --warmup 1 --json "$j" ||
      { rc=1; continue; }
    python3 "$notes" prefill "$j" "$k"
  done
  return $rc
}
# Where the naive path's time goes for a 2048-token chunk over a 65,536-token cached prefix (the 64k prefill target:
# 0.49 of the uniform kernel's rate against >= 0.60): every kernel of one `bench prefill` run timed by Nsight Compute
# (one metric, the GPU duration) and summed per kernel name. The run's setup (random weights, the cache fill) and
# its absorbed step are in the list too, under their own kernels' names.
sub_ncu_prefill() {
  local rep=$GC_TMP/ncu_prefill
  "${GC_NCU:?}" --clock-control none --metrics gpu__time_duration.sum -f -o "$rep" "$GC_BUILD/launch/mlarun" bench \
    prefill --config configs/config_16B.json --layers 1 --device cuda --prefix-lens 65536 --chunk-lens 2048 \
    --batch 1 --iters 1 --warmup 0 || return 1
  "$GC_NCU" --import "$rep.ncu-rep" --csv --page raw --metrics gpu__time_duration.sum >"$rep.csv" || return 1
  python3 "$notes" ncu-kernels "$rep.csv"
}


case ${1:-} in
  __env) sub_env; exit ;;
  __configure) sub_configure; exit ;;
  __tp) sub_tp; exit ;;
  __bench_decode) sub_bench_decode; exit ;;
  __bench_prefill) sub_bench_prefill; exit ;;
  __ncu_prefill) sub_ncu_prefill; exit ;;
  __bench_moe_layouts) sub_bench_moe_layouts; exit ;;
  __bench_decode_16b) sub_bench_decode_16b; exit ;;
  __prebuilt) sub_prebuilt; exit ;;
  prepare | prepare-carry) prepare; exit ;;
  pack) pack; exit ;;
  ab-base) shift; ab_base "$@"; exit ;;
esac

# ---- arguments ---------------------------------------------------------------------------------------------
dry=${DRY_RUN:-0}
budget=${GPU_CHECK_BUDGET_S:-400}
skip=${GPU_CHECK_SKIP:-}                   # steps whose name matches this regex are recorded SKIP, not run
only=${GPU_CHECK_ONLY:-}                   # when set, the other steps are recorded SKIP (setup steps still run)
build_cap=${GPU_CHECK_BUILD_CAP_S:-270}    # the build's own limit (a cold 16-core build: 41 s on an H200 machine)
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry=1 ;;
    --budget) budget=${2:?--budget needs seconds}; shift ;;
    --budget=*) budget=${1#--budget=} ;;
    --skip) skip=${2:?--skip needs a regular expression}; shift ;;
    --only) only=${2:?--only needs a regular expression}; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$self"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (--dry-run, --budget S, --skip REGEX, --only REGEX, prepare, --help)" >&2
       exit 2 ;;
  esac
  shift
done
[[ $budget =~ ^[0-9]+$ && $build_cap =~ ^[0-9]+$ ]] ||
  { echo "gpu_check: budget '$budget' / build cap '$build_cap' is not a number of seconds" >&2; exit 2; }
[ "$dry" = 0 ] || dry=1
GC_MODE=full
[ $dry = 1 ] && GC_MODE="dry-run"
export GC_MODE

# ---- the step runner and the deadline ----------------------------------------------------------------------
out=$GC_OUT b=$GC_BUILD
mkdir -p "$out" || exit 2
for f in summary.txt env.txt build.log kernels.log sanitizer.log model.log flash_prefill.json mla_decode.json \
         torch_anchors.json; do  # torch_anchors.json: left by earlier versions of this script
  rm -f "${out:?}/$f"
done
GC_TMP=$(mktemp -d) && export GC_TMP
trap 'rm -rf "$GC_TMP"' EXIT
summary=$out/summary.txt
start=$(date +%s)
deadline=$((start + budget))
reserve=5  # kept back for the kill grace of the last step and the summary
n_ok=0 n_fail=0 n_skip=0 n_dry=0
printf 'mlarun gpu_check (%s): budget %ss, build dir %s, output %s\n%-24s %-7s %5s  %s\n' \
  "$GC_MODE" "$budget" "$b" "$out" step status secs note | tee "$summary"
record() {
  case $2 in ok) n_ok=$((n_ok + 1)) ;; SKIP) n_skip=$((n_skip + 1)) ;; DRY) n_dry=$((n_dry + 1)) ;; *) n_fail=$((n_fail + 1)) ;; esac
  printf '%-24s %-7s %5s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$summary"
}
# What a step's own part of its log says: gtest totals, sanitizer summaries, NOTE: lines.
digest() {
  awk '/^\[  PASSED  \] [0-9]+ test/ {p += $4} /^\[  FAILED  \] [0-9]+ test/ {f += $4}
       /^\[  SKIPPED \] [0-9]+ test/ {s += $4}
       /(ERROR|RACECHECK) SUMMARY: [0-9]+/ {for (i = 2; i < NF; ++i) if ($i == "SUMMARY:") e += $(i + 1); es = 1}
       /^NOTE: / {sub(/^NOTE: /, ""); n = n " " $0}
       END { o = ""; if (p + f + s > 0) o = p " passed, " f " failed, " s " skipped";
             if (es) o = o (o ? "; " : "") e " sanitizer errors/hazards"; if (n) o = o (o ? ";" : "") n; print o }'
}
# step NAME LOG NEED CAP GPU CMD: runs CMD (bash) under timeout min(CAP, time left); SKIP when less than NEED
# seconds are left; with GPU=1 in a dry run, only prints CMD. Returns the command's status (3: not run).
step() {
  local name=$1 log=$2 need=$3 cap=$4 gpu=$5 cmd=$6 left limit t0 rc off dt st note
  left=$((deadline - $(date +%s) - reserve))
  if [ -n "$skip" ] && [[ $name =~ $skip ]]; then
    echo "== [$name] skipped: --skip '$skip'" >>"$log"
    record "$name" SKIP 0 "--skip '$skip'"
    return 3
  fi
  if [ -n "$only" ] && ! [[ $name =~ ^(env|prebuilt|configure|build)$ || $name =~ $only ]]; then
    echo "== [$name] skipped: --only '$only'" >>"$log"
    record "$name" SKIP 0 "--only '$only'"
    return 3
  fi
  if ((left < need)); then
    echo "== [$name] skipped: ${left}s of the budget left, needs ${need}s" >>"$log"
    record "$name" SKIP 0 "budget: ${left}s left, needs ${need}s"
    return 3
  fi
  limit=$((cap < left ? cap : left))
  if [ "$gpu" = 1 ] && [ $dry = 1 ]; then
    echo "== [$name] would run (limit ${limit}s): $cmd" | tee -a "$log" >&2
    record "$name" DRY 0 "dry run: needs a GPU, not run"
    return 3
  fi
  echo "== [$name] (limit ${limit}s) $cmd" >>"$log"
  off=$(stat -c %s "$log")
  t0=$(date +%s)
  timeout -k 5 "$limit" bash -c "$cmd" >>"$log" 2>&1
  rc=$?
  dt=$(($(date +%s) - t0))
  note=$(tail -c +$((off + 1)) "$log" | digest)
  case $rc in 0) st=ok ;; 124 | 137) st=TIMEOUT ;; *) st=FAIL ;; esac
  [ $rc != 0 ] && note="${note:+$note; }exit $rc"
  record "$name" "$st" "$dt" "${note:+$note; }$(basename "$log")"
  return $rc
}
# need_bins NAME BIN...: SKIP the step NAME (returns 1) when the build failed or a binary it runs is missing
# (never run stale binaries of an earlier build).
built=1
need_bins() {
  local name=$1 x; shift
  [ $dry = 1 ] || [ $built = 1 ] || { record "$name" SKIP 0 "the build did not succeed"; return 1; }
  for x in "$@"; do
    [ $dry = 1 ] || [ -x "$b/$x" ] || { record "$name" SKIP 0 "not built: $x"; return 1; }
  done
}

# ---- the steps: environment and build ----------------------------------------------------------------------
GC_NCCL_DIR=$(nccl_extra_dir) && export GC_NCCL_DIR
case $b in /*) babs=$b ;; *) babs=$root/$b ;; esac
export LD_LIBRARY_PATH="$babs/prebuilt-lib${GC_NCCL_DIR:+:$GC_NCCL_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
step env "$out/env.txt" 3 30 0 "\"$self\" __env"
jobs=$(nproc)
use_prebuilt=0
if [ "${GPU_CHECK_PREBUILT:-1}" != 0 ] && [ -f "$prebuilt" ] && [ ! -f "$b/CMakeCache.txt" ]; then
  step prebuilt "$out/build.log" 10 60 0 "\"$self\" __prebuilt" && use_prebuilt=1
  [ $use_prebuilt = 1 ] || rm -rf "$babs/prebuilt-lib"
fi
if [ $use_prebuilt = 1 ]; then
  :
elif step configure "$out/build.log" 15 90 0 "\"$self\" __configure"; then
  step build "$out/build.log" 45 "$build_cap" 0 "cmake --build \"$b\" -j $jobs --target $targets" || built=0
else
  built=0
  record build SKIP 0 "configure did not succeed (build.log)"
fi
tests=$b/tests kb=$b/kernels
race_mla="--gtest_filter='*MlaDecodeSplits*:*ScheduleIsReused*:*TensorCoreRuns*'"
# The flash kernel's pipelined variant's case names: _pipe, _pingpong with turns, _persist and _persist_pp on a
# persistent grid; pipe_all adds its NaN tests (*/wgmma_pipelined, ..._pingpong, ..._persistent[_pingpong]).
pipe_cases='*_pipe:*_pingpong:*_persist:*_persist_pp'
pipe_all="$pipe_cases:*/wgmma_p*"
race_fa="--gtest_filter='*small_*-*_ws:$pipe_cases'"
# The Hopper flash kernel's cases under memcheck: the small and edge ones (all of its cases end in _wg).
memcheck_fa_wg="--gtest_filter='*small_*_wg:*zero_length_sequences_wg:*fewer_keys_than_queries_wg:*Nan*wgmma'"
# Its warp-specialized variant's (cases ending in _ws): alone in its process, then those under memcheck, racecheck
# and synccheck, so a fault there leaves the other flash kernels' results.
ws_fa="--gtest_filter='*_ws:*/wgmma_ws'" race_fa_ws="--gtest_filter='*small_*_ws'"
memcheck_fa_ws="--gtest_filter='*small_*_ws:*zero_length_sequences_ws:*fewer_keys_than_queries_ws:*Nan*wgmma_ws'"
# The same for its pipelined variant (pipe_cases).
pipe_fa="--gtest_filter='$pipe_all'"
race_fa_pipe="--gtest_filter='*small_*_pipe:*small_*_pingpong:*small_*_persist:*small_*_persist_pp'"
memcheck_fa_pipe="--gtest_filter='*small_*_pipe:*zero_length_sequences_pipe:*fewer_keys_than_queries_pipe"
memcheck_fa_pipe+=":*small_*_pingpong:*zero_length_sequences_pingpong:*small_*_persist*"
memcheck_fa_pipe+=":*zero_length_sequences_persist*:*fewer_keys_than_queries_persist*:*Nan*wgmma_p*'"
race_mla_small="--gtest_filter='*SanitizerSizedSplitsOnEveryKernel*'"  # racecheck needs minutes on race_mla's
# The fitted and wgmma decode kernels' 166 small cases: repeated with race_mla, left out of memcheck and initcheck
# (minutes there; SanitizerSized covers both kernels, the fitted one at its 16, 32 and 64-row tiles, under every
# tool).
repeat_mla="--gtest_filter='*MlaDecodeSplits*:*ScheduleIsReused*:*TensorCoreRuns*:*MlaDecodeFitted*:*Wgmma*"
repeat_mla+="-*WarpSpecialized*:*Seesaw*'"
not_fitted="--gtest_filter='-*MlaDecodeFitted*:*MlaDecodeWgmma*:*WarpSpecialized*:*Seesaw*'"
first_fa="--gtest_filter='-*_wg:*/wgmma:*_ws:*/wgmma_ws:$pipe_all'"
wgmma_fa="--gtest_filter='*_wg:*/wgmma'"
stage_a_fa="--gtest_filter='-*_wg:*_ws:*/wgmma_ws:$pipe_all'"
first_mla="--gtest_filter='-*Fitted*:*Wgmma*:*EveryKernel*:*WarpSpecialized*:*Seesaw*'"
fitted_mla="--gtest_filter='*MlaDecodeFitted*:*FittedKernel*'"
wgmma_mla="--gtest_filter='*MlaDecodeWgmma*:*FittedAndWgmma*:*EveryKernel*-*WarpSpecialized*:*Seesaw*'"
# The warp-specialized wgmma decode kernels (attend_wgmma_ws.cu, attend_wgmma_seesaw.cu; their tests carry the
# names): each alone in its process, then under memcheck, racecheck and synccheck at the sanitizer size, so a fault
# in one leaves the other kernels' results.
ws_mla="--gtest_filter='*WarpSpecialized*'" ws_mla_small="--gtest_filter='*SanitizerSizedSplitsOnWarpSpecialized*'"
ss_mla="--gtest_filter='*Seesaw*'" ss_mla_small="--gtest_filter='*SanitizerSizedSplitsOnSeesaw*'"

# ---- validation: kernel tests, model and CLI, TP and NCCL, sanitizers ---------------------------------------
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
memcheck_step="$sanitizer --error-exitcode 86 --tool memcheck"  # a kernel step's memcheck pass after its tests
# The wgmma layer first (seconds): descriptors, swizzle and fragment maps on the tensor cores, and TMA copies counted
# on an mbarrier, before any kernel that builds on them; memcheck on it right after, as its failures are the
# cheapest to read.
need_bins wgmma-probe tests/test_gpu_wgmma_probe &&
  step wgmma-probe "$out/kernels.log" 5 30 1 "$tests/test_gpu_wgmma_probe; r=\$?;
    $memcheck_step \
    $tests/test_gpu_wgmma_probe --gtest_brief=1 && exit \$r"
# The first kernels (stage A; SIMT and 32-row decode) with the shared cases, then each later kernel family in its
# own process: a kernel that faults poisons its CUDA context, and would otherwise fail every later test of its binary.
need_bins kernels tests/test_gpu_flash_prefill tests/test_gpu_mla_decode &&
  step kernels "$out/kernels.log" 20 100 1 "$tests/test_gpu_flash_prefill --gtest_brief=1 $first_fa; r=\$?;
    $tests/test_gpu_mla_decode --gtest_brief=1 $first_mla && exit \$r"
need_bins kernels-fitted tests/test_gpu_mla_decode &&
  step kernels-fitted "$out/kernels.log" 10 60 1 "$tests/test_gpu_mla_decode --gtest_brief=1 $fitted_mla"
need_bins kernels-wgmma tests/test_gpu_mla_decode tests/test_gpu_flash_prefill &&
  step kernels-wgmma "$out/kernels.log" 10 90 1 "$tests/test_gpu_mla_decode --gtest_brief=1 $wgmma_mla; r=\$?;
    $tests/test_gpu_flash_prefill --gtest_brief=1 $wgmma_fa && exit \$r"
need_bins kernels-wgmma-ws tests/test_gpu_mla_decode &&
  step kernels-wgmma-ws "$out/kernels.log" 10 60 1 "$tests/test_gpu_mla_decode --gtest_brief=1 $ws_mla; r=\$?;
    $memcheck_step \
    $tests/test_gpu_mla_decode --gtest_brief=1 $ws_mla_small && exit \$r"
need_bins kernels-wgmma-seesaw tests/test_gpu_mla_decode &&
  step kernels-wgmma-seesaw "$out/kernels.log" 10 60 1 "$tests/test_gpu_mla_decode --gtest_brief=1 $ss_mla; r=\$?;
    $memcheck_step \
    $tests/test_gpu_mla_decode --gtest_brief=1 $ss_mla_small && exit \$r"
need_bins kernels-flash-ws tests/test_gpu_flash_prefill &&
  step kernels-flash-ws "$out/kernels.log" 10 60 1 "$tests/test_gpu_flash_prefill --gtest_brief=1 $ws_fa; r=\$?;
    $memcheck_step \
    $tests/test_gpu_flash_prefill --gtest_brief=1 $memcheck_fa_ws && exit \$r"
# A never-run kernel's likeliest fault is a hang (a barrier's parity off by one): one small case of each pipelined
# variant first, 30 s at most, and when that hangs every later step of these kernels is left out (SKIP), the
# workbench and bench-prefill time the others, so a hang costs 30 s and not each step's cap.
pipe_hung=0
smoke_fa_pipe="--gtest_filter='*/gqa_causal_128_128_bf16_pipe:*/gqa_causal_128_128_bf16_pingpong"
smoke_fa_pipe+=":*/gqa_causal_128_128_bf16_persist:*/gqa_causal_128_128_bf16_persist_pp'"
need_bins smoke-flash-pipe tests/test_gpu_flash_prefill &&
  { step smoke-flash-pipe "$out/kernels.log" 10 30 1 "$tests/test_gpu_flash_prefill $smoke_fa_pipe"
    case $? in 124 | 137) pipe_hung=1 ;; esac; }
# pipe_ok NAME: whether a step of these kernels may run; when the smoke step hung, NAME is recorded SKIP instead.
pipe_ok() {
  [ $pipe_hung = 0 ] || { record "$1" SKIP 0 "smoke-flash-pipe hung"; return 1; }
}
need_bins kernels-flash-pipe tests/test_gpu_flash_prefill && pipe_ok kernels-flash-pipe &&
  step kernels-flash-pipe "$out/kernels.log" 10 150 1 "$tests/test_gpu_flash_prefill --gtest_brief=1 $pipe_fa; r=\$?;
    $memcheck_step \
    $tests/test_gpu_flash_prefill --gtest_brief=1 $memcheck_fa_pipe && exit \$r"
need_bins kernels-repeat3 tests/test_gpu_flash_prefill tests/test_gpu_mla_decode &&
  step kernels-repeat3 "$out/kernels.log" 10 50 1 "$tests/test_gpu_mla_decode --gtest_brief=1 --gtest_repeat=3 \
    $repeat_mla;
    r=\$?; $tests/test_gpu_flash_prefill --gtest_brief=1 --gtest_repeat=3 $race_fa && exit \$r"
for t in ops device model cli nccl; do
  # Not brief: a crash's log then ends at the test that crashed.
  need_bins "model-$t" "tests/test_gpu_$t" && step "model-$t" "$out/model.log" 8 90 1 "$tests/test_gpu_$t"
done
need_bins tp-nccl launch/mlarun && step tp-nccl "$out/model.log" 15 120 1 "\"$self\" __tp"

san="$sanitizer --error-exitcode 86 --print-limit 20 --tool"
fa=$tests/test_gpu_flash_prefill mla=$tests/test_gpu_mla_decode
need_bins sanitizer tests/test_gpu_flash_prefill tests/test_gpu_mla_decode && {
  step memcheck-mla "$out/sanitizer.log" 20 75 1 "$san memcheck $mla --gtest_brief=1 $not_fitted"
  step memcheck-flash "$out/sanitizer.log" 20 75 1 \
    "$san memcheck $fa --gtest_brief=1 $stage_a_fa"
  step memcheck-flash-wgmma "$out/sanitizer.log" 10 45 1 "$san memcheck $fa --gtest_brief=1 $memcheck_fa_wg"
  step racecheck-mla "$out/sanitizer.log" 15 60 1 \
    "$san racecheck --racecheck-report all $mla --gtest_brief=1 $race_mla_small"
  step racecheck-flash "$out/sanitizer.log" 15 60 1 "$san racecheck --racecheck-report all $fa --gtest_brief=1 $race_fa"
  step synccheck-mla-flash "$out/sanitizer.log" 10 45 1 "$san synccheck $mla --gtest_brief=1 $race_mla; r=\$?;
    $san synccheck $fa --gtest_brief=1 $race_fa && exit \$r"
  step race-sync-mla-ws "$out/sanitizer.log" 10 45 1 \
    "$san racecheck --racecheck-report all $mla --gtest_brief=1 $ws_mla_small; r=\$?;
    $san synccheck $mla --gtest_brief=1 $ws_mla_small && exit \$r"
  step race-sync-flash-ws "$out/sanitizer.log" 10 45 1 \
    "$san racecheck --racecheck-report all $fa --gtest_brief=1 $race_fa_ws; r=\$?;
    $san synccheck $fa --gtest_brief=1 $race_fa_ws && exit \$r"
  pipe_ok race-sync-flash-pipe && step race-sync-flash-pipe "$out/sanitizer.log" 10 120 1 \
    "$san racecheck --racecheck-report all $fa --gtest_brief=1 $race_fa_pipe; r=\$?;
    $san synccheck $fa --gtest_brief=1 $race_fa_pipe && exit \$r"
  step race-sync-mla-seesaw "$out/sanitizer.log" 10 45 1 \
    "$san racecheck --racecheck-report all $mla --gtest_brief=1 $ss_mla_small; r=\$?;
    $san synccheck $mla --gtest_brief=1 $ss_mla_small && exit \$r"
  step initcheck-mla "$out/sanitizer.log" 15 60 1 "$san initcheck $mla --gtest_brief=1 $not_fitted"
}

# ---- speed: torch anchors, workbenches (each validates before it times), one bench decode --------------------
# PyTorch's numbers first, on this GPU in this run (kernels/bench/torch_anchors.py, self-checked before timing):
# SDPA FA2/cuDNN on bench-flash's shapes, DeepSeek's MLA einsums on bench-mla's, DeepSeek's decode step beside
# bench-decode. It gets at most 45 s and starts only when 60 s would still be left for the three timings after it
# (it typically takes ~20 s); --budget-s stops it starting new measurements 15 s before its cap.
ta_flash=$GC_TMP/torch_flash.json ta_mla=$GC_TMP/torch_mla.json
export GC_TA_STEP=$GC_TMP/torch_decode_step.json
ta_keep=60
ta_cap=$((deadline - $(date +%s) - reserve - ta_keep))
((ta_cap > 45)) && ta_cap=45
ta_dry=$n_dry
if [ $dry = 1 ] || grep -q '^python: torch ' "$out/env.txt" 2>/dev/null ||
  timeout 30 python3 -c 'import torch' 2>/dev/null; then
  step torch-anchors "$out/kernels.log" $((ta_keep + 20)) "$ta_cap" 1 "python3 kernels/bench/torch_anchors.py \
    --device cuda --quick --budget-s $((ta_cap > 25 ? ta_cap - 15 : 10)) --flash-out \"$ta_flash\" \
    --mla-out \"$ta_mla\" --step-out \"$GC_TA_STEP\" --all-out \"$GC_TMP/torch_anchors.json\"; r=\$?;
    cat \"$GC_TMP/torch_anchors.json\"; exit \$r"
else
  record torch-anchors SKIP 0 "python3 cannot import torch: no anchors"
fi
ta_dry=$((n_dry > ta_dry))  # a dry run shows the options the anchors would add
fa_opt="" mla_opt=""
# The decode roofline's table: the SIMT and 32-row kernels at the TP 8 and 128-head shapes (the SIMT rows carry the
# torch anchor), the MTP shape, block sizes 16 and 256, the fp8 cache (~40 s on an H200); then the fitted kernel's
# rows, each printed with its speed against the 32-row kernel's twin.
mla_shapes="--only tp8_b128_s8192_h16,b64_s4096_h128,tp8_b128_s8192_h16_mma,b64_s4096_h128_mma"
mla_shapes+=",mtp2_b128_s8192_h128_mma,tp8_b128_s8192_h16_bs16_mma,tp8_b128_s8192_h16_bs256_mma"
mla_shapes+=",tp8_b128_s8192_h16_fp8_mma,tp8_b128_s8192_h16_fit,b64_s4096_h128_fit,mtp2_b128_s8192_h128_fit"
mla_shapes+=",tp8_b128_s8192_h16_bs16_fit,tp8_b128_s8192_h16_bs256_fit,tp8_b128_s8192_h16_fp8_fit"
# The quantized cache's codes widened in shared memory against read into registers (MlaDecodeParams::
# codes_in_registers, the default since these rows ran 1.21x at TP 8 and 1.04x at 128 heads on an H200).
mla_shapes+=",tp8_b128_s8192_h16_int8_fit,b64_s4096_h128_fp8_fit,tp8_b128_s8192_h16_fp8_fit_reg"
mla_shapes+=",tp8_b128_s8192_h16_int8_fit_reg,b64_s4096_h128_fp8_fit_reg"
mla_shapes+=",tp8_b128_s8192_h16_wg,b64_s4096_h128_wg"
mla_shapes+=",mtp2_b128_s8192_h128_wg,b64_s4096_h128_bs16_wg,b64_s4096_h128_bs256_wg,b64_s4096_h128_wgs"
mla_shapes+=",mtp2_b128_s8192_h128_wgs,tp8_b128_s8192_h16_wgs"
# The warp-specialized and seesaw wgmma kernels at 128 heads, each printed against its split twin above (on an H200,
# with the ring in half stages: 1.02-1.06x and 0.92x, mla_decode/NOTES.md; their MTP, TP 8 and block-size rows are
# left to GPU_CHECK_MLA_ARGS, which the 160 s of this step did not hold).
mla_shapes+=",b64_s4096_h128_wgws,b64_s4096_h128_wgss"
# Where AttendKernel::Auto switches kernels (32, 48 and 64 rows), each kernel side by side.
mla_shapes+=",tp8_mtp2_b128_s8192_h16_mma,tp8_mtp2_b128_s8192_h16_fit,tp8_mtp2_b128_s8192_h16_wgs"
mla_shapes+=",tp8_mtp3_b128_s8192_h16_fit,tp8_mtp3_b128_s8192_h16_wgs"
mla_shapes+=",tp2_b128_s8192_h64_mma,tp2_b128_s8192_h64_fit,tp2_b128_s8192_h64_wgs"
# (The L2-prefetch rows, `_pf2` / `_pf4`, are left to --only: 0.68-0.95x their twins on an H200, so the option
# stays off; name them in GPU_CHECK_MLA_ARGS to time them again.)
{ [ -s "$ta_flash" ] || [ $ta_dry = 1 ]; } && fa_opt=" --anchors \"$ta_flash\""
[ $pipe_hung = 1 ] && fa_opt+=" --no-pipelined" && export GC_PIPE_HUNG=1
{ [ -s "$ta_mla" ] || [ $ta_dry = 1 ]; } && mla_opt=" --torch-anchors \"$ta_mla\""
need_bins bench-flash kernels/bench_flash_prefill &&
  step bench-flash "$out/kernels.log" 15 150 1 \
    "$kb/bench_flash_prefill --quick --json \"$out/flash_prefill.json\"$fa_opt; r=\$?;
    python3 \"$notes\" flash-verdict \"$out/flash_prefill.json\"; exit \$r"
need_bins bench-mla kernels/bench_mla_decode &&
  step bench-mla "$out/kernels.log" 15 "${GPU_CHECK_MLA_CAP_S:-160}" 1 \
    "$kb/bench_mla_decode ${GPU_CHECK_MLA_ARGS:-$mla_shapes} --json \"$out/mla_decode.json\"$mla_opt; r=\$?;
    python3 \"$notes\" mla-verdict \"$out/mla_decode.json\"; exit \$r"
# The MLA workbench's rows by this build against an earlier one's workbench in .carry/ab/ (`gpu_check.sh ab-base
# COMMIT` builds it), run base, new, new, base so that a drift of the GPU's clocks falls on both; gpu_check_notes.py
# mla-ab gives each row's medians. Rows: GPU_CHECK_AB_ROWS.
ab_bin=$(ls "$root"/.carry/ab/bench_mla_decode.* 2>/dev/null | head -1)
ab_rows="tp8_b128_s8192_h16_fit,tp8_b128_s8192_h16_fp8_fit_reg,tp8_b128_s8192_h16_int8_fit_reg"
ab_rows+=",b64_s4096_h128_fp8_fit_reg,b64_s4096_h128_fit"
if [ -n "$ab_bin" ] || [ $dry = 1 ]; then
  need_bins bench-mla-ab kernels/bench_mla_decode &&
    step bench-mla-ab "$out/kernels.log" 30 150 1 \
      "d=\"$GC_TMP/mla_ab\"; mkdir -p \"\$d\"; i=0; r=0; echo \"base: ${ab_bin:-none}\";
      for who in base new new base; do bin=$kb/bench_mla_decode; [ \$who = base ] && bin=\"$ab_bin\";
        \"\$bin\" --only ${GPU_CHECK_AB_ROWS:-$ab_rows} --json \"\$d/\${who}_\$i.json\" || r=1; i=\$((i + 1));
      done; python3 \"$notes\" mla-ab \"\$d\"; exit \$r"
else
  record bench-mla-ab SKIP 0 "no earlier workbench in .carry/ab"
fi
# Nsight Compute on one launch of each fast kernel at its headline shape (the TP 8 decode shape on tensor cores; MLA
# prefill 192/128, 128 heads, 4k): throughput, occupancy, stall reasons. Clocks left alone (--clock-control none).
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
ncu_opt="--clock-control none --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats"
ncu_opt+=" --section SchedulerStats --section LaunchStats --section MemoryWorkloadAnalysis"
# How busy shared memory's banks are, for reads and for writes (whether the wgmma operands the tensor cores read
# from it count there is not established; on an H200 the split wgmma kernel showed 22 % and 6.6 %).
ncu_opt+=" --metrics l1tex__data_bank_reads.avg.pct_of_peak_sustained_elapsed"
ncu_opt+=",l1tex__data_bank_writes.avg.pct_of_peak_sustained_elapsed"
# ncu_step NAME BENCH SKIP KERNEL ONLY: one launch of the kernels matching KERNEL (after SKIP of them) in workbench
# kernels/BENCH, running the rows ONLY (quoted for the shell where it holds spaces).
ncu_step() {
  need_bins "$1" "kernels/$2" && step "$1" "$out/kernels.log" 15 45 1 \
    "${ncu:-ncu} $ncu_opt --launch-skip $3 -k regex:$4 $kb/$2 --reps 3 --only $5"
}
# ncu_stall_step NAME BENCH SKIP KERNEL ONLY: the same launch with warp-stall sampling by SASS line (SourceCounters),
# summed by reason, by opcode and by line (gpu_check_notes.py ncu-stalls): where a kernel's issue slots go.
ncu_stall_step() {
  need_bins "$1" "kernels/$2" && step "$1" "$out/kernels.log" 20 60 1 \
    "${ncu:-ncu} --clock-control none --launch-count 1 --section WarpStateStats --section SourceCounters \
      --import-source no -f -o \"$GC_TMP/$1\" --launch-skip $3 -k regex:$4 $kb/$2 --reps 3 --only $5 >/dev/null &&
    ${ncu:-ncu} --import \"$GC_TMP/$1.ncu-rep\" --page source --csv --print-source sass >\"$GC_TMP/$1.csv\" &&
    python3 \"$notes\" ncu-stalls \"$GC_TMP/$1.csv\""
}
if [ -n "$ncu" ] || [ $dry = 1 ]; then
  ncu_step ncu-mla bench_mla_decode 10 attend_mma tp8_b128_s8192_h16_mma
  ncu_step ncu-mla-fitted bench_mla_decode 10 attend_fitted tp8_b128_s8192_h16_fit
  ncu_step ncu-mla-wgmma bench_mla_decode 10 attend_wgmma b64_s4096_h128_wgs
  ncu_step ncu-mla-wgmma-ws bench_mla_decode 10 ws_attend_kernel b64_s4096_h128_wgws
  ncu_step ncu-mla-wgmma-seesaw bench_mla_decode 10 ws_attend_kernel b64_s4096_h128_wgss
  ncu_step ncu-flash bench_flash_prefill 2 flash_prefill_kernel "'b1 h128 s4096 d192/128'"
  ncu_step ncu-flash-wgmma-ws bench_flash_prefill 2 flash_prefill_wgmma_ws_kernel "'b1 h128 s4096 d192/128 causal ws'"
  pipe_ok ncu-flash-pipe && {
    ncu_step ncu-flash-pipe bench_flash_prefill 2 flash_prefill_wgmma_pipelined_kernel \
      "'b1 h128 s4096 d192/128 causal pipe'"
    ncu_step ncu-flash-pipe-pp bench_flash_prefill 2 flash_prefill_wgmma_pipelined_kernel \
      "'b1 h128 s4096 d192/128 causal pp'"
    ncu_step ncu-flash-pipe-perspp bench_flash_prefill 2 flash_prefill_wgmma_pipelined_kernel \
      "'b1 h128 s4096 d192/128 causal perspp'"
  }
  ncu_step ncu-flash-wgmma bench_flash_prefill 2 flash_prefill_wgmma_kernel "'b1 h128 s4096 d192/128 causal wg'"
  # The fp8 cache's fitted kernel at the TP 8 shape (0.72x the bf16 tokens/s on an H200: why), and the 64k
  # prefill chunk's kernels.
  ncu_step ncu-mla-fp8 bench_mla_decode 10 attend_fitted tp8_b128_s8192_h16_fp8_fit
  ncu_step ncu-mla-fp8-reg bench_mla_decode 10 attend_fitted tp8_b128_s8192_h16_fp8_fit_reg
  need_bins ncu-prefill-64k launch/mlarun && step ncu-prefill-64k "$out/model.log" 30 90 1 \
    "GC_NCU=\"${ncu:-ncu}\" \"$self\" __ncu_prefill"
else
  record ncu SKIP 0 "no ncu on this machine"
fi
need_bins bench-decode launch/mlarun && step bench-decode "$out/model.log" 15 130 1 "\"$self\" __bench_decode"
need_bins bench-prefill launch/mlarun && step bench-prefill "$out/model.log" 10 150 1 "\"$self\" __bench_prefill"
need_bins bench-moe launch/mlarun && step bench-moe-layouts "$out/model.log" 20 60 1 "\"$self\" __bench_moe_layouts"
need_bins bench-decode-16b launch/mlarun &&
  step bench-decode-16b "$out/model.log" 40 120 1 "\"$self\" __bench_decode_16b"
# Where the issue slots go (last, as the timings above come first): the default prefill kernel at MLA's shape, the
# decode kernels at the TP 8 shape (bf16 and fp8 cache) and the 128-head shape.
if [ -n "$ncu" ] || [ $dry = 1 ]; then
  pipe_ok ncu-stalls-flash && ncu_stall_step ncu-stalls-flash bench_flash_prefill 2 \
    flash_prefill_wgmma_pipelined_kernel "'b1 h128 s4096 d192/128 causal pp'"
  ncu_stall_step ncu-stalls-mla-fitted bench_mla_decode 10 attend_fitted tp8_b128_s8192_h16_fit
  ncu_stall_step ncu-stalls-mla-fp8 bench_mla_decode 10 attend_fitted tp8_b128_s8192_h16_fp8_fit_reg
  ncu_stall_step ncu-stalls-mla-wgmma bench_mla_decode 10 attend_wgmma b64_s4096_h128_wgs
fi

wall=$(($(date +%s) - start))
printf 'total: %d ok, %d FAIL/TIMEOUT, %d SKIP, %d DRY; %ds of the %ds budget; files: %s\n' "$n_ok" "$n_fail" \
  "$n_skip" "$n_dry" "$wall" "$budget" "$(cd "$out" && ls | tr '\n' ' ')" | tee -a "$summary"
[ $n_fail = 0 ]
