#!/usr/bin/env bash
# Resume of the shared trainer through train-classifier: 2 epochs uninterrupted vs 1 epoch then
# `--resume DIR --epochs 2` must end with bit-identical tensors in latest.safetensors (parameters,
# BN statistics, Adam state, RNG streams). The run uses an MLP head (dropout stream), robust
# training with a random-start PGD (attack stream) and eps fade-in (epoch-dependent), so each
# piece of restored state matters. Metadata may differ; only tensor data is compared.
set -u
WCMI="$1"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/wcmi-cli-classifier-resume.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
PY=/usr/bin/python3
if ! "$PY" -c 'import numpy' 2>/dev/null; then
  echo "SKIPPED: needs /usr/bin/python3 with numpy to compare tensors"
  exit 0
fi
DATA=/usr/share/datasets/fashion-mnist
if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -e "$DATA/train-images-idx3-ubyte" ]; then
  echo "SKIPPED: Fashion-MNIST not installed in $DATA"
  exit 0
fi
TINY=(--profile quick --train-subset 512 --test-subset 256 --eval-batches 1 --batch-size 64 --threads 1)

"$WCMI" train-encoder "${TINY[@]}" --max-batches 2 --epochs 1 --hsize 16 --out "$DIR/enc" >/dev/null 2>"$DIR/err"
check "train-encoder exits 0" test $? = 0 || cat "$DIR/err"
RUN=(--model "$DIR/enc/latest.safetensors" --head mlp --training robust --max-batches 2 --attack-steps 2
     --random-start --eps-fade 2 --seed 7)
"$WCMI" train-classifier "${TINY[@]}" "${RUN[@]}" --epochs 2 --out "$DIR/full" >/dev/null 2>"$DIR/err"
check "uninterrupted 2-epoch run exits 0" test $? = 0 || cat "$DIR/err"
"$WCMI" train-classifier "${TINY[@]}" "${RUN[@]}" --epochs 1 --out "$DIR/part" >/dev/null 2>"$DIR/err"
check "1-epoch run exits 0" test $? = 0 || cat "$DIR/err"
"$WCMI" train-classifier --resume "$DIR/part" --epochs 2 --threads 1 >"$DIR/resumed.json" 2>"$DIR/err"
check "--resume --epochs 2 exits 0" test $? = 0 || cat "$DIR/err"

check "latest.safetensors tensors bit-identical after resume" "$PY" - "$DIR/full/latest.safetensors" "$DIR/part/latest.safetensors" <<'EOF'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]) for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert sorted(a) == sorted(b), set(a) ^ set(b)
assert any(k.startswith("optim.") for k in a) and any(k.startswith("rng.") for k in a), sorted(a)[:5]
diff = [k for k in a if a[k] != b[k]]
assert not diff, "differ: %s" % diff[:10]
print("compared %d tensors" % len(a))
EOF
check "metrics.jsonl: the same two lines apart from timing" "$PY" - "$DIR/full/metrics.jsonl" "$DIR/part/metrics.jsonl" <<'EOF'
import json, sys
def lines(p):
    out = []
    for l in open(p):
        d = json.loads(l); d.pop("seconds"); out.append(d)
    return out
a, b = lines(sys.argv[1]), lines(sys.argv[2])
assert len(a) == 2 and a == b, (a, b)
EOF
check "resumed summary reports the final accuracies" "$PY" -c '
import json, sys; s = json.load(open(sys.argv[1])); assert s["epochs"] == 2 and 0 <= s["adv_acc"] <= s["nat_acc"] <= 1, s' \
  "$DIR/resumed.json"

exit $fail
