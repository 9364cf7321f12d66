// rlhf++ — what the [B, T] objective engines of both backends run: a
// per-token rule (a functor f(b, t) -> token_out) over strided accessors.
// The CPU engine (backend/cpu/objective.hpp) and the CUDA engine
// (backend/cuda/objectives.cuh) take the same functors, so each rule is
// written once: a rule's `template <class L = double> operator()(b, t)` reads
// its inputs with get<L>(b, t) and computes over R = math::real_t<L>
// (math/real.hpp), so the CUDA engine runs it per token in double and the
// CPU engine W tokens of a row at a time.
#pragma once

#include <type_traits>

#include "../core/config.hpp"
#include "../core/tensor_view.hpp"
#include "real.hpp"

namespace rlhf {

/// One token's contribution (or W tokens', one per lane of R): its loss,
/// G gradients (d loss / d input_g, before the aggregation weight) and K
/// statistics (masked sums).
template <int G, int K, class R = double>
struct token_out {
  R loss{};
  R grad[G > 0 ? G : 1] = {};
  R stat[K > 0 ? K : 1] = {};
};

/// A read-only strided 2-D accessor over host or device memory, read as
/// double; a null pointer is a null accessor (the rule decides what it means).
template <class T>
struct strided2 {
  const T* p = nullptr;
  index_t s0 = 0, s1 = 0;
  RLHF_HD double operator()(index_t b, index_t t) const { return static_cast<double>(p[b * s0 + t * s1]); }
  /// The element (b, t) read as lane type L (math/real.hpp): one double, or
  /// the W elements (b, t), (b, t + 1), ... of a row whose stride(1) is 1.
  template <class L>
  RLHF_HD_INLINE math::real_t<L> get(index_t b, index_t t) const {
    using R = math::real_t<L>;
    // several lanes are read only from rows with stride(1) == 1: t alone
    // (one index for every input, fewer registers in the engine's loop)
    if constexpr (sizeof(R) > sizeof(math::scalar_of<R>))
      return math::lane_traits<L>::load(p + b * s0 + t);
    else
      return math::lane_traits<L>::load(p + b * s0 + t * s1);
  }
  [[nodiscard]] RLHF_HD bool null() const { return p == nullptr; }
};

template <class T, class S>
strided2<std::remove_const_t<T>> strided(const tensor_view<T, 2, S>& v) {
  return {v.data(), v.null() ? 0 : v.stride(0), v.null() ? 0 : v.stride(1)};
}

}  // namespace rlhf
