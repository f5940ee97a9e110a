#!/bin/bash
# wcmi data info / show: JSON output, PNG output, --help, and exit codes 0 / 1 / 2 on tiny IDX files
# written here with printf (plus the real Fashion-MNIST files when installed).
set -u
WCMI="$1"
BUILD="$2"
T="$BUILD/cli_data_tmp"
rm -rf "$T" && mkdir -p "$T/ok" "$T/bad"
fail=0
check() { # check DESCRIPTION EXPECTED_RC ACTUAL_RC
  if [ "$2" != "$3" ]; then echo "FAIL: $1: exit $3, expected $2"; fail=1; else echo "ok: $1"; fi
}

# 4 images of 28x28 (the shape of every mnist model; other shapes are refused), labels 0 1 2 1;
# each image's first 4 pixels as below, the rest 0: pixel sum 1627, mean 1627/3136/255 = 0.00203457.
printf '\x00\x00\x08\x03\x00\x00\x00\x04\x00\x00\x00\x1c\x00\x00\x00\x1c' > "$T/ok/train-images-idx3-ubyte"
for px in '\x00\x40\x80\xff' '\x10\x20\x30\x40' '\xff\xff\xff\xff' '\x00\x00\x00\x00'; do
  printf "$px" >> "$T/ok/train-images-idx3-ubyte"
  head -c 780 /dev/zero >> "$T/ok/train-images-idx3-ubyte"
done
printf '\x00\x00\x08\x01\x00\x00\x00\x04\x00\x01\x02\x01' > "$T/ok/train-labels-idx1-ubyte"
gzip -c "$T/ok/train-images-idx3-ubyte" > "$T/ok/t10k-images-idx3-ubyte.gz"
gzip -c "$T/ok/train-labels-idx1-ubyte" > "$T/ok/t10k-labels-idx1-ubyte.gz"

out=$("$WCMI" data info --data mnist --data-dir "$T/ok"); rc=$?
check "info on raw IDX" 0 $rc
echo "$out"
echo "$out" | grep -q '"count": 4' || { echo "FAIL: count"; fail=1; }
echo "$out" | grep -q '"shape": \[1, 28, 28\]' || { echo "FAIL: shape"; fail=1; }
echo "$out" | grep -q '"label_histogram": \[1, 2, 1, 0, 0, 0, 0, 0, 0, 0\]' || { echo "FAIL: histogram"; fail=1; }
out=$("$WCMI" data info --data mnist --data-dir "$T/ok" --split test); rc=$?
check "info on gzip IDX (test split)" 0 $rc
echo "$out" | grep -q '"split": "test", "count": 4' || { echo "FAIL: test split"; fail=1; }
if command -v python3 >/dev/null; then
  echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert abs(d["pixel_mean"]-0.00203457)<1e-6, d' \
    || { echo "FAIL: JSON / pixel mean"; fail=1; }
fi

"$WCMI" data show --data mnist --data-dir "$T/ok" -n 4 -o "$T/grid.png" > "$T/show.json"; rc=$?
check "show writes a PNG" 0 $rc
head -c 8 "$T/grid.png" | od -An -c | grep -q 'P   N   G' || { echo "FAIL: not a PNG"; fail=1; }

# Usage errors: exit 2
"$WCMI" data >/dev/null 2>&1; check "no subcommand" 2 $?
"$WCMI" data frobnicate >/dev/null 2>&1; check "unknown subcommand" 2 $?
"$WCMI" data info >/dev/null 2>&1; check "missing --data" 2 $?
"$WCMI" data info --data imagenet >/dev/null 2>&1; check "unknown dataset" 2 $?
"$WCMI" data info --data mnist --split val >/dev/null 2>&1; check "bad split" 2 $?
"$WCMI" data show --data mnist --data-dir "$T/ok" >/dev/null 2>&1; check "show without -o" 2 $?
"$WCMI" data info --data mnist --bogus >/dev/null 2>&1; check "unknown option" 2 $?
# Help: exit 0, on stdout
"$WCMI" data --help | grep -q "info" ; check "data --help" 0 $?
"$WCMI" data info --help | grep -q -- "--data-dir"; check "data info --help" 0 $?
"$WCMI" data show --help | grep -q -- "-o"; check "data show --help" 0 $?

# Runtime failures: exit 1 with one line "wcmi data info: <file>: <problem>"
err=$("$WCMI" data info --data mnist --data-dir "$T/nowhere" 2>&1 >/dev/null); rc=$?
check "missing files" 1 $rc
echo "$err" | grep -q "wcmi data info: $T/nowhere/train-images-idx3-ubyte.gz: missing file" || { echo "FAIL: msg '$err'"; fail=1; }
cp "$T/ok/train-images-idx3-ubyte" "$T/bad/"
printf '\x00\x00\x08\x01\x00\x00\x00\x03\x00\x01\x02' > "$T/bad/train-labels-idx1-ubyte"
err=$("$WCMI" data info --data mnist --data-dir "$T/bad" 2>&1 >/dev/null); rc=$?
check "count mismatch" 1 $rc
echo "$err" | grep -q "count mismatch" || { echo "FAIL: msg '$err'"; fail=1; }
[ "$(echo "$err" | wc -l)" = 1 ] || { echo "FAIL: message is not one line"; fail=1; }
head -c 20 "$T/ok/t10k-images-idx3-ubyte.gz" > "$T/bad/t10k-images-idx3-ubyte.gz"
cp "$T/ok/t10k-labels-idx1-ubyte.gz" "$T/bad/"
err=$("$WCMI" data info --data mnist --data-dir "$T/bad" --split test 2>&1 >/dev/null); rc=$?
check "truncated gzip" 1 $rc
echo "$err" | grep -q "t10k-images-idx3-ubyte.gz: truncated" || { echo "FAIL: msg '$err'"; fail=1; }

if [ -d /usr/share/datasets/fashion-mnist ]; then
  out=$("$WCMI" data info --data fashion-mnist --split test); rc=$?
  check "fashion-mnist test split" 0 $rc
  echo "$out" | grep -q '"count": 10000' || { echo "FAIL: fashion-mnist count"; fail=1; }
else
  echo "FAIL: /usr/share/datasets/fashion-mnist not installed (run scripts/install-deps.sh)"
  fail=1
fi
exit $fail
