#!/usr/bin/env bash
# wcmi demo is the quick Fashion-MNIST table of wcmi reproduce: its documented flags still work, it
# prints the reproduce table, and `wcmi reproduce` with the same budget into the demo's directory
# finds every stage already done (the same stages, not a second pipeline). Tiny synthetic data.
set -uo pipefail
WCMI=$1
SRC=${WCMI_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; passes=0
check() { if eval "$2"; then passes=$((passes+1)); echo "ok: $1"; else fails=$((fails+1)); echo "FAIL: $1"; fi; }
/usr/bin/python3 "$SRC/tests/tiny_fashion_mnist.py" "$T/data"

# The flags the demo documented before it became an alias, all of them.
"$WCMI" demo --data-dir "$T/data" --train-subset 40 --test-subset 10 --encoder-epochs 1 --head-epochs 1 \
  --mi-epochs 1 --hsize 8 --head-lr 2e-3 --seed 0 --max-batches 1 --eval-batches 1 --threads 1 --conv-algo auto \
  --robust-head-epochs 1 --model-epochs 1 --batch-size 4 --out "$T/demo" > "$T/table.txt" 2> "$T/err.txt"
rc=$?
check "demo exits 0" "[ $rc -eq 0 ] || { tail -5 '$T/err.txt'; false; }"
check "demo prints the reproduce table for Fashion-MNIST (quick)" \
  "grep -q 'wcmi reproduce: fashion-mnist, profile quick' '$T/table.txt' && grep -q 'worst-mi / robust' '$T/table.txt'"
check "demo writes reproduce.json, table.md and report.html" \
  "[ -s '$T/demo/reproduce.json' ] && [ -s '$T/demo/table.md' ] && grep -q '<svg' '$T/demo/report.html'"
"$WCMI" reproduce --data fashion-mnist --profile quick --data-dir "$T/data" --train-subset 40 --test-subset 10 \
  --encoder-epochs 1 --head-epochs 1 --mi-epochs 1 --hsize 8 --head-lr 2e-3 --max-batches 1 \
  --eval-batches 1 --threads 1 --robust-head-epochs 1 --model-epochs 1 --batch-size 4 --out "$T/demo" \
  > "$T/again.txt" 2> "$T/again.err"
rc=$?
check "reproduce over the demo's directory: every stage already done" \
  "[ $rc -eq 0 ] && ! grep -q '^\[reproduce\] stage' '$T/again.err'"
check "and the same table" "diff <(sed 1d '$T/table.txt') <(sed 1d '$T/again.txt') > /dev/null"
"$WCMI" demo --json --data-dir "$T/data" --train-subset 40 --test-subset 10 --encoder-epochs 1 --head-epochs 1 \
  --mi-epochs 1 --hsize 8 --max-batches 1 --eval-batches 1 --threads 1 --robust-head-epochs 1 --model-epochs 1 \
  --batch-size 4 --out "$T/demo" 2> /dev/null | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["task"] == "reproduce" and len(d["rows"]) == 18 else 1)'
check "demo --json prints reproduce.json" "[ $? -eq 0 ]"
"$WCMI" demo --help | grep -q 'reproduce --data fashion-mnist --profile quick'
check "demo --help says what it is an alias of" "[ $? -eq 0 ]"
echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
