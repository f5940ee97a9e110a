#!/usr/bin/env bash
# Data-parallel resume (docs/distributed.md): checkpoints hold no trace of K, so a 1-process run
# continues on 2 ranks and back. Usage: mpi_resume.sh WCMI MPIEXEC
source "$(dirname "$0")/dist_common.sh"

# The unbroken runs to compare with: 1 process and 2 ranks, 2 epochs of 2 steps.
"$WCMI" train-encoder --objective worst "${COMMON[@]}" --epochs 2 --max-batches 2 --out "$T/w1" > /dev/null 2>&1
run2 train-encoder --objective worst "${COMMON[@]}" --epochs 2 --max-batches 2 --out "$T/w2a" > /dev/null 2>&1

# Resume across K: checkpoints hold no trace of K. 1 process -> 2 ranks -> 1 process gives the
#    run 1 process makes alone (to the precision above), and 2 -> 2 is bit-identical to unbroken 2.
"$WCMI" train-encoder --objective worst "${COMMON[@]}" --epochs 1 --max-batches 2 --out "$T/r" > /dev/null 2>&1
run2 train-encoder --objective worst --resume "$T/r" --epochs 2 --threads 1 > /dev/null 2> "$T/r.err"
check "resume of a 1-process run on 2 ranks exits 0" "[ $? -eq 0 ] && [ \$(wc -l < '$T/r/metrics.jsonl') -eq 2 ]"
check "its second epoch agrees with the 1-process run's" \
  "close \$(loss_of '$T/r/metrics.jsonl' 1 loss) \$(loss_of '$T/w1/metrics.jsonl' 1 loss) 0.02"
"$WCMI" train-encoder --objective worst --resume "$T/r" --epochs 3 --threads 1 > /dev/null 2>&1
check "and back on 1 process" "[ $? -eq 0 ] && [ \$(wc -l < '$T/r/metrics.jsonl') -eq 3 ]"
run2 train-encoder --objective worst "${COMMON[@]}" --epochs 1 --max-batches 2 --out "$T/r2" > /dev/null 2>&1
run2 train-encoder --objective worst --resume "$T/r2" --epochs 2 --threads 1 > /dev/null 2>&1
check "2 ranks resumed on 2 ranks: bit-identical to the unbroken 2-rank run" \
  "compare '$T/r2/latest.safetensors' '$T/w2a/latest.safetensors' bits"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
