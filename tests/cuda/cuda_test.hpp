// Shared helpers of the device tests: host/device pairs of [B, T] arrays,
// random inputs, tolerant comparisons, and the skip code when no GPU exists.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <rlhf/cuda.hpp>
#include <type_traits>
#include <string>
#include <vector>

namespace cuda_test {

using rlhf::index_t;

inline int failures = 0;

/// float <-> the device element types (half and bfloat16 included), on the host.
template <class T>
float as_float(T x) {
  if constexpr (std::is_same_v<T, __half>)
    return __half2float(x);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(x);
  else
    return static_cast<float>(x);
}
template <class T>
T from_float(float x) {
  if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(x);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16_rn(x);
  else
    return static_cast<T>(x);
}

/// A 1-D array on the host and on the device.
template <class T>
struct pair1 {
  std::vector<T> h;
  rlhf::device_buffer<T> d;
  explicit pair1(std::vector<T> x) : h(std::move(x)), d(h.size()) {
    if (!h.empty()) d.copy_from_host(h.data(), h.size());
  }
  std::vector<T> read() const {
    rlhf::detail::check_cuda(cudaDeviceSynchronize(), "test", "synchronize");
    std::vector<T> o(h.size());
    if (!o.empty()) d.copy_to_host(o.data(), o.size());
    return o;
  }
  [[nodiscard]] index_t n() const { return static_cast<index_t>(h.size()); }
  rlhf::tensor_view<T, 1> hv() { return {h.data(), {n()}}; }
  rlhf::tensor_view<const T, 1> hc() const { return {h.data(), {n()}}; }
  rlhf::device_view<T, 1> dv() const { return {d.data(), {n()}}; }
  rlhf::device_view<const T, 1> dc() const { return {d.data(), {n()}}; }
};

/// A [B, T] array on the host and on the device.
template <class T>
struct pair2 {
  index_t B = 0, T_ = 0;
  std::vector<T> h;
  rlhf::device_buffer<T> d;
  pair2(index_t b, index_t t) : B(b), T_(t), h(static_cast<std::size_t>(b * t)), d(static_cast<std::size_t>(b * t)) {}
  void upload() { d.copy_from_host(h.data(), h.size()); }
  std::vector<T> download() const {
    rlhf::detail::check_cuda(cudaDeviceSynchronize(), "test", "synchronize");
    std::vector<T> out(h.size());
    d.copy_to_host(out.data(), out.size());
    return out;
  }
  rlhf::tensor_view<T, 2> hv() { return {h.data(), {B, T_}}; }
  rlhf::tensor_view<const T, 2> hc() const { return {h.data(), {B, T_}}; }
  rlhf::device_view<T, 2> dv() const { return {d.data(), {B, T_}}; }
  rlhf::device_view<const T, 2> dc() const { return {d.data(), {B, T_}}; }
};

template <class T>
pair2<T> normal(index_t B, index_t T_, unsigned seed, double mu = 0, double sd = 1) {
  pair2<T> p(B, T_);
  std::mt19937 g(seed);
  std::normal_distribution<double> n(mu, sd);
  for (auto& x : p.h) x = static_cast<T>(n(g));
  p.upload();
  return p;
}

/// A mask with ragged rows (row b keeps its first T - (b * 7 % T) tokens),
/// one fully masked row when B > 2, and a hole in the middle of row 0.
template <class T>
pair2<T> ragged_mask(index_t B, index_t T_) {
  pair2<T> m(B, T_);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) m.h[static_cast<std::size_t>(b * T_ + t)] = t < T_ - (b * 7 % T_) ? T(1) : T(0);
  if (B > 2)
    for (index_t t = 0; t < T_; ++t) m.h[static_cast<std::size_t>(2 * T_ + t)] = T(0);
  if (T_ > 4) m.h[static_cast<std::size_t>(T_ / 2)] = T(0);
  m.upload();
  return m;
}

inline bool near(double a, double b, double rtol, double atol) {
  return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

inline void check(const std::string& what, double device, double cpu, double rtol, double atol) {
  if (!near(device, cpu, rtol, atol) && !(std::isnan(device) && std::isnan(cpu))) {
    std::printf("FAIL %s: device %.17g cpu %.17g\n", what.c_str(), device, cpu);
    ++failures;
  }
}

template <class T>
void check_all(const std::string& what, const std::vector<T>& device, const std::vector<T>& cpu, double rtol,
               double atol) {
  for (std::size_t i = 0; i < cpu.size(); ++i)
    if (!near(static_cast<double>(device[i]), static_cast<double>(cpu[i]), rtol, atol)) {
      std::printf("FAIL %s element %zu: device %.17g cpu %.17g\n", what.c_str(), i, static_cast<double>(device[i]),
                  static_cast<double>(cpu[i]));
      ++failures;
      return;
    }
}

/// False when RLHF_CUDA_TEST_SMALL is set (the sanitizer runs of
/// bench/gpu/run.sh): the largest cases are skipped.
inline bool full_size() { return std::getenv("RLHF_CUDA_TEST_SMALL") == nullptr; }

/// 77 (ctest: skipped) without a GPU, else the number of failures (0 = pass).
template <class F>
int run(F&& body) {
  if (!rlhf::cuda_available()) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  body();
  std::printf(failures ? "%d failures\n" : "all passed\n", failures);
  return failures ? 1 : 0;
}

}  // namespace cuda_test
