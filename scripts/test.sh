#!/usr/bin/env bash
# Builds and runs the whole test suite: the Release build (unit tests,
# conformance in double and float, every header alone, docs examples, the
# consumer project), the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, and the library headers and unit tests built
# by clang 14 with warnings as errors; the sources checked against
# .clang-format (clang-format 14).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh g++ make cmake ccache nlohmann-json3-dev catch2 libeigen3-dev libxtensor-dev libxsimd-dev libboost-dev \
  clang-14 libomp-14-dev clang-format-14 libtorch-dev libopenmpi-dev openmpi-bin
for preset in default asan clang; do
  echo "== rlhf++ tests: preset '$preset'"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset"
done
