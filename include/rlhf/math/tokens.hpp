// rlhf++ — what the [B, T] objective engines of both backends run: a
// per-token rule (a functor f(b, t) -> token_out) over strided accessors.
// The CPU engine (backend/cpu/objective.hpp) and the CUDA engine
// (backend/cuda/objectives.cuh) take the same functors, so each rule is
// written once.
#pragma once

#include <type_traits>

#include "../core/config.hpp"
#include "../core/tensor_view.hpp"

namespace rlhf {

/// One token's contribution: its loss, G gradients (d loss / d input_g,
/// before the aggregation weight) and K statistics (masked sums).
template <int G, int K>
struct token_out {
  double loss = 0;
  double grad[G > 0 ? G : 1] = {};
  double stat[K > 0 ? K : 1] = {};
};

/// A read-only strided 2-D accessor over host or device memory, read as
/// double; a null pointer is a null accessor (the rule decides what it means).
template <class T>
struct strided2 {
  const T* p = nullptr;
  index_t s0 = 0, s1 = 0;
  RLHF_HD double operator()(index_t b, index_t t) const { return static_cast<double>(p[b * s0 + t * s1]); }
  [[nodiscard]] RLHF_HD bool null() const { return p == nullptr; }
};

template <class T, class S>
strided2<std::remove_const_t<T>> strided(const tensor_view<T, 2, S>& v) {
  return {v.data(), v.null() ? 0 : v.stride(0), v.null() ? 0 : v.stride(1)};
}

}  // namespace rlhf
