#!/usr/bin/env bash
# Same-weights parity with PyTorch (issue 5): wcmi and bench/torch_ref.py's modules, loaded with the
# same safetensors weights (PyTorch: load_state_dict(strict=True)), must agree on the encoder
# output z, the local/global estimator features, the DV MI loss, the input gradient of the MI loss
# along both gradient paths, the head's logits and (second direction) every parameter gradient.
#
#  1. wcmi -> PyTorch: bench_parity_dump make writes a wcmi-initialized model (BN/LN affine and
#     running statistics made non-trivial) and an input batch (8 x 1x28x28, H = 32); both sides
#     compute their outputs, BN in eval mode (running statistics) and in train mode (batch stats).
#  2. PyTorch -> wcmi: torch_parity.py make writes a PyTorch-initialized model with float64
#     reference outputs and parameter gradients (BN eval and train); wcmi loads and recomputes.
# PyTorch's references are float64 (torch_parity.py's default), so the errors are wcmi's float32
# error. Relative error of a tensor = max|got - ref| / max|ref| (rel_max) and ||got - ref|| / ||ref||
# (rel_l2); both must be < 1e-4. A parameter gradient that is zero in exact arithmetic (the bias of a
# linear layer feeding a train-mode BatchNorm: BN removes the mean, so its gradient is 0 and PyTorch's
# float64 value is ~1e-15) has no meaningful relative error; such tensors (max|ref| below 1e-9 of the
# largest gradient) must instead be below 1e-6 of the largest gradient in absolute value.
# Small models (H = 32, N = 8) keep float32 ReLU flips away from the gradients (bench/README.md).
#
# Without python3-torch this test prints SKIPPED visibly and exits 77, which ctest reports as skipped.
set -u
WCMI="$1"
BUILD="${2:-.}"
SRC="${WCMI_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
PY="${WCMI_PARITY_PYTHON:-/usr/bin/python3}" # override only to exercise the skip path
DUMP="$BUILD/bench_parity_dump"
PARITY="$SRC/bench/torch_parity.py"

if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "SKIPPED: python3-torch not installed (same-weights parity with PyTorch not checked)"
  echo "0 passed, 0 failed, 1 skipped"
  exit 77  # ctest: SKIP_RETURN_CODE
fi
if ! [ -x "$DUMP" ]; then
  echo "FAIL: $DUMP not built"
  echo "0 passed, 1 failed"
  exit 1
fi

T="$(mktemp -d "${TMPDIR:-/tmp}/wcmi-parity.XXXXXX")"
trap 'rm -rf "$T"' EXIT
passes=0
fails=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; passes=$((passes + 1)); else echo "FAIL $what"; fails=$((fails + 1)); fi
}

# compare REF_DIR GOT_DIR NAMES [PARAM_GRADS]: prints per-tensor errors, exits 1 on any failure.
compare() {
  "$PY" - "$@" <<'EOF'
import json, os, struct, sys
import numpy as np
ref_dir, got_dir, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
params = len(sys.argv) > 4 and sys.argv[4] == "params"
f32_dir = sys.argv[5] if len(sys.argv) > 5 else None  # PyTorch float32 on the same model (params only)
TOL, ZERO_FLOOR, ZERO_ABS = 1e-4, 1e-9, 1e-6

def read_st(path):  # safetensors: u64 header length, JSON header, raw little-endian data
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    head = json.loads(blob[8:8 + n])
    head.pop("__metadata__", None)
    dt = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    out = {}
    for k, v in head.items():
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(blob[8 + n + b:8 + n + e], dtype=dt[v["dtype"]]).reshape(v["shape"]).astype(np.float64)
    return out

base = {}
if params:
    ref, got = read_st(os.path.join(ref_dir, "param_grads.safetensors")), read_st(os.path.join(got_dir, "param_grads.safetensors"))
    names = sorted(ref)
    if f32_dir and os.path.exists(os.path.join(f32_dir, "param_grads.safetensors")):
        base = read_st(os.path.join(f32_dir, "param_grads.safetensors"))
else:
    ref = {k: np.load(os.path.join(ref_dir, k + ".npy")).astype(np.float64) for k in names}
    got = {k: np.load(os.path.join(got_dir, k + ".npy")).astype(np.float64)
           for k in names if os.path.exists(os.path.join(got_dir, k + ".npy"))}
scale = max(float(np.abs(a).max()) for a in ref.values())
ok, worst = True, (0.0, "")
for k in names:
    if k not in got or got[k].size != ref[k].size:
        print("  %s: missing or wrong size in %s" % (k, got_dir)); ok = False; continue
    a, b = ref[k], got[k].reshape(ref[k].shape)
    diff = float(np.abs(a - b).max())
    amax = float(np.abs(a).max())
    if amax < ZERO_FLOOR * scale:  # zero in exact arithmetic: absolute check against the largest tensor
        good = diff < ZERO_ABS * scale
        if not good or not params:
            print("  %-40s zero reference: max|diff| %.2e (bound %.2e)" % (k, diff, ZERO_ABS * scale))
    else:
        rel_max = diff / amax
        rel_l2 = float(np.linalg.norm(a - b) / np.linalg.norm(a))
        good = rel_max < TOL and rel_l2 < TOL
        worst = max(worst, (rel_max, k))
        if not params or not good:
            print("  %-40s rel_max %.2e  rel_l2 %.2e" % (k, rel_max, rel_l2))
        if not good and k in base:
            # A cancellation-limited tensor: float32 PyTorch misses 1e-4 on it too. Bound: 3x its error.
            f32 = float(np.abs(a - base[k].reshape(a.shape)).max()) / amax
            good = rel_max <= 3 * max(f32, TOL / 3)
            print("  %-40s PyTorch float32 rel_max %.2e on it: %s (bound 3x)" % (k, f32, "ok" if good else "too far"))
    ok = ok and good
if params:
    print("  %d parameter gradients, largest rel_max %.2e (%s)" % (len(names), worst[0], worst[1]))
sys.exit(0 if ok else 1)
EOF
}

