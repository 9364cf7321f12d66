// The device KL estimators against the CPU backend on random inputs (every
// estimator, straight-through, clamps, float and double, a strided view).
// Exits 77 (ctest: skipped) when no GPU can run kernels here.
#include <cmath>
#include <cstdio>
#include <random>
#include <rlhf/backend/cuda/kl.cuh>
#include <rlhf/cuda.hpp>
#include <vector>

namespace {
int failures = 0;

template <class T>
void check_estimator(const rlhf::kl_params& p, rlhf::index_t B, rlhf::index_t T_, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<double> n(-1.0, 3.0);
  const std::size_t size = static_cast<std::size_t>(B * T_);
  std::vector<T> lp(size), ref(size), kl(size), dkl(size), ckl(size), cdkl(size);
  for (std::size_t i = 0; i < size; ++i) {
    lp[i] = static_cast<T>(n(g));
    ref[i] = static_cast<T>(n(g));
  }
  rlhf::kl::estimate(rlhf::cpu, rlhf::tensor_view<const T, 2>(lp.data(), {B, T_}),
                     rlhf::tensor_view<const T, 2>(ref.data(), {B, T_}), p,
                     rlhf::tensor_view<T, 2>(ckl.data(), {B, T_}), rlhf::tensor_view<T, 2>(cdkl.data(), {B, T_}));
  rlhf::device_buffer<T> d_lp(size), d_ref(size), d_kl(size), d_dkl(size);
  d_lp.copy_from_host(lp.data(), size);
  d_ref.copy_from_host(ref.data(), size);
  rlhf::kl::estimate(rlhf::cuda, rlhf::device_view<const T, 2>(d_lp.data(), {B, T_}),
                     rlhf::device_view<const T, 2>(d_ref.data(), {B, T_}), p, d_kl.view(B, T_), d_dkl.view(B, T_));
  rlhf::detail::check_cuda(cudaDeviceSynchronize(), "test", "synchronize");
  d_kl.copy_to_host(kl.data(), size);
  d_dkl.copy_to_host(dkl.data(), size);
  const double tol = sizeof(T) == 8 ? 1e-12 : 1e-5;
  for (std::size_t i = 0; i < size; ++i) {
    auto bad = [&](double a, double b) { return std::fabs(a - b) > tol * (1 + std::fabs(b)); };
    if (bad(kl[i], ckl[i]) || bad(dkl[i], cdkl[i])) {
      std::printf("FAIL estimator %d st %d element %zu: device (%g, %g) cpu (%g, %g)\n", static_cast<int>(p.estimator),
                  p.straight_through, i, static_cast<double>(kl[i]), static_cast<double>(dkl[i]),
                  static_cast<double>(ckl[i]), static_cast<double>(cdkl[i]));
      ++failures;
      return;
    }
  }
}
}  // namespace

int main() {
  if (!rlhf::cuda_available()) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  for (int e = 0; e < 4; ++e)
    for (bool st : {false, true}) {
      const auto est = static_cast<rlhf::kl_estimator>(e);
      check_estimator<double>(rlhf::kl_params::verl(est, st), 7, 13, 1u + e);
      check_estimator<float>(rlhf::kl_params::verl(est, st), 33, 129, 2u + e);
      check_estimator<double>(rlhf::kl_params::openrlhf(est), 5, 1000, 3u + e);
    }
  // errors still name the argument on the device path
  try {
    rlhf::device_buffer<double> a(6), b(8), k(6);
    rlhf::kl::estimate(rlhf::cuda, rlhf::device_view<const double, 2>(a.data(), {2, 3}),
                       rlhf::device_view<const double, 2>(b.data(), {2, 4}), rlhf::kl_params{}, k.view(2, 3));
    std::printf("FAIL: no shape error\n");
    ++failures;
  } catch (const rlhf::error& err) {
    if (err.kind() != rlhf::error_kind::shape) ++failures;
  }
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
