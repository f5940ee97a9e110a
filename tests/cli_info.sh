#!/usr/bin/env bash
# wcmi info: JSON description of a valid safetensors file; one-line errors and exit 1 on bad files;
# --help. Files are built byte by byte here, independently of wcmi's writer.
set -u
WCMI="$1"
BUILD="${2:-.}"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/wcmi-cli-info.XXXXXX")"
trap 'rm -rf "$DIR"' EXIT
fail=0
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# make_st FILE HEADER DATA_BYTES: u64 little-endian header length, header, DATA_BYTES zero bytes.
make_st() {
  local file="$1" header="$2" nbytes="$3" len i b
  len=${#header}
  {
    for ((i = 0; i < 8; i++)); do
      b=$(( (len >> (8 * i)) & 255 ))
      printf "\\$(printf '%03o' "$b")"
    done
    printf '%s' "$header"
    head -c "$nbytes" /dev/zero
  } > "$file"
}

GOOD='{"__metadata__": {"architecture": "basic_encoder", "epoch": "3"}, "encoder.layer5.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "encoder.layer4.1.num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [24, 32]}}'
make_st "$DIR/good.safetensors" "$GOOD" 32

out="$("$WCMI" info "$DIR/good.safetensors" 2>"$DIR/err")"; rc=$?
check "valid file exits 0" test "$rc" = 0
echo "$out" > "$DIR/out.json"
check "architecture printed" grep -q '"architecture": "basic_encoder"' "$DIR/out.json"
check "tensor count" grep -q '"num_tensors": 2' "$DIR/out.json"
check "total parameters 6 + 1" grep -q '"total_parameters": 7' "$DIR/out.json"
check "metadata epoch" grep -q '"epoch": "3"' "$DIR/out.json"
check "dtype I64 listed" grep -q '"dtype": "I64"' "$DIR/out.json"
check "stderr empty" test ! -s "$DIR/err"
if [ -x /usr/bin/python3 ]; then
  check "stdout is valid JSON with the tensor shapes" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
t = {x["name"]: x for x in d["tensors"]}
assert t["encoder.layer5.weight"]["shape"] == [2, 3] and t["encoder.layer5.weight"]["dtype"] == "F32"
assert t["encoder.layer4.1.num_batches_tracked"]["shape"] == []
assert d["metadata"] == {"architecture": "basic_encoder", "epoch": "3"}
' "$DIR/out.json"
else
  echo "FAIL: /usr/bin/python3 missing for the JSON check (run scripts/install-deps.sh)"
  fail=1
fi

# Bad file: shape needs 24 bytes, offsets span 20.
BAD='{"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}'
make_st "$DIR/bad.safetensors" "$BAD" 20
"$WCMI" info "$DIR/bad.safetensors" >"$DIR/out" 2>"$DIR/err"; rc=$?
check "bad file exits 1" test "$rc" = 1
check "bad file: nothing on stdout" test ! -s "$DIR/out"
check "bad file: one line on stderr" test "$(wc -l < "$DIR/err")" = 1
check "bad file: message names file and problem" grep -q "wcmi info: $DIR/bad.safetensors: tensor 'w': shape (2, 3) needs 24 bytes but data_offsets span 20" "$DIR/err"

printf 'abc' > "$DIR/short.safetensors"
"$WCMI" info "$DIR/short.safetensors" >/dev/null 2>"$DIR/err"; rc=$?
check "3-byte file exits 1 with a message" test "$rc" = 1 -a "$(grep -c 'too short' "$DIR/err")" = 1

"$WCMI" info "$DIR/missing.safetensors" >/dev/null 2>"$DIR/err"; rc=$?
check "missing file exits 1" test "$rc" = 1
"$WCMI" info >/dev/null 2>&1; rc=$?
check "no file is a usage error (2)" test "$rc" = 2
"$WCMI" info --help >"$DIR/help" 2>&1; rc=$?
check "--help exits 0 and shows usage" test "$rc" = 0 -a "$(grep -c 'usage: wcmi info' "$DIR/help")" = 1

exit $fail
