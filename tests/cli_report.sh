#!/usr/bin/env bash
# wcmi saliency and wcmi report without a browser: PNG grid dimensions (rows = 1 + models, n
# columns), a self-contained page (no URLs, no scripts, balanced tags, one <svg> per chart),
# HTML escaping of strings from files, notes for empty/partial runs, one-line errors (exit 1) for
# malformed files and missing runs, usage errors (exit 2).
set -uo pipefail
WCMI=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
. "$HERE/report_fixtures.sh"
fails=0; passes=0
ok() { passes=$((passes+1)); echo "ok: $1"; }
bad() { fails=$((fails+1)); echo "FAIL: $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
# png_size FILE -> "W H" from the IHDR chunk (bytes 16..23, big-endian)
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}'; }
count() { grep -o -- "$1" "$2" | wc -l; }

# 1. saliency on a tiny trained encoder: two model rows, 5 columns, scale 2, pad 1.
"$WCMI" train-encoder --objective normal --data fashion-mnist --profile quick --train-subset 64 --test-subset 32 \
  --batch-size 16 --hsize 8 --epochs 1 --max-batches 2 --eval-batches 1 --threads 1 --out "$T/enc" > /dev/null 2> "$T/tr.err"
check "tiny train-encoder for the saliency model" "[ -s '$T/enc/latest.safetensors' ]"
M="$T/enc/latest.safetensors"
"$WCMI" saliency --model "$M" --model "$T/enc/best.safetensors" --loss mi -n 5 --scale 2 --pad 1 --threads 1 \
  -o "$T/enc/saliency_mi.png" > "$T/s.json" 2> "$T/s.err"
check "saliency --loss mi exits 0" "[ $? -eq 0 ]"
# width = 5*28*2 + 6*1 = 286; height = (1+2)*28*2 + (2+2)*1 = 172
check "mi grid is 286 x 172 (1 + 2 rows of 5)" "[ \"\$(png_size '$T/enc/saliency_mi.png')\" = '286 172' ]"
check "summary also written beside the PNG (saliency_mi.json) with both models" "grep -q 'best.safetensors' '$T/enc/saliency_mi.json' && grep -q 'latest.safetensors' '$T/enc/saliency_mi.json'"
check "saliency JSON names width and height" "grep -q '\"width\": 286' '$T/s.json' && grep -q '\"height\": 172' '$T/s.json'"
"$WCMI" saliency --model "$M" --loss feature --layer layer1 --channel 3 -n 3 --threads 1 -o "$T/f.png" > /dev/null 2>&1
# width = 3*28*3 + 4*2 = 260; height = 2*28*3 + 3*2 = 174 (defaults: scale 3, pad 2)
check "feature grid is 260 x 174 (1 + 1 rows of 3)" "[ \"\$(png_size '$T/f.png')\" = '260 174' ]"
"$WCMI" saliency --model "$M" --loss ce -n 2 -o "$T/ce.png" > /dev/null 2> "$T/ce.err"; rc=$?
check "ce on a headless model: exit 1, one line naming the file" "[ $rc -eq 1 ] && [ \$(wc -l < '$T/ce.err') -eq 1 ] && grep -q 'latest.safetensors' '$T/ce.err' && grep -q 'head' '$T/ce.err'"
"$WCMI" saliency --model "$M" --loss feature --layer nosuch -n 2 -o "$T/x.png" > /dev/null 2> "$T/l.err"; rc=$?
check "unknown layer: exit 1 listing the layers" "[ $rc -eq 1 ] && grep -q 'layer1.0' '$T/l.err'"
"$WCMI" saliency --model "$M" --loss grad -o "$T/x.png" > /dev/null 2>&1; rc=$?
check "unknown loss: usage error 2" "[ $rc -eq 2 ]"
"$WCMI" saliency --loss mi -o "$T/x.png" > /dev/null 2>&1; rc=$?
check "no --model: usage error 2" "[ $rc -eq 2 ]"
"$WCMI" saliency --model "$T/nosuch.safetensors" -o "$T/x.png" > /dev/null 2> "$T/m.err"; rc=$?
check "missing model file: exit 1 naming it" "[ $rc -eq 1 ] && grep -q 'nosuch.safetensors' '$T/m.err'"

