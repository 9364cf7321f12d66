// rlhf++ — compile-time configuration shared by every layer.
#pragma once

#define RLHF_VERSION_MAJOR 0
#define RLHF_VERSION_MINOR 1
#define RLHF_VERSION_PATCH 0

// RLHF_HD marks per-element formulas (math/) that the CPU loops and the CUDA
// kernels both call. It is empty for host compilers.
#if defined(__CUDACC__)
#  define RLHF_HD __host__ __device__
#else
#  define RLHF_HD
#endif

#include <cstddef>

namespace rlhf {
/// Signed index type of every extent and stride.
using index_t = std::ptrdiff_t;
}  // namespace rlhf
