// Device aggregation (every mode, dp options) against the CPU backend.
// Exits 77 (ctest: skipped) when no GPU can run kernels here.
#include <cmath>
#include <cstdio>
#include <random>
#include <rlhf/backend/cuda/engine.cuh>
#include <rlhf/ops/aggregate.hpp>
#include <rlhf/cuda.hpp>
#include <vector>

int main() {
  if (!rlhf::cuda_available()) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  int failures = 0;
  const rlhf::index_t B = 9, T = 300;
  std::mt19937 g(5);
  std::normal_distribution<double> n(0, 1);
  std::vector<double> L(B * T), m(B * T, 0.0), w(B * T), cw(B * T);
  for (auto& x : L) x = n(g);
  for (rlhf::index_t b = 0; b < B; ++b)
    for (rlhf::index_t t = 0; t < (b == 3 ? 0 : (b * 37) % T + 1); ++t) m[b * T + t] = 1;  // row 3 empty
  rlhf::device_buffer<double> dL(L.size()), dm(m.size()), dw(w.size());
  dL.copy_from_host(L.data(), L.size());
  dm.copy_from_host(m.data(), m.size());
  for (int mode = 0; mode < 5; ++mode) {
    rlhf::agg_params p;
    p.mode = static_cast<rlhf::agg_mode>(mode);
    const double want = rlhf::ops::aggregate(rlhf::cpu, rlhf::tensor_view<const double, 2>(L.data(), {B, T}),
                                             rlhf::tensor_view<const double, 2>(m.data(), {B, T}), p,
                                             rlhf::tensor_view<double, 2>(cw.data(), {B, T}));
    const double got = rlhf::ops::aggregate(rlhf::cuda, rlhf::device_view<const double, 2>(dL.data(), {B, T}),
                                            rlhf::device_view<const double, 2>(dm.data(), {B, T}), p, dw.view(B, T));
    dw.copy_to_host(w.data(), w.size());
    if (std::fabs(got - want) > 1e-12 * (1 + std::fabs(want))) {
      std::printf("FAIL mode %d: device %.17g cpu %.17g\n", mode, got, want);
      ++failures;
    }
    for (std::size_t i = 0; i < w.size(); ++i)
      if (std::fabs(w[i] - cw[i]) > 1e-15 * (1 + std::fabs(cw[i]))) {
        std::printf("FAIL mode %d weight %zu\n", mode, i);
        ++failures;
        break;
      }
  }
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