# 2. the report over the fixtures, the real run (with its saliency PNG) and an extra --saliency image.
make_report_fixtures "$T/runs"
R="$T/runs"
"$WCMI" report "$R/enc" "$R/clf" "$R/vul" "$R/ev" "$R/empty" "$R/x<i>y" "$T/enc" --saliency "$T/f.png" \
  -o "$T/report.html" > "$T/r.json" 2> "$T/r.err"
check "report exits 0" "[ $? -eq 0 ] && [ -s '$T/report.html' ]"
H="$T/report.html"
# the real run adds its own curves (loss, mi, lr, seconds, eval.test_mi_normal, eval.test_mi_worst) and MI bars
check "one <svg> per chart: fixtures 20 + real run 7" "[ \$(count '<svg' '$H') -eq $((REPORT_FIXTURE_SVGS + 7)) ]"
check "every <svg> closed" "[ \$(count '<svg' '$H') -eq \$(count '</svg>' '$H') ]"
for tag in section table details figure; do
  check "balanced <$tag>" "[ \$(count '<$tag[ >]' '$H') -eq \$(count '</$tag>' '$H') ]"
done
# "://" rather than "http": inline base64 PNGs may contain the letters h-t-t-p (they did), never ':'
check "no URL at all (self-contained, no xmlns needed inline)" "! grep -q '://' '$H'"
check "no <script> element and no external src/href" "! grep -qi '<script' '$H' && ! grep -Eqi '(src|href)=\"[^d#]' '$H'"
check "two inline PNGs (run's saliency*.png + --saliency)" "[ \$(count 'src=\"data:image/png;base64,' '$H') -eq 2 ]"
check "saliency caption names the rows from the sidecar" "grep -q 'loss mi; row 1: inputs; row 2: [^;]*latest.safetensors; row 3: [^ ]*best.safetensors' '$H'"
check "config string escaped" "grep -q '&lt;script&gt;alert(1)&lt;/script&gt; &amp; more' '$H'"
check "run dir name escaped" "grep -q 'x&lt;i&gt;y' '$H' && ! grep -q 'x<i>y' '$H'"
check "empty run gets a note" "grep -q 'Empty run' '$H'"
check "run without summary gets a note" "grep -q 'No summary.json' '$H'"
check "Figure 2 scatter pairs vul with clf's best checkpoint" "grep -q 'vul + ' '$H' && grep -q 'Fano bound vs adversarial accuracy' '$H'"
check "accuracy per attack listed, in %" "grep -q 'attacks\[apgd\].adv_acc' '$H' && grep -q '35.00 %' '$H'"
check "axes labelled with units" "grep -q 'accuracy (%)' '$H' && grep -q 'MI estimate (nats)' '$H' && grep -q '>epoch<' '$H'"
check "per-neuron histograms present" "grep -q 'Per-neuron vulnerability of layer layer1.0' '$H' && grep -q 'channels by rv (nats)' '$H'"
check "MI bars and Fano bars present" "grep -q 'MI and RV (nats)' '$H' && grep -q 'Fano bound on adversarial accuracy' '$H'"

# 2b. learning curves across runs: two runs with probe lines (long names, so the legend wraps), one
#     of them written before probe lines carried "batches_per_epoch" (left out of the epoch charts).
P="$T/probe-runs"
mkdir -p "$P/recipe-with-a-rather-long-name-a" "$P/recipe-with-a-rather-long-name-b"
probe_line() { printf '{"epoch": %s, "batch": %s, %s"train_seconds": %s, "probe": {"linear_nat_acc": %s, "linear_adv_acc": 0.1, "robust_mlp_nat_acc": 0.7, "robust_mlp_adv_acc": %s}}\n' "$@"; }
{ probe_line 0 0 '"batches_per_epoch": 100, ' 0 0.76 0.04; probe_line 2 50 '"batches_per_epoch": 100, ' 900 0.8 0.5; } \
  > "$P/recipe-with-a-rather-long-name-a/metrics.jsonl"
{ probe_line 0 0 '' 0 0.76 0.03; probe_line 1 10 '' 900 0.79 0.45; } > "$P/recipe-with-a-rather-long-name-b/metrics.jsonl"
"$WCMI" report "$P/recipe-with-a-rather-long-name-a" "$P/recipe-with-a-rather-long-name-b" -o "$T/curves.html" > /dev/null 2> "$T/c.err"
check "report of two probed runs exits 0" "[ $? -eq 0 ]"
C="$T/curves.html"
check "learning curves across runs: robust PGD and linear natural, against time and epochs (4 charts)" \
  "grep -q 'Learning curves across runs' '$C' && grep -q 'aria-label=\"robust MLP probe, PGD vs training time\"' '$C' && grep -q 'aria-label=\"robust MLP probe, PGD vs epochs\"' '$C' && grep -q 'aria-label=\"linear probe, natural vs epochs\"' '$C'"
