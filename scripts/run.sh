#!/usr/bin/env bash
# The project's main job: RLHF on a tiny language model, twice — with the KL
# penalty toward the reference model and without it — showing reward hacking
# without it. Builds the example, trains, prints samples and results, and
# writes the metrics (JSONL) and a plot (PNG).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh g++ make cmake ccache libeigen3-dev libboost-dev gnuplot-nox
jobs=$(nproc 2>/dev/null || echo 2)
out=${RLHF_OUT:-$PWD/tiny_lm_out}
echo "== building the tiny_lm example (Release)"
cmake -S . -B build/run -DCMAKE_BUILD_TYPE=Release -DRLHF_BUILD_TESTS=OFF -DRLHF_BUILD_TOOLS=OFF >/dev/null
cmake --build build/run --target tiny_lm -j "$jobs" >/dev/null
build/run/examples/tiny_lm --out "$out" "$@"
echo
echo "Plot:    $out/tiny_lm.png   (reward-model score, true score, KL to the reference, fluency; both runs)"
echo "Metrics: $out/ppo_kl.jsonl and $out/ppo_nokl.jsonl (first line: the configuration; then one line per step)"
