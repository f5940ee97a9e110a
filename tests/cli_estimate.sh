#!/usr/bin/env bash
# wcmi estimate-mi and vulnerability, end to end on a tiny budget: a train-encoder model from a few
# batches, then the normal and worst case, then vulnerability; run files, JSON fields, RV and the
# Fano bound recomputed here, usage errors. Numbers are not judged (too few steps to mean anything).
set -u
WCMI="$1"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/wcmi-cli-estimate.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT
PY=/usr/bin/python3
fail=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
export WCMI_NUM_THREADS="${WCMI_NUM_THREADS:-1}"
# The same small budget for every run: 1 batch of 64 per epoch, 2 held-out batches, 2 PGD steps.
SMALL=(--profile quick --train-subset 256 --test-subset 128 --batch-size 64 --max-batches 1 --eval-batches 2
       --hsize 16 --attack-steps 2 --attack-lr 0.05)

"$WCMI" train-encoder "${SMALL[@]}" --epochs 1 --out "$DIR/enc" >/dev/null 2>"$DIR/err"
check "train-encoder makes a model" test -f "$DIR/enc/latest.safetensors"
MODEL="$DIR/enc/latest.safetensors"

"$WCMI" estimate-mi --model "$MODEL" --case normal "${SMALL[@]}" --epochs 3 --critics 2 --out "$DIR/normal" >"$DIR/normal.json" 2>"$DIR/err"
check "estimate-mi normal exits 0" test $? = 0
for f in config.json estimate.json metrics.jsonl best.safetensors latest.safetensors summary.json; do
  check "normal run has $f" test -f "$DIR/normal/$f"
done
check "normal: 3 metrics lines" test "$(wc -l < "$DIR/normal/metrics.jsonl")" = 3
check "normal: summary fields" "$PY" - "$DIR/normal.json" <<'PYEOF'
import json, math, sys
s = json.load(open(sys.argv[1]))
assert s["task"] == "estimate-mi" and s["case"] == "normal", s
assert s["representation"] == "z" and s["representation_dim"] == 64
assert math.isfinite(s["test_mi"]) and math.isfinite(s["train_mi_selected"])
assert s["selected_epoch"] in (0, 1, 2) and s["test_samples"] == 128
assert s["attack"] is None and s["refit"] is None
assert s["estimator"]["name"] == "dv" and s["estimator"]["hsize"] == 16
# Algorithm 2: the selected epoch is the one with the best training MI estimate
m = [json.loads(l) for l in open(sys.argv[1].replace("normal.json", "normal/metrics.jsonl"))]
best = max(range(len(m)), key=lambda i: m[i]["mi"])
assert best == s["selected_epoch"], (best, s["selected_epoch"])
assert abs(m[best]["mi"] - s["train_mi_selected"]) < 1e-5
# two critics: critic 0 in the run directory, critic 1 in critic-1; test_mi is their mean
assert s["critics"] == 2 and len(s["test_mi_per_critic"]) == 2, s
c1 = json.load(open(sys.argv[1].replace("normal.json", "normal/critic-1/summary.json")))
assert s["test_mi_per_critic"][1] == c1["test_mi"] and c1["seed"] != s["seed"]
assert abs(s["test_mi"] - sum(s["test_mi_per_critic"]) / 2) < 1e-6
assert s["test_mi_std"] >= 0 and s["test_mi_sem"] >= 0
PYEOF

# The quick profile's estimation critic is 64 wide unless --hsize is given (encoders keep 256).
"$WCMI" estimate-mi --model "$MODEL" --case normal --profile quick --train-subset 256 --test-subset 128 --batch-size 64 \
  --max-batches 1 --eval-batches 1 --critics 1 --out "$DIR/h64" >/dev/null 2>"$DIR/err"
check "estimate-mi quick: a 64-wide critic for 2 epochs by default" "$PY" -c "import json,sys; c = json.load(open('$DIR/h64/config.json')); sys.exit(c['hsize'] != 64 or c['epochs'] != 2)"

