#!/usr/bin/env bash
# Data-parallel train-model and eval (docs/distributed.md): cross-entropy weighted by each rank's
# share, synchronized BN and per-sample dropout draws as one process makes them; eval counts summed
# over the ranks; a batch that cannot be split refuses. Usage: mpi_model_eval.sh WCMI MPIEXEC
source "$(dirname "$0")/dist_common.sh"

# 4. train-model (BN in the encoder, cross-entropy weighted by each rank's share) and eval.
MODEL=(--data fashion-mnist --profile quick --train-subset 256 --test-subset 60 --batch-size 30 --eval-batches 2
       --attack-steps 3 --seed 4 --threads 1 --epochs 1 --max-batches 1)
"$WCMI" train-model "${MODEL[@]}" --out "$T/m1" > /dev/null 2>&1
run2 train-model "${MODEL[@]}" --out "$T/m2" > /dev/null 2> "$T/m2.err"
check "train-model on 2 ranks exits 0" "[ $? -eq 0 ]"
check "train-model: the step's loss and accuracy agree (1e-5)" \
  "close \$(loss_of '$T/m2/metrics.jsonl' 0 loss) \$(loss_of '$T/m1/metrics.jsonl' 0 loss) 1e-5 && close \$(loss_of '$T/m2/metrics.jsonl' 0 train_acc) \$(loss_of '$T/m1/metrics.jsonl' 0 train_acc) 1e-9"
check "train-model: parameters after the step agree" "compare '$T/m2/latest.safetensors' '$T/m1/latest.safetensors' close 1e-3"
"$WCMI" eval --model "$T/m1/latest.safetensors" --data fashion-mnist --test-subset 60 --batch-size 30 --attack-steps 3 --threads 1 > "$T/e1.json" 2>/dev/null
run2 eval --model "$T/m1/latest.safetensors" --data fashion-mnist --test-subset 60 --batch-size 30 --attack-steps 3 --threads 1 > "$T/e2.json" 2>/dev/null
check "eval on 2 ranks: same samples and accuracies as 1 process" "$PY - <<PYEOF
import json
a, b = json.load(open('$T/e1.json')), json.load(open('$T/e2.json'))
for k in ('samples', 'nat_acc', 'adv_acc', 'worst_case_adv_acc'):
    if k in a: assert a[k] == b[k], (k, a[k], b[k])
PYEOF"

# The strong attack is a cascade (each attack on the survivors of the ones before): the ranks'
# survivors are attacked together, so a rank left with none still joins the attack's collectives.
"$WCMI" eval --model "$T/m1/latest.safetensors" --data fashion-mnist --test-subset 60 --batch-size 30 --attack-steps 3 --attack strong --threads 1 > "$T/s1.json" 2>/dev/null
run2 eval --model "$T/m1/latest.safetensors" --data fashion-mnist --test-subset 60 --batch-size 30 --attack-steps 3 --attack strong --threads 1 > "$T/s2.json" 2>/dev/null
check "eval --attack strong on 2 ranks: the cascade's accuracies equal 1 process's" "$PY - <<PYEOF
import json
a, b = json.load(open('$T/s1.json')), json.load(open('$T/s2.json'))
assert [x['adv_acc'] for x in a['attacks']] == [x['adv_acc'] for x in b['attacks']], (a['attacks'], b['attacks'])
assert a['worst_case_adv_acc'] == b['worst_case_adv_acc'] and a['nat_acc'] == b['nat_acc']
PYEOF"

# 5. A global batch smaller than the ranks cannot be split: refused with one line from rank 0.
"$MPIRUN" --oversubscribe -np 3 "$WCMI" eval --model "$T/m1/latest.safetensors" --data fashion-mnist --test-subset 60 \
  --batch-size 2 --threads 1 > /dev/null 2> "$T/b2.err"
rc=$?
check "--batch-size 2 on 3 ranks refuses with exit 2 and one clear line" \
  "[ $rc -eq 2 ] && [ \$(grep -c 'smaller than the number of ranks' '$T/b2.err') -eq 1 ]"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
