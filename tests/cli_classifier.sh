#!/usr/bin/env bash
# Smoke test of the classifier tasks on a tiny Fashion-MNIST subset: train-encoder (a few batches)
# -> train-classifier (linear standard, MLP robust) -> train-model -> eval -> encode. Checks the run
# files, JSON fields, that the training loss decreases, that the encoder stays frozen, that eval
# reproduces the trainer's accuracies, exit codes and the .npy shapes.
set -u
WCMI="$1"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/wcmi-cli-classifier.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
# Debian's python has numpy; a pyenv python3 earlier on PATH may not.
PY=/usr/bin/python3
if ! "$PY" -c 'import numpy' 2>/dev/null; then PY=""; fi
# python3-numpy is a test dependency (scripts/install-deps.sh): without it the checks fail, never pass.
py() { if [ -n "$PY" ]; then "$PY" "$@"; else echo "python3 with numpy missing (run scripts/install-deps.sh)"; return 1; fi; }

DATA=/usr/share/datasets/fashion-mnist
if [ ! -e "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -e "$DATA/train-images-idx3-ubyte" ]; then
  echo "FAIL: Fashion-MNIST not installed in $DATA (run scripts/install-deps.sh)"
  exit 1
fi
TINY=(--profile quick --train-subset 512 --test-subset 256 --eval-batches 1 --batch-size 64 --threads 1)

# ---- an encoder to build on ----
"$WCMI" train-encoder "${TINY[@]}" --max-batches 3 --epochs 1 --hsize 32 --out "$DIR/enc" >"$DIR/enc.json" 2>"$DIR/err"
check "train-encoder exits 0" test $? = 0 || cat "$DIR/err"
ENC="$DIR/enc/latest.safetensors"

# ---- train-classifier, linear head, standard: 3 epochs with a high lr so the loss must fall ----
# (--head-fit online: the encoder in the loop, with PGD after every epoch; the cached fit is tested below)
"$WCMI" train-classifier "${TINY[@]}" --model "$ENC" --head linear --training standard --epochs 3 --max-batches 4 \
  --lr 0.01 --head-fit online --out "$DIR/lin" >"$DIR/lin.json" 2>"$DIR/err"
check "train-classifier linear standard exits 0" test $? = 0 || cat "$DIR/err"
for f in config.json metrics.jsonl latest.safetensors best.safetensors summary.json; do
  check "train-classifier wrote $f" test -s "$DIR/lin/$f"
done
check "summary on stdout equals summary.json" cmp -s "$DIR/lin.json" <(cat "$DIR/lin/summary.json"; echo)
check "linear standard: summary fields, accuracies in [0,1], protocol stated" py - "$DIR/lin.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["task"] == "train-classifier" and s["head"] == "linear" and s["training"] == "standard", s
assert 0 <= s["adv_acc"] <= s["nat_acc"] <= 1, s
a = s["attack"]
assert a["algorithm"] == "pgd" and a["norm"] == "linf" and a["steps"] == 10 and a["restarts"] == 0, a
assert abs(a["eps"] - 0.1) < 1e-6 and abs(a["step"] - 0.02) < 1e-6 and a["random_start"] is False, a
assert s["test_samples"] == 64, s
EOF
check "linear standard: the epoch loss decreases (epoch 3 < epoch 1) and every line has nat/adv accuracy" \
  py - "$DIR/lin/metrics.jsonl" <<'EOF'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
assert [x["epoch"] for x in m] == [0, 1, 2], m
print("losses", [round(x["loss"], 4) for x in m])
assert m[2]["loss"] < m[0]["loss"] - 0.01, "loss did not decrease"
for x in m:
    assert 0 <= x["eval"]["adv_acc"] <= x["eval"]["nat_acc"] <= 1, x
EOF

# The frozen encoder: every encoder tensor (weights and BN running statistics) of the trained
# classifier equals the encoder file's, bit for bit; the head exists and is not the encoder's.
cat >"$DIR/st.py" <<'EOF'
import json, struct, sys
import numpy as np
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    dt = {"F32": np.float32, "I64": np.int64}
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], dtype=dt[v["dtype"]]).reshape(v["shape"])
            for k, v in h.items()}, meta
