#!/usr/bin/env bash
# launch/gpu_check.sh on a machine without a GPU: --help, argument errors, and a dry run that lists every GPU step
# (kernels, model, sanitizers, timings, Nsight Compute) as DRY, keeps to the 8 output files and records no failure.
# Configure and build are skipped so the check never reconfigures the build folder this test runs from.
set -uo pipefail
root=${1:?usage: gpu_check_dry_run.sh SOURCE_DIR}
out=$(mktemp -d) && trap 'rm -rf "$out"' EXIT
cd "$root" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

bash launch/gpu_check.sh --help | grep -q "one-call check" || fail "--help does not describe the check"
bash launch/gpu_check.sh --budget soon >/dev/null 2>&1 && fail "a budget of 'soon' was accepted"
msg=$(bash launch/gpu_check.sh --frobnicate 2>&1) && fail "an unknown argument was accepted"
grep -q "unknown argument '--frobnicate'" <<<"$msg" || fail "an unknown argument is not named: $msg"

OUT=$out/o MLARUN_BUILD_DIR=$out/build GPU_CHECK_PREBUILT=0 \
  bash launch/gpu_check.sh --dry-run --budget 120 --skip '^(configure|build)$' >"$out/stdout" 2>&1 ||
  { cat "$out/stdout"; fail "the dry run exited non-zero"; }
s=$out/o/summary.txt
for step in env kernels kernels-wgmma-ws kernels-wgmma-seesaw kernels-flash-ws smoke-flash-pipe kernels-flash-pipe \
            kernels-repeat3 \
            model-ops model-model tp-nccl memcheck-mla racecheck-mla race-sync-mla-ws race-sync-flash-ws \
            race-sync-flash-pipe race-sync-mla-seesaw initcheck-mla torch-anchors bench-flash bench-mla ncu-mla \
            ncu-flash ncu-mla-fp8 ncu-mla-fp8-reg ncu-mla-wgmma-ws ncu-mla-wgmma-seesaw ncu-flash-wgmma-ws \
            ncu-flash-pipe ncu-flash-pipe-pp ncu-flash-pipe-perspp ncu-stalls-flash ncu-stalls-mla-fitted \
            ncu-stalls-mla-fp8 ncu-stalls-mla-wgmma ncu-prefill-64k bench-decode bench-moe-layouts \
            bench-decode-16b; do
  grep -Eq "^$step +(ok|DRY) " "$s" || { cat "$s"; fail "step $step is not listed as ok or DRY"; }
done
grep -Eq "^total: [0-9]+ ok, 0 FAIL/TIMEOUT" "$s" || { cat "$s"; fail "the dry run recorded a failure"; }
n=$(find "$out/o" -type f | wc -l)
[ "$n" -le 8 ] || fail "$n files in OUT (at most 8)"
# --only: the steps it names run (here: are listed DRY), every other one but the setup is SKIP, naming why.
OUT=$out/o2 MLARUN_BUILD_DIR=$out/build GPU_CHECK_PREBUILT=0 bash launch/gpu_check.sh --dry-run --budget 120 \
  --skip '^(configure|build)$' --only 'flash-pipe' >"$out/stdout" 2>&1 ||
  { cat "$out/stdout"; fail "the --only dry run exited non-zero"; }
s2=$out/o2/summary.txt
for step in smoke-flash-pipe kernels-flash-pipe race-sync-flash-pipe ncu-flash-pipe ncu-flash-pipe-pp \
            ncu-flash-pipe-perspp; do
  grep -Eq "^$step +DRY " "$s2" || { cat "$s2"; fail "--only 'flash-pipe': step $step is not listed DRY"; }
done
grep -Eq "^env +ok " "$s2" || { cat "$s2"; fail "--only skipped the env step"; }
grep -Eq "^kernels +SKIP .*--only 'flash-pipe'" "$s2" ||
  { cat "$s2"; fail "--only ran a step it leaves out, or did not say why it skipped it"; }
# A packed build of other sources is refused (it would test and time other code), naming the fix.
mkdir -p "$out/carry" && echo "sources: 0000000000000000" >"$out/carry/STAMP"
msg=$(cd "$root" && prebuilt_tar=$out/stale.tar.xz && tar -C "$out/carry" -cJf "$prebuilt_tar" ./STAMP &&
  GC_PREBUILT=$prebuilt_tar MLARUN_BUILD_DIR=$out/pb bash launch/gpu_check.sh __prebuilt 2>&1) &&
  fail "a prebuilt of other sources was taken: $msg"
grep -q "packed from other sources" <<<"$msg" || fail "a stale prebuilt is not named: $msg"
echo "gpu_check dry run: $(tail -1 "$s")"
