#!/usr/bin/env bash
# The example program builds against the public header and runs: the attack must lower the MI
# estimate on the batch it attacked (it maximizes the MI loss).
set -uo pipefail
BUILD=$2
out=$("$BUILD/example_quickstart") || { echo "FAIL: example_quickstart exited $?"; echo "0 passed, 1 failed"; exit 1; }
echo "$out"
/usr/bin/python3 - "$out" <<'PYEOF'
import json, sys
r = json.loads(sys.argv[1])
ok = r['mi_attacked'] < r['mi_clean']
print('ok' if ok else 'FAIL', ': attack lowers the MI estimate (%.4f -> %.4f)' % (r['mi_clean'], r['mi_attacked']))
print('%d passed, %d failed' % (ok, not ok))
sys.exit(0 if ok else 1)
PYEOF
