#!/usr/bin/env bash
# The project's main job (until the trainers land): build the conformance
# runner and check rlhf++ against every public vector of verl, TRL, OpenRLHF
# and Stable-Baselines3, in double and in float precision.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh g++ make cmake ccache nlohmann-json3-dev
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build/run -DCMAKE_BUILD_TYPE=Release -DRLHF_BUILD_TESTS=OFF -DRLHF_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build/run --target rlhf-conformance -j "$jobs" >/dev/null
echo "rlhf++ conformance: outputs and gradients against the Python references (float64, rtol 1e-9)"
build/run/rlhf-conformance --summary tests/data/conformance/*.json
echo
echo "The same vectors in float32 (tolerances in docs/conformance.md):"
build/run/rlhf-conformance --float tests/data/conformance/*.json