OUTS=z,local,global,dv_loss,grad_encoder,grad_both

# 1. wcmi-written model -> PyTorch
"$DUMP" make --model "$T/wcmi.safetensors" --input "$T/x.npy" --hsize 32 --batch 8 --seed 3 --head mlp
check "wcmi writes a random-init model and an input batch" test $? -eq 0 -a -s "$T/wcmi.safetensors"
for bn in eval train; do
  mkdir -p "$T/w-$bn" "$T/t-$bn"
  "$DUMP" run --weights "$T/wcmi.safetensors" --input "$T/x.npy" --out "$T/w-$bn" --bn "$bn"
  check "wcmi computes its outputs (BN $bn)" test $? -eq 0
  "$PY" "$PARITY" run --weights "$T/wcmi.safetensors" --input "$T/x.npy" --out "$T/t-$bn" --bn "$bn" > /dev/null
  check "PyTorch loads wcmi's safetensors strictly (BN $bn)" test $? -eq 0
  check "wcmi model: z, features, DV loss, input gradients, logits agree (BN $bn)" \
    compare "$T/t-$bn" "$T/w-$bn" "$OUTS,logits"
done

# 2. PyTorch-written model -> wcmi, with parameter gradients
for bn in eval train; do
  R="$T/torch-$bn"
  "$PY" "$PARITY" make --out "$R" --hsize 32 --batch 8 --seed 5 --head none --bn "$bn" --param-grads > /dev/null
  check "PyTorch writes a random-init model with references (BN $bn)" test $? -eq 0
  mkdir -p "$R/w"
  "$DUMP" run --weights "$R/model.safetensors" --input "$R/input.npy" --out "$R/w" --bn "$bn" --param-grads
  check "wcmi loads PyTorch's safetensors and computes (BN $bn)" test $? -eq 0
  check "PyTorch model: z, features, DV loss, input gradients agree (BN $bn)" compare "$R" "$R/w" "$OUTS"
  if ! compare "$R" "$R/w" "$OUTS" params; then
    # Some gradients (LayerNorm biases: sums over locations of terms that cancel) are limited by
    # float32 rounding whatever the code; judge them against PyTorch's own float32 on the same model.
    "$PY" "$PARITY" make --out "$R/f32" --hsize 32 --batch 8 --seed 5 --head none --bn "$bn" --param-grads \
      --dtype float32 > /dev/null
  fi
  check "PyTorch model: all parameter gradients agree (BN $bn)" compare "$R" "$R/w" "$OUTS" params "$R/f32"
done

# A PyTorch-written model with an MLP head and no "head" metadata: wcmi reads the head off the tensor
# names, and its logits match PyTorch's.
R="$T/torch-head"
"$PY" "$PARITY" make --out "$R" --hsize 32 --batch 8 --seed 7 --head mlp > /dev/null
mkdir -p "$R/w"
"$DUMP" run --weights "$R/model.safetensors" --input "$R/input.npy" --out "$R/w" --bn eval > /dev/null
check "wcmi infers the MLP head of a PyTorch file without head metadata" test -s "$R/w/logits.npy"
check "PyTorch MLP head: logits agree" compare "$R" "$R/w" z,logits

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
