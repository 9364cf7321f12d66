// rlhf++ — the parameters of the fused linear path (CPU: ops/fused_linear.hpp
// with Eigen; CUDA: backend/cuda/fused_linear.cuh with cuBLAS). No Eigen here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>

#include "logits.hpp"

namespace rlhf::ops {

struct fused_linear_params {
  logits_params logits{};
  std::size_t workspace_bytes = std::size_t{64} << 20;  ///< bytes for one chunk of logits
  index_t chunk_rows = 0;                               ///< 0 = chosen from the workspace
};

struct fused_linear_result {
  double loss = 0;
  index_t chunk_rows = 0;  ///< rows per chunk that were used
};

inline index_t fused_linear_chunk(index_t N, index_t V, std::size_t elem, const fused_linear_params& p) {
  if (p.chunk_rows > 0) return std::min(p.chunk_rows, N);
  index_t c = static_cast<index_t>(p.workspace_bytes / (static_cast<std::size_t>(V) * elem));
  c = std::max<index_t>(c - c % 16, 64);
  return std::min(c, N);
}

/// The fused linear path of a backend, for generic callers (the trainers):
/// defined for rlhf::cpu_t by ops/fused_linear.hpp (Eigen) and for the CUDA
/// tag by backend/cuda/fused_linear.cuh, each with
///   static constexpr bool available = true;
///   logprobs(tag, hidden, weight, labels, logp, entropy, params)
///   objective(tag, hidden, weight, labels, objective, dhidden, dweight, logp, entropy, params)
template <class Tag>
struct fused_linear_impl;

namespace detail {
/// The per-row outputs of the fused linear path are written chunk by chunk
/// while the inputs are still read: none may share memory with them.
template <class H, class W, class O>
void check_fused_outputs(const char* fn, const H& hidden, const W& weight, const O& logp, const O& entropy) {
  for (const auto& [name, o] : {std::pair<const char*, const O*>{"logp", &logp}, {"entropy", &entropy}}) {
    rlhf::detail::require_disjoint(fn, name, *o, "hidden", hidden);
    rlhf::detail::require_disjoint(fn, name, *o, "weight", weight);
  }
  rlhf::detail::require_disjoint(fn, "entropy", entropy, "logp", logp);
}

/// The shape checks of the fused linear path (both backends).
template <class H, class W, class L, class DH, class DW>
void check_fused_linear(const char* fn, const H& hidden, const W& weight, const L& labels, const DH& dhidden,
                        const DW& dweight) {
  rlhf::detail::require_nonempty(fn, "hidden", hidden);
  rlhf::detail::require_nonempty(fn, "weight", weight);
  rlhf::detail::require_extent(fn, "weight", weight, 1, hidden.extent(1), "the hidden size H");
  rlhf::detail::require_extent(fn, "labels", labels, 0, hidden.extent(0), "one label per hidden row");
  rlhf::detail::require_same_shape(fn, "dhidden", dhidden, "hidden", hidden);
  rlhf::detail::require_same_shape(fn, "dweight", dweight, "weight", weight);
  // the gradients are written block by block while hidden and weight are still read
  rlhf::detail::require_disjoint(fn, "dhidden", dhidden, "hidden", hidden);
  rlhf::detail::require_disjoint(fn, "dhidden", dhidden, "weight", weight);
  rlhf::detail::require_disjoint(fn, "dweight", dweight, "hidden", hidden);
  rlhf::detail::require_disjoint(fn, "dweight", dweight, "weight", weight);
  rlhf::detail::require_disjoint(fn, "dweight", dweight, "dhidden", dhidden);
  if (hidden.stride(1) != 1 || weight.stride(1) != 1 || dhidden.stride(1) != 1 || dweight.stride(1) != 1)
    rlhf::detail::fail(error_kind::shape, fn, "hidden", "and weight (and their gradients) need contiguous rows");
}
}  // namespace detail

}  // namespace rlhf::ops
