#!/usr/bin/env bash
# Installs what wcmi needs to build, test and run its main job on Debian 12 (run as root).
# Extra groups: --bench adds python3-torch (benchmarks only), --report-test adds chromium,
# --fuzz is accepted for compatibility: clang's libFuzzer runtime is already a base dependency.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libopenblas-dev zlib1g-dev libpng-dev libjansson-dev libomp-dev clang libclang-rt-14-dev python3 python3-numpy dataset-fashion-mnist)
# oneDNN: the opt-in bf16 GEMMs (--precision bf16); wcmi builds without it, and then refuses bf16.
pkgs+=(libdnnl-dev)
# The test suite's data-parallel flavour (-DWCMI_MPI=ON, docs/distributed.md); the default build needs no MPI.
pkgs+=(libopenmpi-dev openmpi-bin)
for a in "$@"; do
  case "$a" in
    --bench) pkgs+=(python3-torch python3-numpy) ;;
    --report-test) pkgs+=(chromium) ;;
    --fuzz) ;;  # clang and its sanitizer/fuzzer runtime are base dependencies (the ASan test build)
    *) echo "install-deps.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
