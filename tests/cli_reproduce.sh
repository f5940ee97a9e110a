#!/usr/bin/env bash
# wcmi reproduce end to end on a tiny budget and a tiny synthetic Fashion-MNIST-shaped dataset:
# every row of the table is there, the paper column is the data file's, a run interrupted with
# SIGINT and rerun ends with the same numbers (bit for bit) as an uninterrupted one, a third run
# skips every stage, a changed budget is refused without --force, and a missing or corrupt
# published-numbers file fails with one line.
set -uo pipefail
WCMI=$1
SRC=${WCMI_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
PY=/usr/bin/python3
T=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT; [ -n "${KEEP:-}" ] && echo "scratch: $T"
fails=0; passes=0
check() { if eval "$2"; then passes=$((passes+1)); echo "ok: $1"; else fails=$((fails+1)); echo "FAIL: $1"; fi; }

# A tiny synthetic Fashion-MNIST (200 training / 60 test images): stages cost milliseconds of data.
$PY "$SRC/tests/tiny_fashion_mnist.py" "$T/data"

ARGS=(--data fashion-mnist --data-dir "$T/data" --train-subset 40 --test-subset 10 --batch-size 4
      --encoder-epochs 3 --head-epochs 2 --robust-head-epochs 1 --model-epochs 1 --mi-epochs 1 --hsize 8
      --max-batches 2 --monitor-batches 1 --eval-batches 1 --threads 1)

"$WCMI" reproduce "${ARGS[@]}" --out "$T/a" > "$T/a.txt" 2> "$T/a.err"
rc=$?
check "uninterrupted run exits 0" "[ $rc -eq 0 ] || { tail -5 '$T/a.err'; false; }"

# The same run, interrupted while the worst-case-MI encoder trains (its first epoch is done, two are
# left), then continued: that stage resumes from its checkpoint, the others are skipped or rerun.
"$WCMI" reproduce "${ARGS[@]}" --out "$T/b" > "$T/b1.txt" 2> "$T/b1.err" &
pid=$!
for _ in $(seq 1 30000); do
  [ -s "$T/b/encoder-worst-mi/metrics.jsonl" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.02
done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
check "SIGINT stops the run with exit 130" "[ $rc -eq 130 ] || { echo rc=$rc; tail -3 '$T/b1.err'; false; }"
check "the interrupted run names how to continue" "grep -q 'rerun the same command' '$T/b1.err'"
"$WCMI" reproduce "${ARGS[@]}" --out "$T/b" > "$T/b2.txt" 2> "$T/b2.err"
rc=$?
check "the rerun finishes" "[ $rc -eq 0 ] || { tail -5 '$T/b2.err'; false; }"
check "the rerun skipped the finished stages" "! grep -q 'encoder-dim (train-encoder)' '$T/b2.err'"
check "and continued the interrupted one from its checkpoint" \
  "grep -q 'continuing .*/encoder-worst-mi from its checkpoint' '$T/b2.err'"
"$WCMI" reproduce "${ARGS[@]}" --out "$T/b" > "$T/b3.txt" 2> "$T/b3.err"
check "a third run has nothing left to do" "[ $? -eq 0 ] && ! grep -q '^\[reproduce\] stage' '$T/b3.err'"
check "and prints the same table" "diff <(sed 1d '$T/b2.txt') <(sed 1d '$T/b3.txt') > /dev/null"

"$WCMI" reproduce "${ARGS[@]}" --head-epochs 3 --out "$T/b" > /dev/null 2> "$T/c.err"
rc=$?
check "a changed budget into the same directory is refused (exit 1, one line naming --force)" \
  "[ $rc -eq 1 ] && [ \$(wc -l < '$T/c.err') -eq 1 ] && grep -q -- '--force' '$T/c.err'"

"$WCMI" reproduce "${ARGS[@]}" --out "$T/d" --paper-results "$T/none.tsv" > /dev/null 2> "$T/d.err"
rc=$?
check "a missing published-numbers file: exit 1, one line naming it" \
  "[ $rc -eq 1 ] && [ \$(wc -l < '$T/d.err') -eq 1 ] && grep -q 'none.tsv' '$T/d.err'"
{ head -9 "$SRC/data/paper_results.tsv"; printf 'fashion-mnist\tdim\tmlp\tstandard\tnat\tlots\tx\n'; } > "$T/bad.tsv"
WCMI_PAPER_RESULTS="$T/bad.tsv" "$WCMI" reproduce "${ARGS[@]}" --out "$T/d" > /dev/null 2> "$T/e.err"
rc=$?
check "a corrupt one (via WCMI_PAPER_RESULTS): exit 1, one line naming file:line and the value" \
  "[ $rc -eq 1 ] && [ \$(wc -l < '$T/e.err') -eq 1 ] && grep -q 'bad.tsv:10: value .lots.' '$T/e.err'"

# The budget flags of the quick profile's re-budget: out-of-range values are usage errors (exit 2,
# one line), before anything runs.
for bad in "--robust-train-steps 0" "--robust-train-steps 1001" "--critics 0" "--critics 101" "--dim-epochs 0" \
           "--critics abc"; do
  "$WCMI" reproduce --data fashion-mnist --dry-run --out "$T/u" $bad > /dev/null 2> "$T/u.err"
  rc=$?
  check "reproduce $bad: exit 2, one line" "[ $rc -eq 2 ] && [ \$(wc -l < '$T/u.err') -eq 1 ]"
done

# The fast profile's plan: the full splits, 20-epoch encoders, the worst-case encoder's own MI attack
# stated beside the paper's evaluation attack, robust heads on 2 epochs of 5-step PGD.
"$WCMI" reproduce --data fashion-mnist --profile fast --dry-run --out "$T/f" > "$T/f.out" 2>&1
rc=$?
check "reproduce --profile fast --dry-run exits 0 and runs nothing" "[ $rc -eq 0 ] && [ ! -e '$T/f/encoder-dim' ]"
check "fast plan: full splits, encoders 20 epochs, robust heads 2, H = 256" \
  "grep -q 'profile fast: all training / all test images, batch 128, H = 256' '$T/f.out' && grep -q 'encoders 20 (DIM 20), standard heads 10, robust heads 2' '$T/f.out'"
check "fast plan: the encoder's 3-step random-start MI attack, every evaluation the paper's PGD" \
  "grep -q 'attack: l-inf eps 0.1, 10 steps of 0.02 (the paper' '$T/f.out' && grep -q 'worst-case MI encoder: 3 steps of 0.04 from a random start' '$T/f.out'"

$PY - "$T" "$SRC/data/paper_results.tsv" <<'PYEOF'
import json, math, os, sys
T, tsv = sys.argv[1], sys.argv[2]
fails, passes = [], []
def check(name, cond):
    print(('ok: ' if cond else 'FAIL: ') + name)
    (passes if cond else fails).append(name)
a = json.load(open(os.path.join(T, 'a', 'reproduce.json')))
b = json.load(open(os.path.join(T, 'b', 'reproduce.json')))
paper = {}
for line in open(tsv):
    if line.startswith('#') or line.startswith('dataset\t'):
        continue
    f = line.rstrip('\n').split('\t')
    paper[tuple(f[:5])] = float(f[5])
want = [(e, t, h) for e, t in [('pixels', 'standard'), ('pixels', 'robust'), ('dim', 'standard'), ('dim', 'robust'),
                               ('worst-mi', 'standard'), ('worst-mi', 'early-stopped'), ('worst-mi', 'robust'),
                               ('supervised', 'standard'), ('supervised', 'robust')] for h in ('linear', 'mlp')]
got = [(r['encoder'], r['training'], r['head']) for r in a['rows']]
check('every row of the Fashion-MNIST table, in the paper\'s order (%d rows)' % len(want), got == want)
ok = True
for r in a['rows']:
    for m in ('nat', 'adv'):
        p = paper.get(('fashion-mnist', r['encoder'], r['head'], r['training'], m))
        v = r['paper_%s_acc' % m]
        ok &= (v is None) if p is None else (v is not None and abs(v - p / 100) < 1e-12)
        if p is not None:
            ok &= abs(r['diff_%s_acc' % m] - (r[{'nat': 'nat_acc', 'adv': 'pgd_adv_acc'}[m]] - p / 100)) < 1e-12
    ok &= all(0 <= r[k] <= 1 for k in ('nat_acc', 'pgd_adv_acc', 'worst_case_adv_acc'))
    ok &= r['worst_case_adv_acc'] <= r['pgd_adv_acc'] + 1e-12
check('paper column = the data file (null where the paper has no cell), diff = wcmi - paper, strong <= PGD', ok)
check('pixels rows have no paper number', all(r['paper_nat_acc'] is None for r in a['rows'] if r['encoder'] == 'pixels'))
check('two encoders with I, I_worst, RV', [v['encoder'] for v in a['vulnerability']] == ['dim', 'worst-mi'] and
      all(abs(v['rv'] - (v['normal_mi'] - v['worst_mi'])) < 1e-9 for v in a['vulnerability']))
keys = ('nat_acc', 'pgd_adv_acc', 'worst_case_adv_acc')
check('interrupted + resumed run = uninterrupted run, bit for bit (accuracies)',
      [[r[k] for k in keys] for r in a['rows']] == [[r[k] for k in keys] for r in b['rows']])
mk = ('normal_mi', 'worst_mi', 'worst_mi_refit', 'rv', 'fano_bound')
check('... and MI estimates', [[v[k] for k in mk] for v in a['vulnerability']] == [[v[k] for k in mk] for v in b['vulnerability']])
table = open(os.path.join(T, 'a.txt')).read()
check('printed table has the paper column and every row', 'natural accuracy' in table and "PGD (paper's protocol)" in table and
      table.count('worst-mi / early-stopped') == 2 and 'Fano bound' in table)
md = open(os.path.join(T, 'a', 'table.md')).read()
check('table.md written with every row', md.count('\n| ') >= 1 + 18 + 1 + 2)
html = open(os.path.join(T, 'a', 'report.html')).read()
check('report.html has the reproduce table with the published numbers', "The paper's table" in html and '89.58' in html)
check('report.html shows the stages as runs', 'encoder-worst-mi' in html and 'eval-dim-mlp-robust' in html)
print('%d passed, %d failed' % (len(passes), len(fails)))
sys.exit(1 if fails else 0)
PYEOF
py=$?
echo "$passes passed, $fails failed (shell checks)"
[ $fails -eq 0 ] && [ $py -eq 0 ]