"$WCMI" estimate-mi --model "$MODEL" --case worst "${SMALL[@]}" --epochs 1 --refit-max-epochs 3 --refit-patience 1 \
  --critics 1 --out "$DIR/worst" >"$DIR/worst.json" 2>"$DIR/err"
check "estimate-mi worst exits 0" test $? = 0
check "worst: summary fields" "$PY" - "$DIR/worst.json" <<'PYEOF'
import json, math, sys
s = json.load(open(sys.argv[1]))
assert s["case"] == "worst" and math.isfinite(s["test_mi"])
a = s["attack"]
assert a["steps"] == 2 and abs(a["eps"] - 0.1) < 1e-6 and a["norm"] == "linf" and a["batchnorm"] == "eval"
r = s["refit"]
assert math.isfinite(r["mi"]) and r["fit_samples"] == 64 and r["heldout_samples"] == 64 and r["batch_size"] == 64
# patience 1: stops after the first epoch without held-out gain; the value is the best held-out one
assert 1 <= r["epochs"] <= 3 and len(r["curve"]) == r["epochs"]
assert abs(max(c["heldout_mi"] for c in r["curve"]) - r["mi"]) < 1e-6
assert r["curve"][r["best_epoch"]]["heldout_mi"] == r["mi"]
# the same critic on the same held-out batches without the attack
assert math.isfinite(s["test_mi_clean"]) and "critics" not in s
PYEOF

"$WCMI" vulnerability --model "$MODEL" "${SMALL[@]}" --epochs 1 --refit-max-epochs 2 --critics 2 --out "$DIR/vul" >"$DIR/vul.json" 2>"$DIR/vul.err"
check "vulnerability exits 0" test $? = 0
check "vulnerability: both case runs" test -f "$DIR/vul/normal/summary.json" -a -f "$DIR/vul/worst/summary.json"
check "vulnerability: summary.json equals stdout" "$PY" -c "import json,sys; assert json.load(open('$DIR/vul/summary.json')) == json.load(open('$DIR/vul.json'))"
check "vulnerability: RV and Fano recomputed" "$PY" - "$DIR/vul.json" "$DIR/vul" <<'PYEOF'
import json, math, sys
s = json.load(open(sys.argv[1]))
d = sys.argv[2]
runs = [(d + "/normal", d + "/worst"), (d + "/critic-1/normal", d + "/critic-1/worst")]
n = [json.load(open(a + "/summary.json")) for a, _ in runs]
w = [json.load(open(b + "/summary.json")) for _, b in runs]
assert s["critics"] == 2
assert s["normal_mi_per_critic"] == [x["test_mi"] for x in n] and s["worst_mi_per_critic"] == [x["test_mi"] for x in w]
assert s["worst_mi_refit_per_critic"] == [x["refit"]["mi"] for x in w]
mean = lambda v: sum(v) / len(v)
sd = lambda v: math.sqrt(sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1))
for k in ("normal_mi", "worst_mi", "worst_mi_refit", "rv", "rv_refit", "attack_drop"):
    v = s[k + "_per_critic"]
    assert abs(s[k] - mean(v)) < 1e-6 and abs(s[k + "_std"] - sd(v)) < 1e-6, k
for k in range(2):
    assert abs(s["rv_per_critic"][k] - (n[k]["test_mi"] - w[k]["test_mi"])) < 1e-6
    assert abs(s["attack_drop_per_critic"][k] - (w[k]["test_mi_clean"] - w[k]["test_mi"])) < 1e-6
assert n[0]["seed"] == w[0]["seed"] != n[1]["seed"] == w[1]["seed"]
assert abs(s["rv"] - (s["normal_mi"] - s["worst_mi"])) < 1e-6
fano = min(1.0, (max(0.0, s["worst_mi"]) + math.log(2)) / math.log(10))
assert abs(s["fano_bound"] - fano) < 1e-6, (s["fano_bound"], fano)
assert "mean over the critics" in s["fano_estimate"]
assert s["attack"]["steps"] == 2 and s["estimator"]["name"] == "dv" and s["representation"] == "z"
PYEOF
check "vulnerability: mean ± std table on stderr" grep -q "RV = normal - worst .* ± " "$DIR/vul.err"