check "the epoch chart places the probe at epoch + batch / batches_per_epoch (2.5) and skips the old run" \
  "$PY - '$C' <<'PYEOF'
import re, sys
h = open(sys.argv[1]).read()
svg = re.search(r'aria-label=\"robust MLP probe, PGD vs epochs\".*?</svg>', h, re.S).group(0)
titles = re.findall(r'<title>([^<]*)</title>', svg)
assert any('epochs done 2.5' in t and 'name-a' in t for t in titles), titles
assert not any('name-b' in t for t in titles), titles
PYEOF"
check "a legend too wide for one row wraps onto a second" "$PY - '$C' <<'PYEOF'
import re, sys
h = open(sys.argv[1]).read()
svg = re.search(r'aria-label=\"robust MLP probe, PGD vs training time\".*?</svg>', h, re.S).group(0)
ys = re.findall(r'<text x=\"78.0\" y=\"([0-9.]+)\" fill=\"#333\">', svg)
assert ys == ['36.0', '51.0'], ys
PYEOF"

# 3. errors: malformed JSON, a non-PNG saliency file, a missing run, usage.
mkdir -p "$T/badrun" && printf '{"task": "x", ' > "$T/badrun/summary.json"
"$WCMI" report "$R/enc" "$T/badrun" -o "$T/bad.html" > /dev/null 2> "$T/b.err"; rc=$?
check "malformed summary.json: exit 1, one line naming the file" "[ $rc -eq 1 ] && [ \$(wc -l < '$T/b.err') -eq 1 ] && grep -q 'badrun/summary.json' '$T/b.err'"
check "no page written after an error" "[ ! -e '$T/bad.html' ]"
mkdir -p "$T/badtype" && printf '{"task": "eval", "nat_acc": "high"}' > "$T/badtype/eval.json"
"$WCMI" report "$T/badtype" -o "$T/bad.html" > /dev/null 2> "$T/bt.err"; rc=$?
check "result key of the wrong type: exit 1, one line naming file and key" "[ $rc -eq 1 ] && [ \$(wc -l < '$T/bt.err') -eq 1 ] && grep -q 'badtype/eval.json' '$T/bt.err' && grep -q nat_acc '$T/bt.err'"
mkdir -p "$T/badm" && printf '{"epoch": 0}\n[1, 2]\n' > "$T/badm/metrics.jsonl"
"$WCMI" report "$T/badm" -o "$T/bad.html" > /dev/null 2> "$T/bm.err"; rc=$?
check "metrics line that is not an object: exit 1 naming metrics.jsonl" "[ $rc -eq 1 ] && grep -q 'metrics.jsonl' '$T/bm.err'"
printf 'not a png' > "$T/fake.png"
"$WCMI" report "$R/enc" --saliency "$T/fake.png" -o "$T/bad.html" > /dev/null 2> "$T/p.err"; rc=$?
check "non-PNG --saliency: exit 1 naming it" "[ $rc -eq 1 ] && grep -q 'fake.png: not a PNG' '$T/p.err'"
"$WCMI" report "$T/nosuchdir" -o "$T/bad.html" > /dev/null 2> "$T/n.err"; rc=$?
check "missing run dir: exit 1 naming it" "[ $rc -eq 1 ] && grep -q 'nosuchdir' '$T/n.err'"
"$WCMI" report "$R/enc" > /dev/null 2>&1; rc=$?
check "no -o: usage error 2" "[ $rc -eq 2 ]"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
