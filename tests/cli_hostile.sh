#!/usr/bin/env bash
# Issue 17: what a hostile user tried. Data of the wrong shape, NaN / negative-variance / oversized
# models, run directories reused, locked, left half-written or with stale temporaries, Ctrl-C during
# the evaluation, FIFOs and devices as paths, absurd numbers in config.json and checkpoints, --threads,
# --epochs 0, a resume of another task's run (LeakSanitizer) and a checkpoint write that runs out of
# file size. Every hostile file is made here. Each check failed before the fix it guards.
set -uo pipefail
WCMI=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
fails=0; passes=0
ok() { passes=$((passes+1)); echo "ok: $1"; }
bad() { fails=$((fails+1)); echo "FAIL: $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
# one_line FILE: exactly one line, no sanitizer report
one_line() { [ "$(wc -l < "$1")" -eq 1 ] && ! grep -q 'Sanitizer\|runtime error' "$1"; }

# make_idx DIR SIDE [COUNT]: IDX files of COUNT (20) SIDE x SIDE images, train and t10k, in DIR.
make_idx() {
  $PY - "$1" "$2" "${3:-20}" <<'PYEOF'
import os, struct, sys
d, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for p in ('train', 't10k'):
    open(f'{d}/{p}-images-idx3-ubyte', 'wb').write(struct.pack('>IIII', 0x803, k, n, n) + bytes((i * 7 + i // 97) % 256 for i in range(k * n * n)))
    open(f'{d}/{p}-labels-idx1-ubyte', 'wb').write(struct.pack('>II', 0x801, k) + bytes(i % 10 for i in range(k)))
PYEOF
}
# Rewrites a safetensors file: set_meta FILE KEY VALUE, or poke FILE TENSOR INDEX FLOAT.
st_edit() {
  $PY - "$@" <<'PYEOF'
import json, struct, sys
op, path = sys.argv[1], sys.argv[2]
b = bytearray(open(path, 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); data = b[8+n:]
if op == 'meta':
    h['__metadata__'][sys.argv[3]] = sys.argv[4]
else:
    t = h[sys.argv[3]]; off = t['data_offsets'][0] + 4 * int(sys.argv[4])
    data[off:off+4] = struct.pack('<f', float(sys.argv[5]))
hj = json.dumps(h).encode(); hj += b' ' * ((8 - len(hj) % 8) % 8)
open(path, 'wb').write(struct.pack('<Q', len(hj)) + hj + bytes(data))
PYEOF
}

# Synthetic 28x28 data (fast to load; the real set takes seconds per command on a loaded machine).
make_idx "$T/d28" 28 64; make_idx "$T/dbig" 28 2000
Q=(--data fashion-mnist --data-dir "$T/d28" --profile quick --train-subset 0 --test-subset 0 --batch-size 16 --hsize 8
   --eval-batches 1 --attack-steps 1 --seed 1 --threads 1)
F=(--data fashion-mnist --data-dir "$T/d28" --threads 1)
"$WCMI" train-model --head mlp --training standard "${Q[@]}" --epochs 1 --out "$T/m" > /dev/null 2> "$T/m.err"
check "a small model trains (fixture)" "[ $? -eq 0 ] && [ -s '$T/m/latest.safetensors' ]"
M=$T/m/latest.safetensors
"$WCMI" train-encoder --objective normal "${Q[@]}" --epochs 1 --out "$T/e" > /dev/null 2>&1
check "a small encoder trains (fixture)" "[ -s '$T/e/latest.safetensors' ]"

# 1. Images that are not 28x28 under --data fashion-mnist: one line, exit 1, for every command.
make_idx "$T/d14" 14; make_idx "$T/d32" 32
"$WCMI" train-encoder --objective worst --data fashion-mnist --data-dir "$T/d14" --batch-size 4 --hsize 8 --epochs 1 \
  --out "$T/r14" > /dev/null 2> "$T/r14.err"
check "issue reproducer (14x14, worst): exit 1, one line naming the shapes" \
  "[ $? -eq 1 ] && one_line '$T/r14.err' && grep -q '1x14x14, but fashion-mnist models take 1x28x28' '$T/r14.err'"
check "the refused run leaves no config.json" "! [ -e '$T/r14/config.json' ]"
"$WCMI" train-encoder --objective normal --data fashion-mnist --data-dir "$T/d32" --batch-size 4 --hsize 8 --epochs 1 \
  --out "$T/r32" > /dev/null 2> "$T/r32.err"
check "32x32 IDX files are refused too" "[ $? -eq 1 ] && one_line '$T/r32.err' && grep -q '1x32x32' '$T/r32.err'"
D=(--data fashion-mnist --data-dir "$T/d14" --batch-size 4 --threads 1)
declare -A CMDS=(
  [encode]="encode --model $M -o $T/z.npy"
  [train-classifier]="train-classifier --model $M --head linear --training standard --epochs 1 --out $T/c14"
  [train-model]="train-model --head mlp --training standard --epochs 1 --out $T/t14"
  [estimate-mi]="estimate-mi --model $M --case normal --hsize 8 --epochs 1 --out $T/x14"
  [vulnerability]="vulnerability --model $M --hsize 8 --epochs 1 --out $T/v14"
  [eval]="eval --model $M"
)
"$WCMI" saliency --model "$M" --loss ce -n 2 -o "$T/s.png" --data fashion-mnist --data-dir "$T/d14" > /dev/null 2> "$T/saliency.err"
check "saliency refuses 14x14 data: exit 1, one line" "[ $? -eq 1 ] && one_line '$T/saliency.err' && grep -q '1x14x14' '$T/saliency.err'"
for c in "${!CMDS[@]}"; do
  # shellcheck disable=SC2086
  "$WCMI" ${CMDS[$c]} "${D[@]}" > "$T/$c.out" 2> "$T/$c.err"
  rc=$?
  check "$c refuses 14x14 data: exit 1, one line" "[ $rc -eq 1 ] && one_line '$T/$c.err' && grep -q '1x14x14' '$T/$c.err'"
done
check "encode wrote nothing from out-of-bounds memory" "! [ -e '$T/z.npy' ]"
# A 28x28 model on 32x32 data (CIFAR-10 batches) and a model that claims 32x32 inputs.
$PY - "$T/cifar" <<'PYEOF'
import os, sys
os.makedirs(sys.argv[1], exist_ok=True)
open(sys.argv[1] + '/test_batch.bin', 'wb').write(b''.join(bytes([i % 10]) + bytes(3072) for i in range(20)))
PYEOF
"$WCMI" eval --model "$M" --data cifar10 --data-dir "$T/cifar" --threads 1 > /dev/null 2> "$T/vv.err"
check "a 28x28 model refuses 32x32 data" "[ $? -eq 1 ] && one_line '$T/vv.err'"
cp "$M" "$T/m32.safetensors"; st_edit meta "$T/m32.safetensors" dataset cifar10
"$WCMI" eval --model "$T/m32.safetensors" "${F[@]}" > /dev/null 2> "$T/m32.err"
check "a model that claims 32x32x3 inputs refuses 28x28 data" "[ $? -eq 1 ] && one_line '$T/m32.err'"

# 2. Non-finite parameters and negative BN variances are refused on load, by every command.
cp "$M" "$T/nan.safetensors"; st_edit poke "$T/nan.safetensors" classifier.layer1.0.weight 3 nan
cp "$M" "$T/inf.safetensors"; st_edit poke "$T/inf.safetensors" encoder.layer0.0.weight 0 inf
cp "$M" "$T/var.safetensors"; st_edit poke "$T/var.safetensors" encoder.layer1.1.running_var 5 -1
cp "$M" "$T/varnan.safetensors"; st_edit poke "$T/varnan.safetensors" classifier.layer0.2.running_var 0 nan
for f in nan inf var varnan; do
  for c in eval "encode -o $T/n.npy" "estimate-mi --case normal --hsize 8 --epochs 1 --batch-size 16 --out $T/n_$f" \
           "train-classifier --head linear --training standard --epochs 1 --batch-size 16 --out $T/nc_$f" "saliency --loss ce -n 2 -o $T/n.png"; do
    # shellcheck disable=SC2086
    "$WCMI" ${c} --model "$T/$f.safetensors" "${F[@]}" > "$T/n.out" 2> "$T/n.err"
    rc=$?
    check "$f model refused by ${c%% *}" "[ $rc -eq 1 ] && one_line '$T/n.err' && grep -q 'NaN/Inf\|negative variance' '$T/n.err'"
  done
done

# 3. Metadata asking for a huge critic: refused before anything is built (small RSS), cause kept.
cp "$T/e/latest.safetensors" "$T/big.safetensors"; st_edit meta "$T/big.safetensors" hsize 16384
/usr/bin/time -f '%M' -o "$T/big.rss" "$WCMI" estimate-mi --model "$T/big.safetensors" --case normal --hsize 8 --epochs 1 \
  --batch-size 16 "${F[@]}" --out "$T/big" > /dev/null 2> "$T/big.err"
check "hsize 16384 against an H=8 file: exit 1, the tensor named" "grep -q 'hsize 16384 does not match tensor' '$T/big.err'"
check "... without allocating the model (RSS < 400 MB)" "[ \$(tail -1 '$T/big.rss') -lt 400000 ]"
cp "$T/e/latest.safetensors" "$T/huge.safetensors"; st_edit meta "$T/huge.safetensors" hsize 65536
"$WCMI" estimate-mi --model "$T/huge.safetensors" --case normal --hsize 8 --epochs 1 --batch-size 16 "${F[@]}" --out "$T/huge" > /dev/null 2> "$T/huge.err"
check "metadata hsize 65536 is out of range" "grep -q \"'hsize' = '65536' is not an integer in \\[0, 16384\\]\" '$T/huge.err'"
for h in 65536 10000000; do
  "$WCMI" train-encoder --objective normal "${Q[@]}" --hsize $h --epochs 1 --out "$T/h$h" > /dev/null 2> "$T/h.err"
  check "--hsize $h is a usage error (exit 2) before anything is written" "[ $? -eq 2 ] && one_line '$T/h.err' && ! [ -e '$T/h$h' ]"
done

# 4. Run directories: --out on a used one, --force, the lock, stale temporaries, a kill before the
# first checkpoint.
cp -r "$T/e" "$T/e0"
"$WCMI" train-encoder --objective normal "${Q[@]}" --epochs 1 --out "$T/e" > /dev/null 2> "$T/reuse.err"
check "--out on a finished run is refused" "[ $? -eq 1 ] && one_line '$T/reuse.err' && grep -q -- '--force' '$T/reuse.err'"
check "... and the run is untouched" "cmp -s '$T/e/latest.safetensors' '$T/e0/latest.safetensors' && cmp -s '$T/e/metrics.jsonl' '$T/e0/metrics.jsonl'"
"$WCMI" train-encoder --objective normal "${Q[@]}" --epochs 1 --seed 2 --out "$T/e" --force > /dev/null 2>&1
check "--force replaces it: metrics has epoch 0 once" "[ \$(wc -l < '$T/e/metrics.jsonl') -eq 1 ]"
flock "$T/e/.wcmi.lock" sleep 2 &
lockpid=$!
sleep 0.5
"$WCMI" train-encoder --objective normal --resume "$T/e" --epochs 2 --threads 1 > /dev/null 2> "$T/lock.err"
check "a second process cannot write a locked run directory" "[ $? -eq 1 ] && grep -q 'another wcmi process' '$T/lock.err'"
wait $lockpid 2>/dev/null # the lock goes with its holder
head -c 1000 /dev/zero > "$T/e/latest.safetensors.tmp.4242"; head -c 10 /dev/zero > "$T/e/metrics.jsonl.tmp.77"
"$WCMI" train-encoder --objective normal --resume "$T/e" --epochs 2 --threads 1 > /dev/null 2> "$T/tmp.err"
check "resume removes stale *.tmp.<pid> files" "[ $? -eq 0 ] && ! ls '$T/e/' | grep -q '\\.tmp\\.'"
check "... and metrics has epochs 0, 1" "$PY -c \"import json; r=[json.loads(l)['epoch'] for l in open('$T/e/metrics.jsonl')]; assert r==[0,1], r\""
mkdir -p "$T/k"; cp "$T/e0/config.json" "$T/k/"   # what a kill before the first checkpoint leaves
"$WCMI" train-encoder --objective normal --resume "$T/k" --threads 1 > /dev/null 2> "$T/k.err"
check "--resume before the first checkpoint: one clear line" "[ $? -eq 1 ] && one_line '$T/k.err' && grep -q 'no checkpoint yet' '$T/k.err'"
"$WCMI" train-encoder --objective normal "${Q[@]}" --epochs 1 --out "$T/k" --force > /dev/null 2>&1
check "... and --force restarts it with each epoch once" "[ \$(wc -l < '$T/k/metrics.jsonl') -eq 1 ]"

# 5. Ctrl-C during the end-of-epoch evaluation: noticed within a batch, checkpoint, exit 130; the
# resumed run evaluates that epoch once. "Within a batch" is a few seconds in Release; the -O0
# sanitizer build runs a batch's 40-step attack 10-20x slower, so its bound is scaled by 6.
slow=1; [ -n "${WCMI_SANITIZED:-}" ] && slow=6
"$WCMI" train-model --head mlp --training standard --data fashion-mnist --data-dir "$T/dbig" --batch-size 16 \
  --max-batches 1 --attack-steps 40 --hsize 8 --epochs 1 --threads 1 --out "$T/i" > /dev/null 2> "$T/i.err" &
pid=$!
for _ in $(seq 300); do [ -e "$T/i/config.json" ] && break; sleep 0.05; done
sleep 2
t0=$(date +%s.%N); kill -INT $pid; wait $pid; rc=$?; t1=$(date +%s.%N)
check "Ctrl-C in the evaluation exits 130 within 5 s (x$slow)" "[ $rc -eq 130 ] && $PY -c 'import sys; sys.exit(not ($t1 - $t0 < 5 * $slow))'"
check "... after saving a checkpoint" "grep -q 'interrupted during the evaluation' '$T/i.err' && [ -s '$T/i/latest.safetensors' ]"
"$WCMI" train-model --resume "$T/i" --threads 1 --eval-batches 1 > /dev/null 2>&1
check "... and the resumed run evaluates epoch 0 once" "[ \$(wc -l < '$T/i/metrics.jsonl') -eq 1 ]"
"$WCMI" eval --model "$M" --data fashion-mnist --data-dir "$T/dbig" --attack strong --attack-steps 40 --batch-size 20 --threads 1 > /dev/null 2> "$T/ev.err" &
pid=$!; sleep 3
t0=$(date +%s.%N); kill -INT $pid; wait $pid; rc=$?; t1=$(date +%s.%N)
check "Ctrl-C in eval exits 130 within 10 s (x$slow)" "[ $rc -eq 130 ] && $PY -c 'import sys; sys.exit(not ($t1 - $t0 < 10 * $slow))'"

# 6. Paths that are not regular files never hang; info reads only the header.
mkfifo "$T/fifo"
timeout 20 "$WCMI" info "$T/fifo" > /dev/null 2> "$T/f1.err"
check "info on a FIFO: exit 1 at once" "[ $? -eq 1 ] && grep -q 'a FIFO' '$T/f1.err'"
timeout 20 "$WCMI" eval --model "$T/fifo" "${F[@]}" > /dev/null 2> "$T/f2.err"
check "eval --model FIFO: exit 1 at once" "[ $? -eq 1 ] && grep -q 'a FIFO' '$T/f2.err'"
timeout 20 "$WCMI" eval --model /dev/zero "${F[@]}" > /dev/null 2> "$T/f3.err"
check "eval --model /dev/zero: exit 1 (a device)" "[ $? -eq 1 ] && grep -q 'a device' '$T/f3.err'"
mkdir -p "$T/ff"; mkfifo "$T/ff/config.json"
timeout 20 "$WCMI" train-encoder --resume "$T/ff" > /dev/null 2> "$T/f4.err"
check "--resume with a FIFO config.json: exit 1 at once" "[ $? -eq 1 ] && grep -q 'a FIFO' '$T/f4.err'"
make_idx "$T/dfifo" 28; rm "$T/dfifo/t10k-labels-idx1-ubyte"; mkfifo "$T/dfifo/t10k-labels-idx1-ubyte"
timeout 20 "$WCMI" eval --model "$M" --data fashion-mnist --data-dir "$T/dfifo" > /dev/null 2> "$T/f5.err"
check "a FIFO as a data file: exit 1 at once" "[ $? -eq 1 ] && one_line '$T/f5.err'"
cp "$M" "$T/sparse.safetensors"; truncate -s 4G "$T/sparse.safetensors"
/usr/bin/time -f '%M' -o "$T/sp.rss" "$WCMI" info "$T/sparse.safetensors" > /dev/null 2> "$T/sp.err"
check "info on a 4 GiB file reads only the header (RSS < 100 MB)" "[ \$(tail -1 '$T/sp.rss') -lt 100000 ] && grep -q 'not covered by any tensor' '$T/sp.err'"

# Numbers read back by --resume are range-checked as the command line checks them.
cfg_edit() { $PY -c "import json,sys; p='$1/config.json'; c=json.load(open(p)); c$2; json.dump(c, open(p,'w'))"; }
for edit in "['epochs']=4294967298" "['epochs']='abc'" "['batch_size']=4294967298" "['train_subset']=-7" "['hsize']=65536" \
            "['lr']=-1" "['attack']['norm']='l3'" "['max_batches']=-1"; do
  rm -rf "$T/rc"; cp -r "$T/e0" "$T/rc"; cfg_edit "$T/rc" "$edit"
  "$WCMI" train-encoder --resume "$T/rc" --threads 1 > /dev/null 2> "$T/rc.err"
  check "config.json with $edit is refused" "[ $? -eq 1 ] && one_line '$T/rc.err' && grep -q 'config.json' '$T/rc.err'"
done
for kv in "epoch 4294967298" "epoch abc" "batch -1" "partial x" "best nan"; do
  rm -rf "$T/rc"; cp -r "$T/e0" "$T/rc"; st_edit meta "$T/rc/latest.safetensors" $kv
  "$WCMI" train-encoder --resume "$T/rc" --threads 1 --epochs 3 > /dev/null 2> "$T/rc.err"
  check "checkpoint metadata $kv is refused" "[ $? -eq 1 ] && one_line '$T/rc.err' && grep -q 'malformed or out of range' '$T/rc.err'"
done
for th in 0 100000; do
  "$WCMI" train-encoder --objective normal "${Q[@]}" --threads $th --epochs 1 --out "$T/th" > /dev/null 2> "$T/th.err"
  check "--threads $th is a usage error" "[ $? -eq 2 ] && grep -q 'threads must be in' '$T/th.err'"
done
"$WCMI" train-encoder --objective normal "${Q[@]}" --epochs 0 --out "$T/z0" > "$T/z0.json" 2> /dev/null
check "--epochs 0 reports an MI it computed (not 0)" "$PY -c \"import json; s=json.load(open('$T/z0.json')); assert s['test_mi_normal'] != 0, s\""
"$WCMI" train-classifier --resume "$T/e0" --threads 1 > /dev/null 2> "$T/other.err"
check "resuming another task's run: exit 2, one line, no leak report" "[ $? -eq 2 ] && one_line '$T/other.err' && grep -q \"holds a 'train-encoder' run\" '$T/other.err'"

# 8. A checkpoint write that fails part way (file size limit: a short write, then EFBIG) leaves the
# previous checkpoint byte-identical and no temporary behind.
rm -rf "$T/w"; cp -r "$T/e0" "$T/w"; cp "$T/w/latest.safetensors" "$T/w.before"
( trap '' XFSZ; ulimit -f 2048; exec "$WCMI" train-encoder --resume "$T/w" --epochs 2 --threads 1 ) > /dev/null 2> "$T/w.err"
check "a short checkpoint write: exit 1, one line" "[ $? -eq 1 ] && one_line '$T/w.err' && grep -q 'write failed\|flush to disk failed' '$T/w.err'"
check "... the previous checkpoint is byte-identical" "cmp -s '$T/w/latest.safetensors' '$T/w.before'"
check "... and no temporary is left" "! ls '$T/w/' | grep -q '\\.tmp\\.'"

# An allocation failing anywhere (WCMI_FAULT_ALLOC=k, the test hook of wcmi_ctx; every k is swept
# in tests/test_fault_alloc.c): exit 1, one line, the checkpoint intact.
for k in 1 10 100 1000; do
  rm -rf "$T/fa"; cp -r "$T/e0" "$T/fa"
  WCMI_FAULT_ALLOC=$k "$WCMI" train-encoder --resume "$T/fa" --epochs 2 --threads 1 > /dev/null 2> "$T/fa.err"
  check "allocation $k fails: exit 1, one line, checkpoint intact" \
    "[ $? -eq 1 ] && one_line '$T/fa.err' && grep -q 'out of memory' '$T/fa.err' && cmp -s '$T/fa/latest.safetensors' '$T/e0/latest.safetensors'"
done

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
