#!/usr/bin/env bash
# Builds and runs the whole test suite: the Release build (unit tests,
# conformance in double and float, every header alone, docs examples, the
# consumer project) and the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh g++ make cmake ccache nlohmann-json3-dev catch2 libeigen3-dev libxtensor-dev libxsimd-dev libboost-dev
for preset in default asan; do
  echo "== rlhf++ tests: preset '$preset'"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset"
done
