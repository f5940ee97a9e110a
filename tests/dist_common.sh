# Shared by the tests/mpi_*.sh data-parallel tests (sourced): arguments WCMI MPIEXEC, a scratch
# directory $T, check/ok/bad counters, run2 (2 ranks), tensor and loss comparisons.
set -uo pipefail
WCMI=$1
MPIRUN=${2:-mpirun}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
fails=0; passes=0
ok() { passes=$((passes+1)); echo "ok: $1"; }
bad() { fails=$((fails+1)); echo "FAIL: $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
run2() { "$MPIRUN" --oversubscribe -np 2 "$WCMI" "$@"; }

COMMON=(--data fashion-mnist --profile quick --train-subset 256 --test-subset 64 --batch-size 32 --hsize 16
        --eval-batches 1 --attack-steps 3 --random-start --seed 3 --threads 1)

# Compares two runs' tensors: mode "bits" (byte for byte) or "close LR [PREFIX]" (Adam moments to
# 1e-3 of each tensor's largest; parameters one Adam step of size LR apart at most, and equal to
# float precision wherever the gradient is not near 0; tensors named PREFIX* only within the step
# bound).
compare() {
  $PY - "$@" <<'PYEOF'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8+n]); h.pop('__metadata__', None)
    out = {}
    for k, v in h.items():
        raw = b[8+n+v['data_offsets'][0]:8+n+v['data_offsets'][1]]
        out[k] = np.frombuffer(raw, dtype=np.float32 if v['dtype'] == 'F32' else np.int64).astype(np.float64)
    return out
a, b, mode = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
assert sorted(a) == sorted(b), 'different tensor names'
if mode == 'bits':
    diff = [k for k in a if not np.array_equal(a[k], b[k])]
    if diff: print('differ:', diff[:5]); sys.exit(1)
    sys.exit(0)
lr = float(sys.argv[4]); worst = []
skip = sys.argv[5] if len(sys.argv) > 5 else None  # prefix held to the Adam-step bound only
# A parameter whose gradient is zero in exact arithmetic (a bias right before a BatchNorm) gets
# rounding noise for a gradient, and Adam turns noise into full steps: the step bound only.
gmax = max(np.abs(b[k]).max() for k in b if k.endswith('.exp_avg'))
noise = {k[len('optim.'):-len('.exp_avg')] for k in b if k.endswith('.exp_avg') and np.abs(b[k]).max() < 1e-6 * gmax}
for k in a:
    if k.startswith('rng.'): continue
    base = k[len('optim.'):].rsplit('.', 1)[0] if k.startswith('optim.') else k
    if (skip and base.startswith(skip)) or base in noise:
        if not k.startswith('optim.') and np.abs(a[k] - b[k]).max() > 2.05 * lr + 1e-6: print(k, 'moved more than one step apart'); sys.exit(1)
        continue
    d = np.abs(a[k] - b[k]); scale = np.maximum(np.abs(b[k]), 1.0)
    if k.startswith('optim.') and 'exp_avg' in k:  # moments of the gradient: relative to the largest
        err = d.max() / max(np.abs(b[k]).max(), 1e-30); worst.append((err, k))
        if err > 1e-3: print(k, 'moment differs by', err); sys.exit(1)
        continue
    if d.max() > 2.05 * lr + 1e-5 * scale.max(): print(k, 'differs by', d.max()); sys.exit(1)
    # Adam's first steps are lr * sign(gradient): values may part only where the gradient is near 0.
    m = np.abs(b['optim.' + k + '.exp_avg']) if 'optim.' + k + '.exp_avg' in b else None
    apart = d > 1e-6 * scale
    if m is not None: apart &= m > 1e-3 * m.max()
    if apart.sum() > 0: print(k, 'has', int(apart.sum()), 'of', d.size, 'values apart where the gradient is not near 0'); sys.exit(1)
PYEOF
}
loss_of() { $PY -c "import json,sys; print(json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2])])['$3'])" "$1" "$2"; }
close() { $PY -c "import sys; a,b,r=map(float,sys.argv[1:4]); sys.exit(not abs(a-b)<=r*abs(b))" "$1" "$2" "$3"; }