EOF
check "train-classifier keeps the encoder frozen (bit-identical encoder tensors)" py - "$DIR" "$ENC" "$DIR/lin/latest.safetensors" <<'EOF'
import sys; sys.path.insert(0, sys.argv[1]); from st import load
enc, _ = load(sys.argv[2]); clf, meta = load(sys.argv[3])
keys = [k for k in enc if k.startswith("encoder.")]
assert len(keys) > 10, keys
for k in keys:
    assert (enc[k] == clf[k]).all(), k
assert "classifier.layer0.weight" in clf and clf["classifier.layer0.weight"].shape == (10, 64)
assert not any(k.startswith("dim_") for k in clf), "estimators should not be in a classifier model"
assert meta["head"] == "linear" and meta["task"] == "train-classifier", meta
EOF

# ---- the cached head fit (the default for standard heads): the same run files, the fit stated in
# the summary, --max-batches honoured, the encoder frozen, eval reproducing the summary, a resume
# refitting to the same result, and the combinations it cannot do refused ----
"$WCMI" train-classifier "${TINY[@]}" --model "$ENC" --head mlp --epochs 12 --max-batches 4 --lr 0.01 \
  --out "$DIR/cached" >"$DIR/cached.json" 2>"$DIR/err"
check "train-classifier cached mlp exits 0" test $? = 0 || cat "$DIR/err"
for f in config.json metrics.jsonl latest.safetensors best.safetensors summary.json; do
  check "cached fit wrote $f" test -s "$DIR/cached/$f"
done
check "cached fit: head_fit stated, 12 metrics lines with a natural accuracy, loss falls, best epoch consistent" \
  py - "$DIR/cached.json" "$DIR/cached/metrics.jsonl" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1])); m = [json.loads(l) for l in open(sys.argv[2])]
assert s["head_fit"].startswith("cached"), s["head_fit"]
assert [x["epoch"] for x in m] == list(range(12)), [x["epoch"] for x in m]
assert all(0 <= x["eval"]["nat_acc"] <= 1 for x in m), m
assert m[-1]["loss"] < m[0]["loss"] - 0.05, [x["loss"] for x in m]
b = max(range(12), key=lambda e: (m[e]["eval"]["nat_acc"], -e))
assert s["best_epoch"] == b, (s["best_epoch"], b)
assert 0 <= s["adv_acc"] <= s["nat_acc"] <= 1, s
EOF
check "cached fit keeps the encoder frozen (bit-identical encoder tensors)" py - "$DIR" "$ENC" "$DIR/cached/latest.safetensors" <<'EOF'
import sys; sys.path.insert(0, sys.argv[1]); from st import load
enc, _ = load(sys.argv[2]); clf, meta = load(sys.argv[3])
keys = [k for k in enc if k.startswith("encoder.")]
assert len(keys) > 10 and all((enc[k] == clf[k]).all() for k in keys)
assert clf["classifier.layer0.0.weight"].shape == (200, 64), clf["classifier.layer0.0.weight"].shape
EOF
"$WCMI" eval --model "$DIR/cached/latest.safetensors" --test-subset 256 --eval-batches 1 --batch-size 64 --threads 1 \
  >"$DIR/evc.json" 2>"$DIR/err"
check "eval of the cached head reproduces its summary (the whitening is folded into the saved head)" py -c '
import json, sys; e = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
assert (e["nat_acc"], e["adv_acc"]) == (s["nat_acc"], s["adv_acc"]), (e, s)' "$DIR/evc.json" "$DIR/cached.json"
cp "$DIR/cached/latest.safetensors" "$DIR/cached-first.safetensors"
"$WCMI" train-classifier --resume "$DIR/cached" --threads 1 >"$DIR/cached2.json" 2>"$DIR/err"
check "cached fit --resume exits 0" test $? = 0 || cat "$DIR/err"
check "cached fit --resume: bit-identical head tensors, same accuracies" py - "$DIR" "$DIR/cached.json" "$DIR/cached2.json" \
  "$DIR/cached-first.safetensors" "$DIR/cached/latest.safetensors" <<'EOF'
