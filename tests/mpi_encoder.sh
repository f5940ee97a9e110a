#!/usr/bin/env bash
# Data-parallel train-encoder (docs/distributed.md): 2 ranks under mpirun against 1 process on the
# same global batch, worst-case objective with BatchNorm in the encoder and critics; a fixed K
# repeats bit for bit. Usage: mpi_encoder.sh WCMI MPIEXEC
source "$(dirname "$0")/dist_common.sh"

# 1. One step of the normal objective through the whole trainer (sharded loader, synchronized BN in
#    train mode, gathered features, summed gradients, Adam): loss, parameters, BN running statistics
#    and Adam moments as 1 process computes them, to float precision.
"$WCMI" train-encoder --objective normal "${COMMON[@]}" --epochs 1 --max-batches 1 --out "$T/n1" > /dev/null 2>&1
run2 train-encoder --objective normal "${COMMON[@]}" --epochs 1 --max-batches 1 --out "$T/n2" > "$T/n2.json" 2> "$T/n2.err"
check "2 ranks exit 0" "[ $? -eq 0 ]"
check "2 ranks: one summary on stdout (rank 0)" "[ \$(grep -c '\"task\"' '$T/n2.json') -eq 1 ]"
check "normal objective, one step: the loss agrees (1e-5)" \
  "close \$(loss_of '$T/n2/metrics.jsonl' 0 loss) \$(loss_of '$T/n1/metrics.jsonl' 0 loss) 1e-5"
check "normal objective, one step: parameters, BN statistics, Adam moments agree" \
  "compare '$T/n2/latest.safetensors' '$T/n1/latest.safetensors' close 5e-4"

# 2. One worst-case step (PGD with a random start on the global batch's MI loss): the loss to float
#    precision and the critics as above. The encoder's gradient passes through the attack's sign
#    steps, which turn rounding differences into pixel flips (one process with --conv-algo gemm
#    instead of auto moves it by up to 40%), so its parameters are held to the Adam-step bound.
"$WCMI" train-encoder --objective worst "${COMMON[@]}" --epochs 1 --max-batches 1 --out "$T/one" > /dev/null 2>&1
run2 train-encoder --objective worst "${COMMON[@]}" --epochs 1 --max-batches 1 --out "$T/two" > /dev/null 2> "$T/two.err"
check "worst-case loss of the step: 2 ranks = 1 process (1e-5)" \
  "close \$(loss_of '$T/two/metrics.jsonl' 0 loss) \$(loss_of '$T/one/metrics.jsonl' 0 loss) 1e-5"
check "worst case: critics to float precision, encoder within one Adam step" \
  "compare '$T/two/latest.safetensors' '$T/one/latest.safetensors' close 5e-4 encoder."
check "test MI under attack after the step agrees (2%)" \
  "close \$($PY -c \"import json; print(json.load(open('$T/two/summary.json'))['test_mi_worst'])\") \$($PY -c \"import json; print(json.load(open('$T/one/summary.json'))['test_mi_worst'])\") 0.02"

# 3. A few steps: same K, bit-identical; against 1 process, the losses agree to the precision the
#    worst-case loop keeps (its sign steps amplify rounding: 1 vs 2 threads differ as much).
run2 train-encoder --objective worst "${COMMON[@]}" --epochs 2 --max-batches 2 --out "$T/w2a" > /dev/null 2> "$T/w2a.err"
run2 train-encoder --objective worst "${COMMON[@]}" --epochs 2 --max-batches 2 --out "$T/w2b" > /dev/null 2>&1
"$WCMI" train-encoder --objective worst "${COMMON[@]}" --epochs 2 --max-batches 2 --out "$T/w1" > /dev/null 2>&1
check "2 ranks twice: bit-identical checkpoints" "compare '$T/w2a/latest.safetensors' '$T/w2b/latest.safetensors' bits"
check "4 worst-case steps: epoch losses agree with 1 process (2%)" \
  "close \$(loss_of '$T/w2a/metrics.jsonl' 1 loss) \$(loss_of '$T/w1/metrics.jsonl' 1 loss) 0.02"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
