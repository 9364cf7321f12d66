// rlhf++ — the parameters of the fused linear path (CPU: ops/fused_linear.hpp
// with Eigen; CUDA: backend/cuda/fused_linear.cuh with cuBLAS). No Eigen here.
#pragma once

#include <algorithm>
#include <cstddef>

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

}  // namespace rlhf::ops
