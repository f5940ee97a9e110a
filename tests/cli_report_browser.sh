#!/usr/bin/env bash
# wcmi report in headless Chromium: the page loads (the DOM has the expected headings and one <svg>
# per chart), and its screenshot is not blank (decoded here with zlib + struct: enough non-white
# pixels, spread over the page, with real variance). Without Chromium the test is skipped, visibly.
set -uo pipefail
WCMI=$1
HERE=$(cd "$(dirname "$0")" && pwd)
CHROMIUM=""
for c in /usr/bin/chromium /usr/bin/chromium-browser "$(command -v chromium 2>/dev/null)"; do
  if [ -n "$c" ] && [ -x "$c" ]; then CHROMIUM=$c; break; fi
done
if [ -z "$CHROMIUM" ]; then
  echo "SKIPPED: chromium not installed (apt-get install chromium) - report browser test not run"
  echo "0 passed, 0 failed, 1 skipped"
  exit 77  # ctest: SKIP_RETURN_CODE
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$HERE/report_fixtures.sh"
fails=0; passes=0
ok() { passes=$((passes+1)); echo "ok: $1"; }
bad() { fails=$((fails+1)); echo "FAIL: $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

make_report_fixtures "$T/runs"
R="$T/runs"
"$WCMI" report "$R/enc" "$R/clf" "$R/vul" "$R/ev" "$R/empty" "$R/x<i>y" -o "$T/report.html" > /dev/null 2> "$T/r.err"
check "report exits 0" "[ $? -eq 0 ]"

# A fresh profile, no network services, no GPU; each run bounded so a hung browser fails the test.
chrome() {
  local profile
  profile=$(mktemp -d "$T/profile.XXXXXX")
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" "$@"
}
chrome --dump-dom "file://$T/report.html" > "$T/dom.html" 2> "$T/dom.err"
check "chromium --dump-dom exits 0" "[ $? -eq 0 ] && [ -s '$T/dom.html' ]"
check "DOM has the title heading" "grep -q '<h1>wcmi report</h1>' '$T/dom.html'"
check "DOM has the overview and Figure 2 headings" "grep -q 'Across runs</h2>' '$T/dom.html' && grep -q 'Figure 2' '$T/dom.html'"
check "DOM has one <h2> per run + overview" "[ \$(grep -o '<h2' '$T/dom.html' | wc -l) -eq $((REPORT_FIXTURE_RUNS + 1)) ]"
check "DOM has every chart ($REPORT_FIXTURE_SVGS <svg>)" "[ \$(grep -o '<svg' '$T/dom.html' | wc -l) -eq $REPORT_FIXTURE_SVGS ]"
check "DOM escaped text survives (no injected element)" "grep -q '&lt;script&gt;alert(1)' '$T/dom.html' && ! grep -q '<script>alert' '$T/dom.html'"

chrome --screenshot="$T/shot.png" --window-size=1200,2000 "file://$T/report.html" > /dev/null 2> "$T/shot.err"
check "chromium --screenshot exits 0" "[ $? -eq 0 ] && [ -s '$T/shot.png' ]"
check "screenshot is not blank" "$PY - '$T/shot.png' <<'PYEOF'
import struct, sys, zlib
b = open(sys.argv[1], 'rb').read()
assert b[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat = 8, b''
while pos < len(b):
    n, t = struct.unpack('>I4s', b[pos:pos + 8]); d = b[pos + 8:pos + 8 + n]; pos += 12 + n
    if t == b'IHDR': w, h, bd, ct, _, _, il = struct.unpack('>IIBBBBB', d)
    elif t == b'IDAT': idat += d
assert bd == 8 and il == 0 and ct in (2, 6), (bd, ct, il)
ch = 3 if ct == 2 else 4
raw = zlib.decompress(idat); stride = w * ch
prev = bytearray(stride); dark = 0; total = 0; s1 = 0; s2 = 0; bands = set()
for y in range(h):
    f = raw[y * (stride + 1)]; cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    if f == 1:
        for x in range(ch, stride): cur[x] = (cur[x] + cur[x - ch]) & 255
    elif f == 2:
        for x in range(stride): cur[x] = (cur[x] + prev[x]) & 255
    elif f == 3:
        for x in range(stride): cur[x] = (cur[x] + ((cur[x - ch] if x >= ch else 0) + prev[x]) // 2) & 255
    elif f == 4:
        for x in range(stride):
            a = cur[x - ch] if x >= ch else 0; c = prev[x - ch] if x >= ch else 0; u = prev[x]
            p = a + u - c; pa = abs(p - a); pb = abs(p - u); pc = abs(p - c)
            cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else (u if pb <= pc else c))) & 255
    prev = cur
    for x in range(0, stride, ch * 4):  # every 4th pixel
        g = cur[x] + cur[x + 1] + cur[x + 2]
        total += 1; s1 += g; s2 += g * g
        if g < 600: dark += 1; bands.add(y * 10 // h)
mean = s1 / total; std = (s2 / total - mean * mean) ** 0.5
print('screenshot %dx%d: %.2f%% non-white pixels, grey-sum std %.1f, content in %d/10 bands' % (w, h, 100.0 * dark / total, std, len(bands)))
assert (w, h) == (1200, 2000), (w, h)
assert dark > 0.01 * total and std > 20 and len(bands) >= 8
PYEOF"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
