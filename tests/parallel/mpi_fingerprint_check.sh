#!/usr/bin/env bash
# The start-up fingerprint: ranks of one `mlarun generate --tp 2` job given different models, or different options
# that must agree, fail on every rank with a message naming the ranks and what differs (not MPI_ERR_TRUNCATE, not
# a hang); options that may differ (--collective-timeout) do not stop the run. Each rank gets its own arguments
# through mpiexec's MPMD form (`-np 1 A : -np 1 B`). Usage: mpi_fingerprint_check.sh MLARUN_BINARY DATA_DIR MPIEXEC
set -uo pipefail
mlarun=$1 data=$2 mpiexec=$3
mpirun=("$mpiexec" --allow-run-as-root --oversubscribe)
common=(generate --tp 2 --comm mpi --prompt-ids 5,17,42 --max-new-tokens 4 --ignore-eos)
status=0
run_pair() {  # "rank 0 args" "rank 1 args": sets out and rc
  out=$(timeout 120 "${mpirun[@]}" -np 1 "$mlarun" "${common[@]}" $1 : -np 1 "$mlarun" "${common[@]}" $2 2>&1)
  rc=$?
}
expect_fails() {  # what "rank 0 args" "rank 1 args" expected-message
  run_pair "$2" "$3"
  if [[ $rc -ne 0 && $rc -ne 124 && "$out" == *"$4"* && "$out" != *MPI_ERR_TRUNCATE* ]]; then
    echo "ok: $1 fails (rc $rc): $4"
  else
    echo "FAIL: $1: rc $rc, expected '$4', output:"; echo "$out"; status=1
  fi
}

expect_fails "different models" "--model $data/deepseek-v2-tiny" "--model $data/deepseek-v3-tiny" \
  "rank 1's model config differs from rank 0's ($data/deepseek-v3-tiny vs $data/deepseek-v2-tiny)"
expect_fails "different block sizes" "--model $data/deepseek-v2-tiny --block-size 8" \
  "--model $data/deepseek-v2-tiny --block-size 16" "rank 1's options differ from rank 0's (block-size 16 vs 8)"

# The same model under another path (a copy) and a different watchdog timeout per rank: the run goes through.
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -r "$data/deepseek-v2-tiny/." "$copy/"
run_pair "--model $data/deepseek-v2-tiny --collective-timeout 30" "--model $copy --collective-timeout 0"
if [[ $rc -eq 0 && -n "$out" && "$out" != *differ* ]]; then echo "ok: a copy of the model and per-rank timeouts run"
else echo "FAIL: same model at two paths: rc $rc, output:"; echo "$out"; status=1; fi

# The option itself: a negative timeout is refused by the parser.
out=$("$mlarun" generate --model "$data/deepseek-v2-tiny" --prompt-ids 5 --collective-timeout -1 2>&1)
rc=$?
if [[ $rc -ne 0 && "$out" == *collective-timeout* ]]; then echo "ok: --collective-timeout -1 is refused"
else echo "FAIL: --collective-timeout -1: rc $rc, output: $out"; status=1; fi

exit $status
