// The machine's copy bandwidth, measured in the same run as the ops it is
// compared with (STREAM convention: bytes read + bytes written).
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(_OPENMP)
#  include <omp.h>
#endif

namespace rlhf_bench {

/// BM_copy/MiB/threads: b = a over MiB of floats.
inline void copy_bandwidth(benchmark::State& s) {
  const int threads = static_cast<int>(s.range(1));
#if defined(_OPENMP)
  omp_set_num_threads(threads);
#endif
  s.counters["threads"] = threads;
  const std::size_t n = static_cast<std::size_t>(s.range(0)) << 20 >> 2;
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  for (auto _ : s) {
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) b[i] = a[i];
    benchmark::ClobberMemory();
  }
  s.SetBytesProcessed(s.iterations() * static_cast<int64_t>(n) * 8);
}

}  // namespace rlhf_bench
