// rlhf++ — the fused linear path on the device: a token objective on
// logits = hidden weight^T without ever holding the [N, V] logits.
//
// Rows go in chunks: cuBLAS computes the chunk's logits into one workspace
// [chunk, V] (GemmEx, float accumulation: tensor cores for half / bfloat16),
// fused_token_objective (logits.cuh) overwrites them in place with their
// gradient, and two more GEMMs give the chunk's dhidden rows and add its
// share of dweight. Peak extra memory: the workspace (chunk x V) plus O(N);
// dhidden and dweight are outputs (dweight may be float for bfloat16
// weights: exact accumulation over chunks).
#pragma once

#include <cublas_v2.h>

#include <algorithm>

#include "../../ops/fused_linear_params.hpp"
#include "logits.cuh"

namespace rlhf {

namespace detail {
inline void check_cublas(cublasStatus_t s, const char* fn, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(error_kind::device, fn, "", std::string(what) + " failed: " + cublasGetStatusString(s));
}
}  // namespace detail

/// An RAII cuBLAS handle (create once, reuse: creation costs milliseconds).
class cublas_handle {
 public:
  cublas_handle() { detail::check_cublas(cublasCreate(&h_), "cublas_handle", "cublasCreate"); }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  ~cublas_handle() {
    if (h_) cublasDestroy(h_);
  }
  [[nodiscard]] cublasHandle_t get() const noexcept { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

namespace cuda_kernels {
/// The tag's cuBLAS handle, or this host thread's (created on first use).
inline cublasHandle_t blas_of(const cuda_t& tag) {
  if (tag.blas != nullptr) return tag.blas;
  thread_local cublas_handle h;
  return h.get();
}
}  // namespace cuda_kernels

}  // namespace rlhf

namespace rlhf::cuda_kernels {

template <class T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, __half>)
    return CUDA_R_16F;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return CUDA_R_16BF;
  else if constexpr (std::is_same_v<T, float>)
    return CUDA_R_32F;
  else
    return CUDA_R_64F;
}

/// The caller's objective seen from a chunk: row i of the chunk is row r0 + i.
template <class Objective>
struct offset_objective {
  Objective obj;
  index_t r0;
  RLHF_HD ops::token_terms operator()(index_t i, double logp, double h) const { return obj(i + r0, logp, h); }
};

/// C = alpha op(A) op(B) + beta C in column-major terms (see the call sites).
template <class AB, class C>
void gemm(cublasHandle_t h, const char* fn, cublasOperation_t ta, cublasOperation_t tb, index_t m, index_t n, index_t k,
          const AB* A, index_t lda, const AB* B, index_t ldb, C* Cp, index_t ldc, double beta) {
  constexpr bool dbl = std::is_same_v<AB, double>;
  const double ad = 1.0, bd = beta;
  const float af = 1.0f, bf = static_cast<float>(beta);
  const void* alpha = dbl ? static_cast<const void*>(&ad) : static_cast<const void*>(&af);
  const void* betap = dbl ? static_cast<const void*>(&bd) : static_cast<const void*>(&bf);
  rlhf::detail::check_cublas(
      cublasGemmEx(h, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, A, cuda_type<AB>(),
                   static_cast<int>(lda), B, cuda_type<AB>(), static_cast<int>(ldb), betap, Cp, cuda_type<C>(),
                   static_cast<int>(ldc), dbl ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      fn, "cublasGemmEx");
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::ops {

/// The fused linear objective on the device. hidden [N, H], weight [V, H]
/// (float, double, half or bfloat16, contiguous rows), labels [N];
/// `objective` a device functor as for fused_token_objective (global row
/// index). dhidden [N, H] and dweight [V, H] (overwritten) are each of the
/// weights' type or, for half / bfloat16 weights, float. logp / entropy [N] optional (float or double).
template <class T, class L, class Objective, class DX, class DW, class O = float>
fused_linear_result fused_linear_objective(cuda_t tag, tensor_view<T, 2, device_space> hidden, in_dview<T, 2> weight,
                                           tensor_view<L, 1, device_space> labels, const Objective& objective,
                                           tensor_view<DX, 2, device_space> dhidden,
                                           tensor_view<DW, 2, device_space> dweight,
                                           tensor_view<O, 1, device_space> logp = {},
                                           tensor_view<O, 1, device_space> entropy = {},
                                           const fused_linear_params& p = {}) {
  constexpr const char* fn = "ops::fused_linear_objective (cuda)";
  using V_ = value_t<T>;
  static_assert((std::is_same_v<DX, V_> || (std::is_same_v<DX, float> && sizeof(V_) == 2)) &&
                    (std::is_same_v<DW, V_> || (std::is_same_v<DW, float> && sizeof(V_) == 2)),
                "rlhf: dhidden / dweight are of the weights' type (or float for half / bfloat16 weights)");
  detail::check_fused_linear(fn, hidden, weight, labels, dhidden, dweight);
  const index_t N = hidden.extent(0), H = hidden.extent(1), V = weight.extent(0);
  const index_t chunk = fused_linear_chunk(N, V, sizeof(V_), p);
  stream_buffer<V_> z(static_cast<std::size_t>(chunk * V), tag.stream, fn);
  namespace ck = cuda_kernels;
  const cublasHandle_t h = ck::blas_of(tag);
  rlhf::detail::check_cublas(cublasSetStream(h, tag.stream), fn, "cublasSetStream");
  fused_linear_result r{0.0, chunk};
  // every chunk's row losses stay on the device: one read-back at the end,
  // so the GEMMs of consecutive chunks queue without waiting for the host
  stream_buffer<double> row_loss(static_cast<std::size_t>(N), tag.stream, fn);
  for (index_t r0 = 0; r0 < N; r0 += chunk) {
    const index_t n = std::min(chunk, N - r0);
    const V_* X = hidden.data() + r0 * hidden.stride(0);
    // Z [n, V] = X W^T  (column-major: Z^T [V, n] = W^T^T ... = op_T(W^T [H, V]) X^T [H, n])
    ck::gemm<V_, V_>(h, fn, CUBLAS_OP_T, CUBLAS_OP_N, V, n, H, weight.data(), weight.stride(0), X, hidden.stride(0),
                     z.data(), V, 0.0);
    const tensor_view<V_, 2, device_space> zv(z.data(), {n, V});
    detail::launch_fused_token_objective(
        tag, fn, tensor_view<const V_, 2, device_space>(zv),
        tensor_view<L, 1, device_space>(labels.data() + r0 * labels.stride(0), {n}, {labels.stride(0)}),
        ck::offset_objective<Objective>{objective, r0}, zv,
        logp.null() ? tensor_view<O, 1, device_space>{}
                    : tensor_view<O, 1, device_space>(logp.data() + r0 * logp.stride(0), {n}, {logp.stride(0)}),
        entropy.null()
            ? tensor_view<O, 1, device_space>{}
            : tensor_view<O, 1, device_space>(entropy.data() + r0 * entropy.stride(0), {n}, {entropy.stride(0)}),
        p.logits, row_loss.data() + r0);
    // dX [n, H] = dZ W  (column-major: dX^T [H, n] = W^T [H, V] dZ^T [V, n])
    ck::gemm<V_, DX>(h, fn, CUBLAS_OP_N, CUBLAS_OP_N, H, n, V, weight.data(), weight.stride(0), z.data(), V,
                     dhidden.data() + r0 * dhidden.stride(0), dhidden.stride(0), 0.0);
    // dW [V, H] += dZ^T X  (column-major: dW^T [H, V] += X^T [H, n] op_T(dZ^T [V, n]))
    ck::gemm<V_, DW>(h, fn, CUBLAS_OP_N, CUBLAS_OP_T, H, V, n, X, hidden.stride(0), z.data(), V, dweight.data(),
                     dweight.stride(0), r0 == 0 ? 0.0 : 1.0);
  }
  r.loss = detail::sum_on_device(tag, fn, row_loss.data(), N);
  rlhf::detail::require_finite_result(r.loss, fn, "hidden", "the objective is not finite");
  return r;
}

/// The same with an explicit handle (kept for callers of 0.x): the handle
/// now travels in the tag, rlhf::cuda.with(blas.get()).
template <class T, class... A>
fused_linear_result fused_linear_objective(cuda_t tag, const cublas_handle& blas,
                                           tensor_view<T, 2, device_space> hidden, A&&... a) {
  return fused_linear_objective(tag.with(blas.get()), hidden, std::forward<A>(a)...);
}

}  // namespace rlhf::ops
