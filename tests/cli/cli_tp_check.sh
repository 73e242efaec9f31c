#!/usr/bin/env bash
# `mlarun generate --tp N` under mpirun gives the tokens of the single-rank run (v2-tiny at 2 and 4 ranks, v3-tiny
# at 2), also with decode context parallelism (--dcp 2 and 4: the latent cache sharded by token; with a quantized
# cache too, --kv-cache-dtype fp8/int8 on the CPU, against the single rank with the same dtype), and a world size
# that does not split the model, or a --dcp that does not divide --tp, fails on every rank with a message naming
# what does not divide. Usage: cli_tp_check.sh MLARUN_BINARY DATA_DIR MPIEXEC
set -uo pipefail
mlarun=$1 data=$2 mpiexec=$3
mpirun=("$mpiexec" --allow-run-as-root --oversubscribe)
status=0
check_same_tokens() {  # fixture np prompt [dcp [kv-cache-dtype]]
  local want got dcp=${4:-1} kv=()
  [[ -n "${5:-}" ]] && kv=(--device cpu --kv-cache-dtype "$5")
  want=$("$mlarun" generate --model "$data/$1" --prompt-ids "$3" --max-new-tokens 12 --ignore-eos "${kv[@]}" \
        2>/dev/null)
  got=$("${mpirun[@]}" -np "$2" "$mlarun" generate --model "$data/$1" --tp "$2" --dcp "$dcp" --comm mpi \
        --prompt-ids "$3" --max-new-tokens 12 --ignore-eos --block-size 4 "${kv[@]}" 2>/dev/null)
  if [[ -n "$want" && "$want" == "$got" ]]; then echo "ok: $1 tp $2 dcp $dcp ${5:-} tokens $got"
  else echo "FAIL: $1 tp $2 dcp $dcp ${5:-}: single-rank '$want' vs tp '$got'"; status=1; fi
}
check_fails() {  # fixture np expected-message [extra options]
  local out rc
  out=$(timeout 60 "${mpirun[@]}" -np "$2" "$mlarun" generate --model "$data/$1" --tp "$2" --prompt-ids 5,6 ${4:-} 2>&1)
  rc=$?
  if [[ $rc -ne 0 && $rc -ne 124 && "$out" == *"$3"* ]]; then echo "ok: $1 np $2 fails (rc $rc): $3"
  else echo "FAIL: $1 np $2: rc $rc, output: $out"; status=1; fi
}
check_same_tokens deepseek-v2-tiny 2 5,17,42,100,7,300,11
check_same_tokens deepseek-v2-tiny 4 5,17,42,100,7,300,11
check_same_tokens deepseek-v3-tiny 2 9,1,400,22,37
check_same_tokens deepseek-v2-tiny 2 5,17,42,100,7,300,11 2
check_same_tokens deepseek-v2-tiny 4 5,17,42,100,7,300,11 4
check_same_tokens deepseek-v2-tiny 4 5,17,42,100,7,300,11 2
check_same_tokens deepseek-v3-tiny 2 9,1,400,22,37 2
check_same_tokens deepseek-v2-tiny 2 5,17,42,100,7,300,11 2 fp8
check_same_tokens deepseek-v3-tiny 2 9,1,400,22,37 2 int8
check_same_tokens deepseek-v2-tiny 4 5,17,42,100,7,300,11 2 int8
check_fails deepseek-v2-tiny 2 "--decode-context-parallel-size (--dcp): value 4: must be at least 1 and divide" "--dcp 4 --comm mpi"
check_fails deepseek-v3-tiny 3 "n_routed_experts = 16 (routed experts) is not divisible by 3"
check_fails deepseek-v3-tiny 4 "num_attention_heads = 6 (attention heads) is not divisible by 4"

exit $status
