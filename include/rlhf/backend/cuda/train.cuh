// rlhf++ — the trainers on the device: `rlhf::experiment<..., rlhf::cuda>`
// (or a structure whose backend is rlhf::cuda) runs every op of
// train::rl_trainer / train::dpo_trainer on the GPU, with the [B, T] buffers
// in device memory (rlhf::device_tensor, kept from step to step).
//
//   #include <rlhf/backend/cuda/train.cuh>   // first: every device op, then <rlhf/rlhf.hpp>
//
// What this header adds to the kernels: the device half of the trainers'
// memory layer (train/memory.hpp: conversions, row gathers, finite checks,
// host <-> device copies) and the fused linear path for hidden-state
// policies (ops::fused_linear_impl<cuda_t>, one cuBLAS handle per thread).
//
// The trainers call the ops by qualified name, which C++ binds where the
// trainer templates are defined: the device overloads must be declared
// before them, hence this header includes <rlhf/rlhf.hpp> itself, and an
// earlier include of the trainers is an error.
#pragma once

#ifdef RLHF_TRAINERS_INCLUDED
#  error \
      "rlhf: include <rlhf/backend/cuda/train.cuh> before <rlhf/rlhf.hpp> (or any rlhf/train/ header): the trainers must see the device ops (docs/cuda.md)"
#endif

#include <string>
#include <type_traits>
#include <vector>

#include "advantage.cuh"
#include "common.cuh"
#include "dpo.cuh"
#include "fused_linear.cuh"
#include "kl.cuh"
#include "logits.cuh"
#include "masked.cuh"
#include "objectives.cuh"
#include "variants.cuh"
#include "../../core/viewable.hpp"
#include "../../train/memory.hpp"

namespace rlhf::cuda_kernels {

/// A value as double (half and bfloat16 through float).
template <class T>
__device__ double as_double(T x) {
  if constexpr (std::is_floating_point_v<T> || std::is_integral_v<T>)
    return static_cast<double>(x);
  else
    return static_cast<double>(static_cast<float>(x));
}
/// A double as X (half and bfloat16 through float).
template <class X>
__device__ X from_double(double x) {
  if constexpr (std::is_floating_point_v<X> || std::is_integral_v<X>)
    return static_cast<X>(x);
  else
    return X(static_cast<float>(x));
}

/// out (contiguous [rows, cols]) = X(x) for a strided x.
template <class E, class X>
__global__ void convert_2d(const E* x, index_t s0, index_t s1, X* out, index_t rows, index_t cols) {
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, c = i % cols;
    out[i] = from_double<X>(as_double(x[r * s0 + c * s1]));
  }
}

/// out[i, :] = x[rows[i], :] (out contiguous).
template <class T>
__global__ void gather_rows_kernel(const T* x, index_t s0, index_t s1, const index_t* rows, index_t n, index_t cols,
                                   T* out) {
  const index_t total = n * cols;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, c = i % cols;
    out[i] = x[rows[r] * s0 + c * s1];
  }
}

