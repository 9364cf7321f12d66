// rlhf++ — the CPU backend's loops.
//
// Algorithms describe per-row or per-element work as callables; these
// functions own the iteration. Reductions over [B, T] run sequentially in
// double so results are deterministic (bit-identical resume) and exact to
// ~1 ulp of the Python references. Row-parallel loops over large rows (the
// logits ops) use OpenMP when the consumer compiles with it.
#pragma once

#include "../../core/config.hpp"

namespace rlhf::cpu_loops {

/// f(b, t) for every element of a [B, T] grid, row-major order.
template <class F>
inline void for_each_2d(index_t B, index_t T, F&& f) {
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) f(b, t);
}

/// Sum over a [B, T] grid of f(b, t), in double, row-major order.
template <class F>
inline double sum_2d(index_t B, index_t T, F&& f) {
  double s = 0.0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) s += static_cast<double>(f(b, t));
  return s;
}

/// f(r) for each of n independent rows; parallel when OpenMP is on and the
/// caller says the rows are heavy enough.
template <class F>
inline void for_each_row(index_t n, bool heavy, F&& f) {
#if defined(_OPENMP)
#  pragma omp parallel for schedule(static) if (heavy && n > 1)
  for (index_t r = 0; r < n; ++r) f(r);
#else
  (void)heavy;
  for (index_t r = 0; r < n; ++r) f(r);
#endif
}

}  // namespace rlhf::cpu_loops
