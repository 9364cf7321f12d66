// rlhf++ — the fused linear path: from final hidden states and the LM-head
// weight to log-probs, entropy and gradients, without ever holding the
// [N, V] logits.
//
//   for each chunk of rows c:   Z_c  = X_c W^T                  (GEMM, [n_c, V])
//                               dZ_c = fused token objective    (in place, ops/fused_logits.hpp)
//                               dX_c = dZ_c W                   (GEMM)
//                               dW  += dZ_c^T X_c               (GEMM)
// Extra memory: one chunk of logits (the workspace) — dW and dX are the
// outputs. The chunk has as many rows as fit the workspace (default 64 MiB,
// two last-level caches' worth), and at least 64 so the dW update (a rank-n_c
// GEMM over all of W) stays compute-bound (>= 16 flop per byte of dW). Not
// Liger's formula, which sizes chunks like the hidden states and gives tiny
// GEMMs at small H. GEMMs are Eigen's (multi-threaded when the consumer
// enables OpenMP). Include this header only where Eigen is available.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <utility>
#include <vector>

#include "fused_linear_params.hpp"
#include "fused_logits.hpp"

namespace rlhf::ops {

/// Loss of a token objective on logits = hidden weight^T; writes dhidden
/// [N, H] and dweight [V, H] (overwritten), and optionally logp / entropy [N].
template <class T, class L, class Objective>
fused_linear_result fused_linear_objective(cpu_t tag, tensor_view<T, 2> hidden, in_view<T, 2> weight,
                                           tensor_view<L, 1> labels, Objective&& objective, out_view<T, 2> dhidden,
                                           out_view<T, 2> dweight, out_view<T, 1> logp = {},
                                           out_view<T, 1> entropy = {}, const fused_linear_params& p = {}) {
  constexpr const char* fn = "ops::fused_linear_objective";
  using V_ = value_t<T>;
  using Mat = Eigen::Matrix<V_, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using MMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  detail::check_fused_linear(fn, hidden, weight, labels, dhidden, dweight);
  detail::check_fused_outputs(fn, hidden, weight, logp, entropy);
  for (const auto& [name, o] : {std::pair<const char*, const out_view<T, 1>*>{"logp", &logp}, {"entropy", &entropy}}) {
    rlhf::detail::require_disjoint(fn, name, *o, "dhidden", dhidden);
    rlhf::detail::require_disjoint(fn, name, *o, "dweight", dweight);
  }
  rlhf::detail::require_finite(tag, fn, "hidden", hidden);
  rlhf::detail::require_finite(tag, fn, "weight", weight);
  const index_t N = hidden.extent(0), H = hidden.extent(1), V = weight.extent(0);
  const CMap X(hidden.data(), N, H, Eigen::OuterStride<>(hidden.stride(0)));
  const CMap W(weight.data(), V, H, Eigen::OuterStride<>(weight.stride(0)));
  MMap dX(dhidden.data(), N, H, Eigen::OuterStride<>(dhidden.stride(0)));
  MMap dW(dweight.data(), V, H, Eigen::OuterStride<>(dweight.stride(0)));
  dW.setZero();
  const index_t chunk = fused_linear_chunk(N, V, sizeof(V_), p);
  Mat Z(chunk, V);  // the workspace: one chunk of logits, overwritten by its gradient
  fused_linear_result r{0.0, chunk};
  for (index_t r0 = 0; r0 < N; r0 += chunk) {
    const index_t n = std::min(chunk, N - r0);
    auto Zc = Z.topRows(n);
    Zc.noalias() = X.middleRows(r0, n) * W.transpose();
    tensor_view<V_, 2> zv(Z.data(), {n, V});
    r.loss += fused_token_objective(
        tag.unchecked(), tensor_view<const V_, 2>(zv),
        tensor_view<L, 1>(labels.data() + r0 * labels.stride(0), {n}, {labels.stride(0)}),
        [&](index_t i, double lp, double h) { return objective(i + r0, lp, h); }, zv,
        logp.null() ? tensor_view<V_, 1>{}
                    : tensor_view<V_, 1>(logp.data() + r0 * logp.stride(0), {n}, {logp.stride(0)}),
        entropy.null() ? tensor_view<V_, 1>{}
                       : tensor_view<V_, 1>(entropy.data() + r0 * entropy.stride(0), {n}, {entropy.stride(0)}),
        p.logits);
    dX.middleRows(r0, n).noalias() = Zc * W;
    dW.noalias() += Zc.transpose() * X.middleRows(r0, n);
  }
  return r;
}

/// Forward only (no gradient): logp and / or entropy [N] of logits =
/// hidden weight^T, chunk by chunk (one chunk of logits in memory).
template <class T, class L>
void fused_linear_logprobs(cpu_t tag, tensor_view<T, 2> hidden, in_view<T, 2> weight, tensor_view<L, 1> labels,
                           out_view<T, 1> logp, out_view<T, 1> entropy = {}, const fused_linear_params& p = {}) {
  constexpr const char* fn = "ops::fused_linear_logprobs";
  using V_ = value_t<T>;
  using Mat = Eigen::Matrix<V_, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  rlhf::detail::require_nonempty(fn, "hidden", hidden);
  rlhf::detail::require_nonempty(fn, "weight", weight);
  rlhf::detail::require_extent(fn, "weight", weight, 1, hidden.extent(1), "the hidden size H");
  if (!logp.null()) rlhf::detail::require_extent(fn, "labels", labels, 0, hidden.extent(0), "one label per hidden row");
  if (hidden.stride(1) != 1 || weight.stride(1) != 1)
    rlhf::detail::fail(error_kind::shape, fn, "hidden", "and weight need contiguous rows");
  for (const auto* o : {&logp, &entropy})
    if (!o->null()) rlhf::detail::require_out_extent(fn, "output", *o, 0, hidden.extent(0), "one value per hidden row");
  detail::check_fused_outputs(fn, hidden, weight, logp, entropy);
  rlhf::detail::require_finite(tag, fn, "hidden", hidden);
  rlhf::detail::require_finite(tag, fn, "weight", weight);
  const index_t N = hidden.extent(0), H = hidden.extent(1), V = weight.extent(0);
  const CMap X(hidden.data(), N, H, Eigen::OuterStride<>(hidden.stride(0)));
  const CMap W(weight.data(), V, H, Eigen::OuterStride<>(weight.stride(0)));
  const index_t chunk = fused_linear_chunk(N, V, sizeof(V_), p);
  Mat Z(chunk, V);
  auto rows = [](auto v, index_t r0, index_t n) {
    using E = typename decltype(v)::element_type;
    return v.null() ? tensor_view<E, 1>{} : tensor_view<E, 1>(v.data() + r0 * v.stride(0), {n}, {v.stride(0)});
  };
  for (index_t r0 = 0; r0 < N; r0 += chunk) {
    const index_t n = std::min(chunk, N - r0);
    Z.topRows(n).noalias() = X.middleRows(r0, n) * W.transpose();
    logprobs_entropy(tag.unchecked(), tensor_view<const V_, 2>(Z.data(), {n, V}), rows(labels, r0, n),
                     rows(logp, r0, n), rows(entropy, r0, n), {}, p.logits);
  }
}

template <>
struct fused_linear_impl<cpu_t> {
  static constexpr bool available = true;
  template <class... A>
  static void logprobs(A&&... a) {
    fused_linear_logprobs(std::forward<A>(a)...);
  }
  template <class... A>
  static fused_linear_result objective(A&&... a) {
    return fused_linear_objective(std::forward<A>(a)...);
  }
};

}  // namespace rlhf::ops
