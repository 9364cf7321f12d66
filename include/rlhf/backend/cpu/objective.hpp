// rlhf++ — the CPU's [B, T] objective engine.
//
// A per-token rule (math/tokens.hpp: f(b, t) -> token_out<G, K>) over the
// inputs, an aggregation mode, and G gradient outputs:
//   1. the mask's per-row counts (one read of the mask);
//   2. one pass over the rows (in parallel with OpenMP): each token's loss,
//      gradients and statistics from the rule; each gradient written once,
//      already scaled by its row's aggregation weight (agg_row_weight, the
//      rule every backend uses); the row's loss and statistics summed in
//      double, in token order, into per-row partials;
//   3. the value from the per-row sums (ops::detail::agg_finish, the same
//      arithmetic as ops::aggregate) and the statistics summed over rows in
//      row order.
// No [B, T] temporary; the result is bitwise the same for any thread count,
// and a row's gradients depend only on the row and the batch's counts.
#pragma once

#include <array>
#include <vector>

#include "../../core/check.hpp"
#include "../../math/tokens.hpp"
#include "../../ops/aggregate.hpp"
#include "loops.hpp"

namespace rlhf::cpu_engine {

template <int K>
struct objective_sums {
  double value = 0;  ///< the aggregated loss
  double stat[K > 0 ? K : 1] = {};
  double n = 0;     ///< valid tokens (sum of the mask)
  double rows = 0;  ///< rows with a valid token
};

/// Runs rule `f` over a [B, T] batch. `outs` are the gradient outputs (null
/// ones are skipped), each overwritten (or added to, `accumulate`) with
/// grad_scale * mask * row weight * the rule's gradient; masked tokens get 0.
/// An empty mask is an `empty` error before anything is written: always
/// when the mode needs a denominator, and for `require_tokens` rules.
template <int G, int K, class F, class M, class O>
objective_sums<K> run(const char* fn, const F& f, tensor_view<M, 2> mask, const agg_params& p,
                      const std::array<tensor_view<O, 2>, G>& outs, double grad_scale = 1.0, bool accumulate = false,
                      const char* mask_name = "response_mask", bool require_tokens = true) {
  ops::detail::check_agg_params(p, fn);
  const index_t B = mask.extent(0), T = mask.extent(1);
  const bool heavy = B * T >= (index_t{1} << 15);
  std::vector<double> count(static_cast<std::size_t>(B), 0.0), sum(static_cast<std::size_t>(B), 0.0);
  std::vector<double> stat(static_cast<std::size_t>(B) * (K > 0 ? K : 1), 0.0);
  cpu_loops::for_each_row(B, heavy, [&](index_t b) {
    double c = 0;
    for (index_t t = 0; t < T; ++t) c += static_cast<double>(mask(b, t));
    count[static_cast<std::size_t>(b)] = c;
  });
  objective_sums<K> r;
  for (index_t b = 0; b < B; ++b) {
    r.n += count[static_cast<std::size_t>(b)];
    r.rows += count[static_cast<std::size_t>(b)] > 0 ? 1.0 : 0.0;
  }
  if (require_tokens && !(r.n > 0)) rlhf::detail::fail(error_kind::empty, fn, mask_name, "has no valid token");
  const agg_rule rule = make_agg_rule(p, T);
  if (!(agg_denominator(rule, r.n, r.rows) > 0))
    rlhf::detail::fail(error_kind::empty, fn, mask_name,
                       p.mode == agg_mode::token_mean ? "has no valid token (token-mean)" : "has no row with a valid token");
  cpu_loops::for_each_row(B, heavy, [&](index_t b) {
    const auto bi = static_cast<std::size_t>(b);
    const double w = agg_row_weight(rule, count[bi], r.n, r.rows);
    double s = 0;
    double st[K > 0 ? K : 1] = {};
    for (index_t t = 0; t < T; ++t) {
      const double m = static_cast<double>(mask(b, t));
      const token_out<G, K> o = f(b, t);
      for (int g = 0; g < G; ++g) {
        const auto& out = outs[static_cast<std::size_t>(g)];
        if (out.null()) continue;
        const double d = m != 0 ? grad_scale * (m * w) * o.grad[g] : 0.0;
        out(b, t) = static_cast<value_t<O>>(accumulate ? static_cast<double>(out(b, t)) + d : d);
      }
      if (m != 0) {
        s += m * o.loss;
        for (int k = 0; k < K; ++k) st[k] += m * o.stat[k];
      }
    }
    sum[bi] = s;
    for (int k = 0; k < K; ++k) stat[bi * K + static_cast<std::size_t>(k)] = st[k];
  });
  std::vector<double> weight;
  r.value = ops::detail::agg_finish(sum, count, T, p, weight, fn);
  for (index_t b = 0; b < B; ++b)
    for (int k = 0; k < K; ++k) r.stat[k] += stat[static_cast<std::size_t>(b) * K + static_cast<std::size_t>(k)];
  return r;
}

}  // namespace rlhf::cpu_engine