import json, sys; sys.path.insert(0, sys.argv[1]); from st import load
a = json.load(open(sys.argv[2])); b = json.load(open(sys.argv[3]))
x, _ = load(sys.argv[4]); y, _ = load(sys.argv[5])
keys = [k for k in x if k.startswith("classifier.")]
assert len(keys) >= 4 and all((x[k] == y[k]).all() for k in keys), keys
assert (a["nat_acc"], a["adv_acc"], a["best_epoch"]) == (b["nat_acc"], b["adv_acc"], b["best_epoch"]), (a, b)
EOF
"$WCMI" train-classifier --model "$ENC" --head linear --training robust --head-fit cached --out "$DIR/never" \
  >"$DIR/out" 2>"$DIR/err"; rc=$?
check "--head-fit cached with --training robust exits 2 with one line, no run directory" \
  test "$rc" = 2 -a "$(wc -l <"$DIR/err")" = 1 -a ! -e "$DIR/never"
"$WCMI" train-classifier --model "$ENC" --head linear --head-fit sometimes --out "$DIR/never" >"$DIR/out" 2>"$DIR/err"; rc=$?
check "--head-fit sometimes exits 2 with one line" test "$rc" = 2 -a "$(wc -l <"$DIR/err")" = 1

# ---- eval reproduces the trainer's final accuracies on the same test batches ----
"$WCMI" eval --model "$DIR/lin/latest.safetensors" --test-subset 256 --eval-batches 1 --batch-size 64 --threads 1 --out "$DIR/ev" \
  >"$DIR/ev.json" 2>"$DIR/err"
check "eval exits 0" test $? = 0 || cat "$DIR/err"
check "eval --out wrote eval.json" test -s "$DIR/ev/eval.json"
check "eval: both accuracies, protocol, and the trainer's final numbers" py - "$DIR/ev.json" "$DIR/lin.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
assert e["task"] == "eval" and e["attack"] == "pgd" and e["samples"] == 64 and e["dataset"] == "fashion-mnist", e
assert len(e["attacks"]) == 1 and e["attacks"][0]["name"] == "pgd", e
p = e["attacks"][0]
for k in ("norm", "eps", "steps", "step", "restarts", "random_start", "adv_acc"):
    assert k in p, k
assert 0 <= e["adv_acc"] <= e["nat_acc"] <= 1 and e["min_adv_acc"] == e["adv_acc"] == p["adv_acc"], e
assert e["nat_acc"] == s["nat_acc"] and e["adv_acc"] == s["adv_acc"], (e["nat_acc"], s["nat_acc"], e["adv_acc"], s["adv_acc"])
EOF
# eps 0: the attack cannot move the input, so adversarial accuracy equals natural accuracy.
"$WCMI" eval --model "$DIR/lin/latest.safetensors" --test-subset 256 --eval-batches 1 --batch-size 64 --threads 1 --eps 0 >"$DIR/ev0.json" 2>"$DIR/err"
check "eval --eps 0: adv_acc == nat_acc" py -c '
import json, sys; e = json.load(open(sys.argv[1])); assert e["adv_acc"] == e["nat_acc"], e' "$DIR/ev0.json"

# ---- eval --attack strong: PGD + random-start PGD with restarts + APGD-CE, worst case per sample ----
"$WCMI" eval --model "$DIR/lin/latest.safetensors" --test-subset 256 --eval-batches 1 --batch-size 64 --threads 1 --attack strong \
  --restarts 2 >"$DIR/evs.json" 2>"$DIR/err"; rc=$?