/// first[0] = the smallest flat index i of a non-finite x (starts at n).
template <class T>
__global__ void first_non_finite(const T* x, index_t s0, index_t s1, index_t rows, index_t cols,
                                 unsigned long long* first) {
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t r = i / cols, c = i % cols;
    if (!isfinite(as_double(x[r * s0 + c * s1]))) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::train::detail {

/// The device half of the trainers' memory layer (train/memory.hpp).
template <>
struct memory<device_space> {
  static constexpr bool available = true;

  template <class Tag>
  static cudaStream_t stream_of(const Tag& be) {
    if constexpr (std::is_same_v<Tag, cuda_t>)
      return be.stream;
    else
      return nullptr;
  }
  /// (rows, cols, s0, s1) of a rank-1 or rank-2 view.
  template <class T, std::size_t R, class S>
  static std::array<index_t, 4> layout(const tensor_view<T, R, S>& x) {
    if constexpr (R == 1)
      return {x.extent(0), 1, x.stride(0), 1};
    else
      return {x.extent(0), x.extent(1), x.stride(0), x.stride(1)};
  }

  template <class Tag, class E, class X, std::size_t R>
  static void convert(Tag be, tensor_view<E, R, device_space> x, tensor_view<X, R, device_space> out) {
    constexpr const char* fn = "train: convert (cuda)";
    const auto [rows, cols, s0, s1] = layout(x);
    if (rows * cols == 0) return;
    namespace ck = cuda_kernels;
    ck::convert_2d<<<ck::grid_1d(rows * cols), ck::block_threads, 0, stream_of(be)>>>(x.data(), s0, s1, out.data(),
                                                                                      rows, cols);
    ck::check_launch(fn, "convert_2d");
  }

  template <class Tag, class T>
  static void gather_rows(Tag be, tensor_view<const T, 2, device_space> x, const std::vector<index_t>& rows,
                          tensor_view<T, 2, device_space> out) {
    constexpr const char* fn = "train: gather rows (cuda)";
    const auto n = static_cast<index_t>(rows.size());
    if (n * x.extent(1) == 0) return;
    const cudaStream_t s = stream_of(be);
    stream_buffer<index_t> r(rows.size(), s, fn);
    r.upload(rows.data(), rows.size(), fn);
    namespace ck = cuda_kernels;
    ck::gather_rows_kernel<<<ck::grid_1d(n * x.extent(1)), ck::block_threads, 0, s>>>(
        x.data(), x.stride(0), x.stride(1), r.data(), n, x.extent(1), out.data());
    ck::check_launch(fn, "gather_rows");
  }

  /// An rlhf::error(non_finite) naming `what` and the first bad position.
  template <class Tag, class T, std::size_t R>
  static void require_finite(Tag be, const char* fn, const char* what, tensor_view<T, R, device_space> x) {
    const auto [rows, cols, s0, s1] = layout(x);
    if (rows * cols == 0) return;
    const cudaStream_t s = stream_of(be);
    stream_buffer<unsigned long long> first(1, s, fn);
    const auto n = static_cast<unsigned long long>(rows * cols);
    first.upload(&n, 1, fn);
    namespace ck = cuda_kernels;
    ck::first_non_finite<<<ck::grid_1d(rows * cols), ck::block_threads, 0, s>>>(x.data(), s0, s1, rows, cols,
                                                                                first.data());
    ck::check_launch(fn, "first_non_finite");
    unsigned long long i = 0;
    first.download(&i, 1, fn);
    if (i < n) {
      std::string at = R == 1 ? "[" + std::to_string(i) + "]"
                              : "[" + std::to_string(i / static_cast<unsigned long long>(cols)) + ", " +
                                    std::to_string(i % static_cast<unsigned long long>(cols)) + "]";
      rlhf::detail::fail(error_kind::non_finite, fn, what, "holds a NaN or Inf at " + at + " (on the device)");
    }
  }

  /// host (contiguous) -> device (contiguous), on the tag's stream.
  template <class Tag, class T, std::size_t R>
  static void upload(Tag be, tensor_view<const T, R> host, tensor_view<T, R, device_space> dev) {
    const auto bytes = static_cast<std::size_t>(host.size()) * sizeof(T);
    if (bytes == 0) return;
    // pageable host memory: the call returns once the bytes are staged, so the host buffer may be reused
    rlhf::detail::check_cuda(cudaMemcpyAsync(dev.data(), host.data(), bytes, cudaMemcpyHostToDevice, stream_of(be)),
                             "train: upload (cuda)", "cudaMemcpyAsync (to device)");
  }

  /// device (rows may be strided) -> host (contiguous); waits for the stream.
  template <class Tag, class T, std::size_t R>
  static void download(Tag be, tensor_view<const T, R, device_space> dev, tensor_view<T, R> host) {
    constexpr const char* fn = "train: download (cuda)";
    const auto [rows, cols, s0, s1] = layout(dev);
    if (rows * cols == 0) return;
    const cudaStream_t s = stream_of(be);
    const bool contiguous = (cols == 1 ? s0 == 1 || rows == 1 : s1 == 1 && (s0 == cols || rows == 1));
    if (contiguous) {
      rlhf::detail::check_cuda(
          cudaMemcpyAsync(host.data(), dev.data(), static_cast<std::size_t>(rows * cols) * sizeof(T),
                          cudaMemcpyDeviceToHost, s),
          fn, "cudaMemcpyAsync (to host)");
    } else if (s1 == 1 || cols == 1) {
      const auto w = static_cast<std::size_t>(cols) * sizeof(T);
      const auto pitch = static_cast<std::size_t>(s0) * sizeof(T);
      rlhf::detail::check_cuda(cudaMemcpy2DAsync(host.data(), w, dev.data(), pitch, w, static_cast<std::size_t>(rows),
                                                 cudaMemcpyDeviceToHost, s),
                               fn, "cudaMemcpy2DAsync (to host)");
    } else {
      // strided columns: made contiguous on the device first
      stream_buffer<T> tmp(static_cast<std::size_t>(rows * cols), s, fn);
      namespace ck = cuda_kernels;
      ck::convert_2d<<<ck::grid_1d(rows * cols), ck::block_threads, 0, s>>>(dev.data(), s0, s1, tmp.data(), rows, cols);
      ck::check_launch(fn, "convert_2d");
      tmp.download(host.data(), static_cast<std::size_t>(rows * cols), fn);
    }
    rlhf::detail::check_cuda(cudaStreamSynchronize(s), fn, "cudaStreamSynchronize");
  }
};

}  // namespace rlhf::train::detail

namespace rlhf::ops {

/// The fused linear path of the device for generic callers (the trainers):
/// the tag's cuBLAS handle, or one per thread, created on first use.
template <>
struct fused_linear_impl<cuda_t> {
  static constexpr bool available = true;

  /// logp / entropy [N] of the rows of hidden [N, H] under weight [V, H]
  /// (no gradient): per chunk, Z = X W^T by cuBLAS, then the fused logits forward.
  template <class T, class L, class O>
  static void logprobs(cuda_t tag, tensor_view<const T, 2, device_space> hidden,
                       tensor_view<const T, 2, device_space> weight, tensor_view<L, 1, device_space> labels,
                       tensor_view<O, 1, device_space> logp, tensor_view<O, 1, device_space> entropy,
                       const fused_linear_params& p = {}) {
    constexpr const char* fn = "ops::fused_linear_logprobs (cuda)";
    rlhf::detail::require_nonempty(fn, "hidden", hidden);
    rlhf::detail::require_nonempty(fn, "weight", weight);
    rlhf::detail::require_extent(fn, "weight", weight, 1, hidden.extent(1), "the hidden size H");
    rlhf::detail::require_extent(fn, "labels", labels, 0, hidden.extent(0), "one label per hidden row");
    if (hidden.stride(1) != 1 || weight.stride(1) != 1)
      rlhf::detail::fail(error_kind::shape, fn, "hidden", "and weight need contiguous rows");
    const index_t N = hidden.extent(0), H = hidden.extent(1), V = weight.extent(0);
    const index_t chunk = fused_linear_chunk(N, V, sizeof(T), p);
    stream_buffer<T> z(static_cast<std::size_t>(chunk * V), tag.stream, fn);
    const cublasHandle_t h = cuda_kernels::blas_of(tag);
    rlhf::detail::check_cublas(cublasSetStream(h, tag.stream), fn, "cublasSetStream");
    auto part = [](auto v, index_t r0, index_t n) {
      using U = typename decltype(v)::element_type;
      return v.null() ? tensor_view<U, 1, device_space>{}
                      : tensor_view<U, 1, device_space>(v.data() + r0 * v.stride(0), {n}, {v.stride(0)});
    };
    for (index_t r0 = 0; r0 < N; r0 += chunk) {
      const index_t n = std::min(chunk, N - r0);
      cuda_kernels::gemm<T, T>(h, fn, CUBLAS_OP_T, CUBLAS_OP_N, V, n, H, weight.data(), weight.stride(0),
                               hidden.data() + r0 * hidden.stride(0), hidden.stride(0), z.data(), V, 0.0);
      logprobs_entropy(tag, tensor_view<const T, 2, device_space>(z.data(), {n, V}), part(labels, r0, n),
                       part(logp, r0, n), part(entropy, r0, n), tensor_view<O, 1, device_space>{}, p.logits);
    }
  }

  template <class... A>
  static fused_linear_result objective(cuda_t tag, A&&... a) {
    return fused_linear_objective(tag, std::forward<A>(a)...);
  }
};

}  // namespace rlhf::ops

#include "../../rlhf.hpp"
