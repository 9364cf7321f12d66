#!/usr/bin/env bash
# Builds rlhf-bench and runs it and the PyTorch eager baselines side by side
# in one run, then prints the table of ratios (docs/performance.md).
# Usage: bench/compare.sh [OUT_DIR]     (about 17 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh g++ make cmake ccache libeigen3-dev libboost-dev libbenchmark-dev python3-torch libopenblas0-openmp
out=${1:-bench_out}
mkdir -p "$out"
cmake --preset bench >/dev/null
cmake --build --preset bench --target rlhf-bench rlhf-bench-objectives >/dev/null
lscpu | grep -E 'Model name|^CPU\(s\)|L2|L3' > "$out/machine.txt" || true
echo "== rlhf-bench (median of 5; fused linear and GEMMs: median of 3)"
build/bench/bench/rlhf-bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/rlhf_bench.json" --benchmark_out_format=json | grep median
echo "== PyTorch eager (Debian python3-torch with OpenBLAS)"
/usr/bin/python3 bench/torch_baseline.py --reps 5 | tee "$out/torch.csv"
/usr/bin/python3 bench/ratios.py "$out/rlhf_bench.json" "$out/torch.csv" | tee "$out/ratios.md"
echo "== the [B, T] objectives (median of 5), 1 and 2 threads"
for t in 1 2; do
  OMP_NUM_THREADS=$t build/bench/bench/rlhf-bench-objectives --benchmark_filter="policy|value|entropy|gae|reinforce|variant|is_w|a2c|kl_|actor|masked|aggregate|copy/(512|20)/$t/" \
    --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/objectives_$t.json" --benchmark_out_format=json | grep median
done
/usr/bin/python3 bench/torch_objectives.py --reps 5 | tee "$out/torch_objectives.csv"
/usr/bin/python3 bench/objective_ratios.py "$out/torch_objectives.csv" "1:$out/objectives_1.json" "2:$out/objectives_2.json" \
  | tee "$out/objective_ratios.md"
