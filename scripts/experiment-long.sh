#!/usr/bin/env bash
# The longer run of EXPERIMENTS.md: more rows of the paper's Fashion-MNIST table (PAPER.md section 7)
# than the demo — robust heads on both encoders and the supervised baselines — on a larger subset,
# each model evaluated with the paper's PGD-10 and with the strong attack (PGD with random start and
# 5 restarts + APGD-CE, worst case per sample). Usage: scripts/experiment-long.sh [OUT_DIR]
# Every stage is a plain wcmi command; a stage whose summary.json exists is skipped on rerun.
# ENCODERS=DIR reuses the encoders of a demo run (DIR/encoder-dim, DIR/encoder-worst) instead of
# training new ones; TRAIN_SUBSET sets the class-balanced training subset (default 20000); HEAD_LR sets the heads' and baselines' learning rate (default 2e-3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/long}
W=./build/release/wcmi
mkdir -p "$OUT"
COMMON=(--data fashion-mnist --profile quick --train-subset ${TRAIN_SUBSET:-20000} --test-subset 1000 --hsize 256 --seed 1)
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
run() { # run NAME CMD... : skips a finished stage
  local name=$1; shift
  if [ -s "$OUT/$name/summary.json" ] || [ -s "$OUT/$name/eval.json" ]; then log "skip $name (done)"; return 0; fi
  log "start $name"
  "$@" > "$OUT/$name.json" 2> "$OUT/$name.err" || { log "FAILED $name (see $OUT/$name.err)"; return 1; }
  log "done $name"
}

HEAD_LR=${HEAD_LR:-2e-3}
if [ -n "${ENCODERS:-}" ]; then
  mkdir -p "$OUT/enc-dim" "$OUT/enc-worst"
  cp "$ENCODERS/encoder-dim/latest.safetensors" "$OUT/enc-dim/latest.safetensors"
  cp "$ENCODERS/encoder-worst/latest.safetensors" "$OUT/enc-worst/latest.safetensors"
  log "reusing the encoders of $ENCODERS"
else
  run enc-dim   $W train-encoder --objective normal "${COMMON[@]}" --epochs 6 --out "$OUT/enc-dim"
  run enc-worst $W train-encoder --objective worst  "${COMMON[@]}" --epochs 6 --out "$OUT/enc-worst"
fi
HEAD=(--lr "$HEAD_LR" --eval-batches 2)
for enc in dim worst; do
  for head in mlp linear; do
    run "$enc-$head-standard" $W train-classifier "${COMMON[@]}" --model "$OUT/enc-$enc/latest.safetensors" \
      --head $head --training standard --epochs 8 "${HEAD[@]}" --out "$OUT/$enc-$head-standard"
    run "$enc-$head-robust" $W train-classifier "${COMMON[@]}" --model "$OUT/enc-$enc/latest.safetensors" \
      --head $head --training robust --epochs 3 "${HEAD[@]}" --out "$OUT/$enc-$head-robust"
  done
done
run sup-mlp-standard $W train-model "${COMMON[@]}" --head mlp --training standard --epochs 4 "${HEAD[@]}" --out "$OUT/sup-mlp-standard"
run sup-mlp-robust   $W train-model "${COMMON[@]}" --head mlp --training robust --epochs 3 "${HEAD[@]}" --out "$OUT/sup-mlp-robust"
run sup-linear-robust $W train-model "${COMMON[@]}" --head linear --training robust --epochs 3 "${HEAD[@]}" --out "$OUT/sup-linear-robust"
for m in dim-mlp-standard dim-linear-standard dim-mlp-robust dim-linear-robust worst-mlp-standard worst-linear-standard \
         worst-mlp-robust worst-linear-robust sup-mlp-standard sup-mlp-robust sup-linear-robust; do
  run "eval-$m" $W eval --model "$OUT/$m/latest.safetensors" --test-subset 1000 --attack strong --out "$OUT/eval-$m"
done
for enc in dim worst; do
  run "rv-$enc" $W vulnerability --model "$OUT/enc-$enc/latest.safetensors" "${COMMON[@]}" --epochs 2 --out "$OUT/rv-$enc"
done
log "all stages done"
