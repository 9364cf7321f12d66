#!/usr/bin/env bash
# rlhf++ on a GPU machine, in one go (sized for about 6 minutes on an H100):
#   1. builds every CUDA test, the conformance runner (nvcc) and the GPU
#      benchmark with nvcc alone (no CMake, no Debian headers: nlohmann's
#      header comes from .gpu_deps/, made by bench/gpu/prepare.sh);
#   2. runs the CUDA tests and rlhf-conformance --backend cuda (double, float);
#   3. runs compute-sanitizer --tool memcheck on every CUDA test;
#   4. benchmarks ours (bench_gpu) and PyTorch eager / torch.compile /
#      Liger-Kernel / Cut Cross-Entropy (bench_torch.py; wheels from .whl/)
#      and prints the ratio table (report.py).
# Without a GPU it builds and stops (exit 0). Logs and JSON go to $OUT
# (default build/gpu/out). The sanitizer runs the tests without their
# largest cases (RLHF_CUDA_TEST_SMALL=1), 60 s each at most.
#   bench/gpu/run.sh [--quick] [--no-sanitizer] [--no-bench]
set -uo pipefail
cd "$(dirname "$0")/../.."
QUICK="" SAN=1 BENCH=1
for a in "$@"; do
  case "$a" in
    --quick) QUICK=--quick ;;
    --no-sanitizer) SAN=0 ;;
    --no-bench) BENCH=0 ;;
  esac
done
OUT=${OUT:-build/gpu/out}
BIN=build/gpu
mkdir -p "$OUT" "$BIN"
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
ARCH=${ARCH:-sm_90}
FLAGS="-std=c++20 --expt-relaxed-constexpr -O3 -arch=$ARCH -Iinclude -I.gpu_deps/include -lcublas"
status=0
t0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - t0 )) s] $*"; }

stamp "build with $NVCC ($ARCH)"
jobs=()
for src in tests/cuda/test_*_cuda.cu; do
  name=$(basename "$src" .cu)
  jobs+=("$src:$BIN/$name")
done
jobs+=("bench/gpu/bench_gpu.cu:$BIN/bench_gpu")
if [ -f .gpu_deps/include/nlohmann/json.hpp ] || [ -f /usr/include/nlohmann/json.hpp ]; then
  jobs+=("tools/rlhf-conformance/main.cu:$BIN/rlhf-conformance")
else
  echo "no nlohmann/json.hpp (run bench/gpu/prepare.sh here first): the conformance runner is not built"
fi
printf '%s\n' "${jobs[@]}" | xargs -P "$(nproc)" -I{} sh -c 'src=${1%%:*}; out=${1#*:}; '"$NVCC"' '"$FLAGS"' -o "$out" "$src" > "$out.build.log" 2>&1 || { echo "BUILD FAILED: $src"; cat "$out.build.log" | head -30; }' _ {} | tee "$OUT/build.log"
grep -q "BUILD FAILED" "$OUT/build.log" && status=1

if ! nvidia-smi -L > /dev/null 2>&1; then
  stamp "no GPU here: built only"
  exit $status
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"

stamp "CUDA tests"
for t in "$BIN"/test_*_cuda; do
  [ -x "$t" ] || continue
  echo "-- $(basename "$t")"
  timeout 120 "$t" 2>&1 | tail -40 | tee -a "$OUT/tests.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] && { echo "   exit $rc"; status=1; }
done

if [ -x "$BIN/rlhf-conformance" ]; then
  stamp "conformance on the device"
  "$BIN/rlhf-conformance" --backend cuda --summary tests/data/conformance/*.json 2>&1 | tee "$OUT/conformance_cuda.log" | tail -40
  [ "${PIPESTATUS[0]}" -ne 0 ] && status=1
  "$BIN/rlhf-conformance" --backend cuda --float tests/data/conformance/*.json 2>&1 | tee "$OUT/conformance_cuda_float.log" | tail -8
  [ "${PIPESTATUS[0]}" -ne 0 ] && status=1
fi

if [ "$SAN" = 1 ] && command -v compute-sanitizer > /dev/null; then
  stamp "compute-sanitizer memcheck"
  for t in "$BIN"/test_*_cuda; do
    [ -x "$t" ] || continue
    RLHF_CUDA_TEST_SMALL=1 timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$t" > "$OUT/memcheck_$(basename "$t").log" 2>&1
    rc=$?
    echo "-- $(basename "$t"): memcheck exit $rc ($(grep -c "Invalid\|ERROR SUMMARY: [1-9]" "$OUT/memcheck_$(basename "$t").log") error lines)" | tee -a "$OUT/memcheck.log"
    [ "$rc" -ne 0 ] && status=1
  done
fi

if [ "$BENCH" = 1 ]; then
  stamp "benchmarks"
  "$BIN/bench_gpu" $QUICK 2>&1 | tee "$OUT/ours.jsonl"
  if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site
  fi
  PYTHONUNBUFFERED=1 timeout 300 python3 bench/gpu/bench_torch.py $QUICK 2>&1 | tee "$OUT/torch.jsonl"
  python3 bench/gpu/report.py "$OUT/ours.jsonl" "$OUT/torch.jsonl" | tee "$OUT/report.md"
fi
stamp "done (status $status)"
exit $status