# The Fano bound needs an MI lower bound in nats: none for the f-divergence estimator.
"$WCMI" vulnerability --model "$MODEL" "${SMALL[@]}" --epochs 1 --refit-max-epochs 1 --critics 1 --estimator fd \
  --out "$DIR/vulfd" >"$DIR/vulfd.json" 2>"$DIR/vulfd.err"
check "vulnerability fd exits 0" test $? = 0
check "vulnerability fd: no Fano bound, a reason" "$PY" - "$DIR/vulfd.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["fano_bound"] is None and s["fano_bound_refit"] is None, s["fano_bound"]
assert "f-divergence" in s["fano_note"] and s["critics"] == 1 and s["normal_mi_std"] is None
PYEOF
check "vulnerability fd: table says n/a" grep -q "Fano bound *n/a" "$DIR/vulfd.err"

# per-neuron: 2 channels of the second conv, 10x10 receptive-field patches, 49 locations per image
"$WCMI" vulnerability --per-neuron --layer layer1.0 --neurons 2 --model "$MODEL" "${SMALL[@]}" --epochs 1 \
  --neuron-train-samples 128 --neuron-test-samples 128 --out "$DIR/pn" >"$DIR/pn.json" 2>"$DIR/err"
check "per-neuron exits 0" test $? = 0
check "per-neuron writes per_neuron.json" test -f "$DIR/pn/per_neuron.json"
check "per-neuron: fields, rv, histogram" "$PY" - "$DIR/pn.json" <<'PYEOF'
import json, math, sys
s = json.load(open(sys.argv[1]))
assert s["layer"] == "layer1.0" and s["receptive_field"] == 10 and s["locations"] == 49, s
assert s["channels"] == 128 and s["analysed"] == 2 and len(s["neurons"]) == 2
for i, n in enumerate(s["neurons"]):
    assert n["channel"] == i and math.isfinite(n["normal_mi"]) and math.isfinite(n["worst_mi"])
    assert abs(n["rv"] - (n["normal_mi"] - n["worst_mi"])) < 1e-6
for key in ("normal_mi", "worst_mi", "rv"):
    h = s["histogram"][key]
    assert sum(h["counts"]) == 2 and len(h["edges"]) == len(h["counts"]) + 1
assert s["attack"]["steps"] == 2
PYEOF
"$WCMI" vulnerability --per-neuron --layer layer4.0 --model "$MODEL" "${SMALL[@]}" --out "$DIR/pn2" >/dev/null 2>"$DIR/err"
check "per-neuron on a linear layer: exit 1" test $? = 1
check "per-neuron error names the layer" grep -q "layer4.0" "$DIR/err"
"$WCMI" vulnerability --layer layer1.0 --model "$MODEL" --out "$DIR/pn3" >/dev/null 2>"$DIR/err"
check "--layer without --per-neuron: exit 2" test $? = 2

# usage and runtime errors
"$WCMI" estimate-mi --case worst --out "$DIR/x" "${SMALL[@]}" >/dev/null 2>"$DIR/err"
check "no --model: exit 2" test $? = 2
"$WCMI" estimate-mi --model "$MODEL" --case sideways --out "$DIR/x" >/dev/null 2>"$DIR/err"
check "bad --case: exit 2" test $? = 2
"$WCMI" estimate-mi --model "$MODEL" --repr logits --out "$DIR/x" "${SMALL[@]}" --epochs 1 >/dev/null 2>"$DIR/err"
check "--repr logits without a head: exit 1" test $? = 1
check "--repr logits error names the file" grep -q "latest.safetensors.*classifier head" "$DIR/err"
"$WCMI" estimate-mi --model "$DIR/missing.safetensors" --out "$DIR/x" "${SMALL[@]}" >/dev/null 2>"$DIR/err"
check "missing model: exit 1" test $? = 1
"$WCMI" vulnerability --help >/dev/null
check "vulnerability --help exits 0" test $? = 0

exit $fail
