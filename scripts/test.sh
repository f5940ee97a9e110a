#!/usr/bin/env bash
# Builds and runs the test suite in two flavours: Release, then Debug with ASan+UBSan; then the
# data-parallel flavour (Release, -DWCMI_MPI=ON) and its 2-rank tests (docs/distributed.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$jobs"
(cd build/release && ctest --output-on-failure -j "$jobs")
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DWCMI_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build/asan -j "$jobs"
# Slow learning tests and the PyTorch parity check (numerics of the optimized build; see
# CMakeLists.txt) are skipped under sanitizers by the labels below; everything else runs.
(cd build/asan && WCMI_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j "$jobs" -LE "slow|parity")
# The MPI build: its own tests (label mpi: 2 ranks under mpirun) plus test_dist as one process.
cmake -S . -B build/mpi -DCMAKE_BUILD_TYPE=Release -DWCMI_MPI=ON >/dev/null
cmake --build build/mpi -j "$jobs"
(cd build/mpi && ctest --output-on-failure -L mpi && ctest --output-on-failure -R '^test_dist$')
