// rlhf++ — shared plumbing of the CUDA kernels: strided accessors, the
// [B, T] launch shape, block reductions (CUB), small device scratch.
#pragma once

#ifndef __CUDACC__
#  error "rlhf/backend/cuda/*.cuh must be compiled by nvcc; include <rlhf/cuda.hpp> from a .cu file"
#endif

#include <cub/block/block_reduce.cuh>

#include <array>
#include <type_traits>
#include <vector>

#include "../../core/check.hpp"
#include "../../cuda.hpp"
#include "../../math/tokens.hpp"

namespace rlhf::cuda_kernels {

inline constexpr int block_threads = 256;
/// Tokens of one row handled by one block of a [B, T] pass (8 per thread).
inline constexpr index_t row_chunk = 2048;

/// A read-only strided 2-D accessor (math/tokens.hpp: the CPU engine's too).
template <class T>
using in2 = rlhf::strided2<T>;
/// A writable strided 2-D device accessor (null: nothing is written).
template <class T>
struct out2 {
  T* p = nullptr;
  index_t s0 = 0, s1 = 0;
  __device__ void set(index_t b, index_t t, double v) const {
    if (p) p[b * s0 + t * s1] = static_cast<T>(v);
  }
  __device__ double get(index_t b, index_t t) const { return static_cast<double>(p[b * s0 + t * s1]); }
  [[nodiscard]] __host__ __device__ bool null() const { return p == nullptr; }
};

template <class T, class S>
in2<std::remove_const_t<T>> in(const tensor_view<T, 2, S>& v) {
  return rlhf::strided(v);
}
template <class T, class S>
out2<T> out(const tensor_view<T, 2, S>& v) {
  return {v.data(), v.null() ? 0 : v.stride(0), v.null() ? 0 : v.stride(1)};
}

/// Grid of a [B, T] pass: x = rows, y = chunks of row_chunk tokens.
inline dim3 grid_bt(index_t B, index_t T) {
  return dim3(static_cast<unsigned>(B), static_cast<unsigned>((T + row_chunk - 1) / row_chunk));
}
/// Grid-stride grid over n elements.
inline unsigned grid_1d(index_t n) {
  const index_t g = (n + block_threads - 1) / block_threads;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 65535 ? 65535 : g));
}

template <int K>
struct sums {
  double v[K];
};
template <int K>
struct sum_op {
  __device__ sums<K> operator()(const sums<K>& a, const sums<K>& b) const {
    sums<K> r;
#pragma unroll
    for (int k = 0; k < K; ++k) r.v[k] = a.v[k] + b.v[k];
    return r;
  }
};

/// Sums K doubles over the block (cub::BlockReduce) and adds them to out[0..K)
/// atomically from thread 0.
template <int K>
__device__ void block_accumulate(const sums<K>& x, double* out) {
  using reduce = cub::BlockReduce<sums<K>, block_threads>;
  __shared__ typename reduce::TempStorage tmp;
  const sums<K> total = reduce(tmp).Reduce(x, sum_op<K>{});
  if (threadIdx.x == 0)
#pragma unroll
    for (int k = 0; k < K; ++k) atomicAdd(out + k, total.v[k]);
}

/// Per-row sums, over grid_bt: out[b] += sum_t x[b, t] (a mask's valid-token
/// counts, a reward row's outcome score).
template <class X>
__global__ void row_sums(in2<X> x, index_t T, double* out) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T ? t0 + row_chunk : T;
  sums<1> c{{0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) c.v[0] += x(b, t);
  block_accumulate<1>(c, out + b);
}

/// totals[0] = sum_b counts[b], totals[1] = #rows with a valid token (one block).
template <class = void>
__global__ void count_totals(const double* counts, index_t B, double* totals) {
  sums<2> x{{0.0, 0.0}};
  for (index_t b = threadIdx.x; b < B; b += blockDim.x) {
    x.v[0] += counts[b];
    x.v[1] += counts[b] > 0 ? 1.0 : 0.0;
  }
  block_accumulate<2>(x, totals);
}

/// out[0] += sum of x[0..n) (one block).
template <class = void>
__global__ void sum_vector(const double* x, index_t n, double* out) {
  sums<1> s{{0.0}};
  for (index_t i = threadIdx.x; i < n; i += blockDim.x) s.v[0] += x[i];
  block_accumulate<1>(s, out);
}

/// Device doubles zeroed on the tag's stream (stream-ordered memory), read
/// back after a synchronize.
class scratch {
 public:
  scratch(std::size_t n, cudaStream_t s, const char* fn) : buf_(n, s, fn), fn_(fn) {
    rlhf::detail::check_cuda(cudaMemsetAsync(buf_.data(), 0, n * sizeof(double), s), fn, "cudaMemsetAsync");
  }
  [[nodiscard]] double* data() const noexcept { return buf_.data(); }
  std::vector<double> read() const {
    std::vector<double> h(buf_.size());
    buf_.download(h.data(), h.size(), fn_);
    return h;
  }

 private:
  stream_buffer<double> buf_;
  const char* fn_;
};

inline void check_launch(const char* fn, const char* kernel) {
  rlhf::detail::check_cuda(cudaGetLastError(), fn, kernel);
}

}  // namespace rlhf::cuda_kernels