check "eval --attack strong exits 0" test "$rc" = 0 || cat "$DIR/err"
check "strong: a cascade of three attacks, cumulative accuracies, its PGD equals the plain PGD eval" py - "$DIR/evs.json" "$DIR/ev.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2]))
names = [a["name"] for a in e["attacks"]]
assert e["attack"] == "strong" and names == ["pgd", "pgd-restarts", "apgd-ce"], names
r = e["attacks"][1]
assert r["random_start"] is True and r["restarts"] == 2 and e["attacks"][2]["algorithm"] == "apgd-ce", e["attacks"]
# The first attack sees every sample; the others only the survivors, so their accuracies are cumulative.
assert e["attacks"][0]["attacked"].startswith("every"), e["attacks"][0]
assert all("every attack before" in a["attacked"] for a in e["attacks"][1:]), e["attacks"]
accs = [a["adv_acc"] for a in e["attacks"]]
assert accs == sorted(accs, reverse=True) and accs[-1] == e["worst_case_adv_acc"], accs
assert e["min_adv_acc"] == min(accs) and e["worst_case_adv_acc"] <= e["min_adv_acc"] + 1e-12, e
assert e["adv_acc"] == e["worst_case_adv_acc"] and e["nat_acc"] == p["nat_acc"], e
assert e["attacks"][0]["adv_acc"] == p["adv_acc"], (e["attacks"][0], p["adv_acc"])
EOF

# ---- train-classifier, MLP head, robust (short PGD) with eps fade-in ----
"$WCMI" train-classifier "${TINY[@]}" --model "$ENC" --head mlp --training robust --epochs 2 --max-batches 2 \
  --attack-steps 3 --eps-fade 2 --out "$DIR/mlp" >"$DIR/mlp.json" 2>"$DIR/err"
check "train-classifier mlp robust exits 0" test $? = 0 || cat "$DIR/err"
check "mlp robust: fields, fade-in eps 0 in epoch 1 (clean, as the reference) and 0.05 in epoch 2, best by adversarial accuracy" py - "$DIR/mlp.json" "$DIR/mlp/metrics.jsonl" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1])); m = [json.loads(l) for l in open(sys.argv[2])]
assert s["head"] == "mlp" and s["training"] == "robust" and "adv_acc" in s and s["attack"]["steps"] == 3, s
assert "adv_acc" in s["selection"], s
assert m[0]["eval"]["train_eps"] == 0 and abs(m[1]["eval"]["train_eps"] - 0.05) < 1e-6, m
EOF

# ---- train-model (Baseline-H), linear head ----
"$WCMI" train-model "${TINY[@]}" --head linear --training standard --epochs 1 --max-batches 2 --out "$DIR/bh" \
  >"$DIR/bh.json" 2>"$DIR/err"
check "train-model exits 0" test $? = 0 || cat "$DIR/err"
check "train-model: summary fields; the model has encoder and head, no estimators" py - "$DIR" "$DIR/bh.json" "$DIR/bh/best.safetensors" <<'EOF'
import json, sys; sys.path.insert(0, sys.argv[1]); from st import load
s = json.load(open(sys.argv[2]))
assert s["task"] == "train-model" and s["head"] == "linear" and 0 <= s["adv_acc"] <= s["nat_acc"] <= 1, s
t, meta = load(sys.argv[3])
assert "encoder.layer5.weight" in t and "classifier.layer0.weight" in t and not any(k.startswith("dim_") for k in t)
assert meta["head"] == "linear" and meta["hsize"] == "0", meta
EOF

# ---- encode ----
"$WCMI" encode --model "$DIR/lin/latest.safetensors" --test-subset 250 --batch-size 100 --threads 1 -o "$DIR/z.npy" \
  >"$DIR/enc_out.json" 2>"$DIR/err"
check "encode exits 0" test $? = 0 || cat "$DIR/err"
"$WCMI" encode --model "$DIR/lin/latest.safetensors" --test-subset 250 --repr logits --threads 1 -o "$DIR/logits" \
  >/dev/null 2>"$DIR/err"
