#!/usr/bin/env bash
# wcmi demo end to end on a tiny budget: every stage runs, the table and the JSON summary carry
# every row and field, and accuracies / bounds are in range.
set -uo pipefail
WCMI=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$WCMI" demo --train-subset 256 --test-subset 128 --encoder-epochs 1 --head-epochs 1 --mi-epochs 1 --hsize 8 \
  --max-batches 1 --eval-batches 1 --threads 1 --out "$T/demo" > "$T/table.txt" 2> "$T/err.txt"
rc=$?
cat "$T/table.txt"
if [ $rc -ne 0 ]; then cat "$T/err.txt"; echo "FAIL: demo exited $rc"; echo "0 passed, 1 failed"; exit 1; fi
/usr/bin/python3 - "$T" <<'PYEOF'
import json, os, sys
T = sys.argv[1]
fails, passes = [], []
def check(name, cond):
    print(('ok: ' if cond else 'FAIL: ') + name)
    (passes if cond else fails).append(name)
s = json.load(open(os.path.join(T, 'demo', 'summary.json')))
table = open(os.path.join(T, 'table.txt')).read()
check('summary has 4 accuracy rows', len(s['accuracy']) == 4)
check('rows cover dim/worst-mi x linear/mlp',
      sorted((r['encoder'], r['head']) for r in s['accuracy']) ==
      [('dim', 'linear'), ('dim', 'mlp'), ('worst-mi', 'linear'), ('worst-mi', 'mlp')])
for r in s['accuracy']:
    for k in ('nat_acc', 'adv_acc_pgd10', 'adv_acc_pgd10_rs5'):
        check('%s/%s %s in [0,1]' % (r['encoder'], r['head'], k), 0 <= r[k] <= 1)
    check('%s/%s adversarial accuracy <= natural' % (r['encoder'], r['head']),
          max(r['adv_acc_pgd10'], r['adv_acc_pgd10_rs5']) <= r['nat_acc'] + 1e-12)
check('summary has 2 vulnerability rows', len(s['vulnerability']) == 2)
for v in s['vulnerability']:
    check('%s rv = normal - worst' % v['encoder'], abs(v['rv'] - (v['normal_mi'] - v['worst_mi'])) < 1e-6)
    check('%s fano bound in [0.301, 1]' % v['encoder'], 0.3010 <= v['fano_bound'] <= 1.0)
check('table printed with both sections', 'PGD-10' in table and 'Fano bound' in table and 'worst-mi' in table)
check('report.html written with charts', '<svg' in open(os.path.join(T, 'demo', 'report.html')).read())
for d in ('encoder-dim', 'encoder-worst', 'dim-linear', 'worst-mi-mlp', 'dim-vulnerability'):
    check('run directory %s exists' % d, os.path.isdir(os.path.join(T, 'demo', d)))
print('%d passed, %d failed' % (len(passes), len(fails)))
sys.exit(1 if fails else 0)
PYEOF
