#!/usr/bin/env bash
# `cmake --install` puts headers, libraries, the tool and wcmi.pc under a prefix, and a program
# built only from the installed files (via pkg-config) compiles, links and runs.
set -uo pipefail
BUILD=$2
SRC=${WCMI_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
P=$(mktemp -d)
trap 'rm -rf "$P"' EXIT
fails=0; passes=0
check() { if eval "$2"; then passes=$((passes+1)); echo "ok: $1"; else fails=$((fails+1)); echo "FAIL: $1"; fi; }

cmake --install "$BUILD" --prefix "$P" > "$P/install.log" 2>&1
check "cmake --install succeeds" "[ $? -eq 0 ]"
check "headers installed" "[ -f '$P/include/wcmi/wcmi.h' ] && [ -f '$P/include/wcmi/nn.h' ]"
libdir=$(ls -d "$P"/lib* | head -1)
check "static and shared libraries installed" "ls '$libdir'/libwcmi.a '$libdir'/libwcmi.so > /dev/null"
check "pkg-config file installed" "[ -f '$libdir/pkgconfig/wcmi.pc' ]"
check "the tool is installed and runs" "'$P/bin/wcmi' --version | grep -q wcmi"
check "the published numbers are installed" "[ -s '$P/share/wcmi/paper_results.tsv' ]"
# The installed tool reads its own copy (next to it), not the source tree's.
check "the installed wcmi reproduce finds them" \
  "env -u WCMI_PAPER_RESULTS '$P/bin/wcmi' reproduce --dry-run | grep -q '$P/bin/../share/wcmi/paper_results.tsv'"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
# A sanitizer build's library needs the sanitizer runtime in whatever links it.
SAN=""
grep -q '^WCMI_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null && SAN="-fsanitize=address,undefined"
CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
CC=${CC:-cc}
flags=$(pkg-config --cflags --libs wcmi 2>&1)
check "pkg-config resolves wcmi" "pkg-config --exists wcmi"
$CC $SAN -std=c11 -o "$P/quickstart" "$SRC/examples/quickstart.c" $flags -Wl,-rpath,"$libdir" > "$P/cc.log" 2>&1
check "example builds against the installed library" "[ -x '$P/quickstart' ] || { cat '$P/cc.log'; false; }"
$CC $SAN -std=c11 -o "$P/quickstart_static" "$SRC/examples/quickstart.c" $(pkg-config --cflags --static --libs wcmi | sed 's/-lwcmi/-l:libwcmi.a/') > "$P/cc2.log" 2>&1
check "example links statically" "[ -x '$P/quickstart_static' ] || { cat '$P/cc2.log'; false; }"
echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