check "encode --repr logits exits 0" test $? = 0 || cat "$DIR/err"
check "encode: z (250, 64) float32 with a partial last batch, int32 labels (250), logits (250, 10)" py - "$DIR" <<'EOF'
import sys, json
import numpy as np
d = sys.argv[1]
z = np.load(d + "/z.npy"); y = np.load(d + "/z.labels.npy"); l = np.load(d + "/logits.labels.npy")
lg = np.load(d + "/logits")  # no .npy suffix: written under the given name
assert z.shape == (250, 64) and z.dtype == np.float32, (z.shape, z.dtype)
assert y.shape == (250,) and y.dtype == np.int32 and set(y.tolist()) == set(range(10)), y
assert (l == y).all() and lg.shape == (250, 10) and np.isfinite(z).all()
# rows 200..249 came from the partial batch: not all zero, and distinct per sample
assert np.abs(z[200:]).sum() > 0 and len({r.tobytes() for r in z}) == 250
s = json.load(open(d + "/enc_out.json"))
assert s["rows"] == 250 and s["cols"] == 64 and s["repr"] == "z" and s["split"] == "test", s
EOF

# ---- errors: one line on stderr, exit 1 for runtime failures and 2 for usage errors ----
printf 'not a safetensors file at all' >"$DIR/bad.safetensors"
"$WCMI" eval --model "$DIR/bad.safetensors" --threads 1 >"$DIR/out" 2>"$DIR/err"; rc=$?
check "eval on a bad model file exits 1" test "$rc" = 1
check "eval bad file: one line on stderr, nothing on stdout" test "$(wc -l <"$DIR/err")" = 1 -a ! -s "$DIR/out"
check "eval bad file: message names the file" grep -q "bad.safetensors" "$DIR/err"
"$WCMI" eval --model "$ENC" --threads 1 >"$DIR/out" 2>"$DIR/err"; rc=$?
check "eval on an encoder without a head exits 1 with one line" test "$rc" = 1 -a "$(wc -l <"$DIR/err")" = 1
check "eval without head: says why" grep -q "no classifier head" "$DIR/err"
"$WCMI" train-classifier --model "$DIR/missing.safetensors" --out "$DIR/never" >"$DIR/out" 2>"$DIR/err"; rc=$?
check "train-classifier on a missing model exits 1 and creates no run directory" test "$rc" = 1 -a ! -e "$DIR/never"
"$WCMI" eval --model "$DIR/lin/latest.safetensors" --no-such-flag >"$DIR/out" 2>"$DIR/err"; rc=$?
check "eval with a bad flag exits 2" test "$rc" = 2
"$WCMI" eval --model "$DIR/lin/latest.safetensors" --attack nonsense >"$DIR/out" 2>"$DIR/err"; rc=$?
check "eval --attack nonsense exits 2" test "$rc" = 2
"$WCMI" train-classifier --model "$ENC" --head cubic --out "$DIR/never" >"$DIR/out" 2>"$DIR/err"; rc=$?
check "train-classifier --head cubic exits 2" test "$rc" = 2
"$WCMI" train-model --training sometimes --out "$DIR/never" >"$DIR/out" 2>"$DIR/err"; rc=$?
check "train-model --training sometimes exits 2" test "$rc" = 2
"$WCMI" encode --model "$ENC" >"$DIR/out" 2>"$DIR/err"; rc=$?
check "encode without -o exits 2" test "$rc" = 2
"$WCMI" encode --model "$ENC" --repr logits -o "$DIR/never.npy" >"$DIR/out" 2>"$DIR/err"; rc=$?
check "encode --repr logits of a headless model exits 1" test "$rc" = 1 -a ! -e "$DIR/never.npy"
for c in train-classifier train-model eval encode; do
  "$WCMI" "$c" --help >"$DIR/out" 2>&1
  check "$c --help exits 0 and shows usage" grep -q "usage: wcmi $c" "$DIR/out"
done
check "encode --help states the labels file" grep -q "labels.npy" "$DIR/out"

exit $fail
