#!/usr/bin/env bash
# The main job: installs what is missing, builds wcmi, and runs `wcmi demo` on Fashion-MNIST with
# the quick profile (normal-MI vs worst-case-MI encoders, heads, PGD evaluation, RV and Fano bound).
# Extra arguments go to `wcmi demo` (e.g. --out DIR, --threads N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target wcmi
./build/release/wcmi demo --progress "$@"
