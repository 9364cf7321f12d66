// rlhf++ — the fused forward+backward entry point for token-separable
// objectives ("gradient in forward", made generic and exact).
//
// For a per-token objective l_i(logp_i, H_i) — a PPO/GRPO token loss, a KL
// term, an entropy bonus — the kernel computes log p(label) and the entropy
// of row i, asks the objective functor for
//     token_terms{loss, dl/dlogp, dl/dH}
// and writes dlogits for the row while it is still in cache: one read of the
// logits from memory and one write of dlogits, about one exp per element.
//   L = sum_i l_i,   dL/dz = the chain rule through logp_i and H_i
// The functor is called once per row, possibly from several threads at once
// (OpenMP): it must only read shared state. Row losses are summed in row
// order, so the result does not depend on the thread count. The policy
// objectives that plug into it are in objectives/fused.hpp.
#pragma once

#include <vector>

#include "logits.hpp"

namespace rlhf::ops {

struct token_terms {
  double loss = 0;      ///< l_i
  double dlogp = 0;     ///< dl_i / dlogp_i
  double dentropy = 0;  ///< dl_i / dH_i
};

/// Sum of the objective over rows; dlogits (may alias logits: in place) and
/// the per-row logp / entropy outputs are optional.
template <class T, class L, class Objective>
double fused_token_objective(cpu_t tag, tensor_view<T, 2> logits, tensor_view<L, 1> labels, Objective&& objective,
                             out_view<T, 2> dlogits, out_view<T, 1> logp = {}, out_view<T, 1> entropy = {},
                             const logits_params& p = {}) {
  constexpr const char* fn = "ops::fused_token_objective";
  detail::check_logits(tag, fn, logits, labels, true);
  rlhf::detail::require_output(fn, "dlogits", dlogits, "logits", logits);
  rlhf::detail::require_positive_param(p.temperature, fn, "temperature");
  const index_t N = logits.extent(0);
  if (!logp.null()) rlhf::detail::require_out_extent(fn, "logp", logp, 0, N, "one value per logits row");
  if (!entropy.null()) rlhf::detail::require_out_extent(fn, "entropy", entropy, 0, N, "one value per logits row");
  std::vector<double> row_loss(static_cast<std::size_t>(N), 0.0);
  cpu_kernels::logits_args<value_t<T>> a;
  std::vector<long long> lc;
  const bool aliased =
      !dlogits.null() && static_cast<const void*>(dlogits.data()) == static_cast<const void*>(logits.data());
  const bool fast = detail::kernel_args(logits, labels, true, a, lc) && (dlogits.null() || dlogits.stride(1) == 1) &&
                    !(aliased && dlogits.stride(0) != logits.stride(0)) && detail::same_stride(logp, entropy);
  if (!fast) {
    // plain path: forward, objective, backward
    std::vector<value_t<T>> lp(static_cast<std::size_t>(N)), h(static_cast<std::size_t>(N)),
        g(static_cast<std::size_t>(N)), gh(static_cast<std::size_t>(N));
    tensor_view<value_t<T>, 1> lpv(lp.data(), {N}), hv(h.data(), {N});
    plain_logprobs_entropy(tag.unchecked(), logits, labels, lpv, hv, {}, p);
    for (index_t i = 0; i < N; ++i) {
      const token_terms t = objective(i, static_cast<double>(lp[static_cast<std::size_t>(i)]),
                                      static_cast<double>(h[static_cast<std::size_t>(i)]));
      row_loss[static_cast<std::size_t>(i)] = t.loss;
      g[static_cast<std::size_t>(i)] = static_cast<value_t<T>>(t.dlogp);
      gh[static_cast<std::size_t>(i)] = static_cast<value_t<T>>(t.dentropy);
      if (!logp.null()) logp(i) = lp[static_cast<std::size_t>(i)];
      if (!entropy.null()) entropy(i) = h[static_cast<std::size_t>(i)];
    }
    if (!dlogits.null())
      plain_logprobs_entropy_backward(tag.unchecked(), logits, labels, tensor_view<const value_t<T>, 1>(g.data(), {N}),
                                      tensor_view<const value_t<T>, 1>(gh.data(), {N}), dlogits, p);
  } else {
    a.dlogits = dlogits.data();
    a.drow_stride = dlogits.null() ? 0 : dlogits.stride(0);
    a.logp = logp.data();
    a.entropy = entropy.data();
    a.out_stride = !logp.null() ? logp.stride(0) : !entropy.null() ? entropy.stride(0) : 1;
    a.inv_tau = 1.0 / p.temperature;
    if (dlogits.null()) {
      // forward only: evaluate the objective on the outputs
      std::vector<value_t<T>> lp(static_cast<std::size_t>(N)), h(static_cast<std::size_t>(N));
      a.logp = lp.data();
      a.entropy = h.data();
      a.out_stride = 1;
      detail::require_rows_finite(
          fn, cpu_kernels::run_logits(a, [](index_t, double, double) { return cpu_kernels::row_grad{}; }));
      for (index_t i = 0; i < N; ++i) {
        row_loss[static_cast<std::size_t>(i)] = objective(i, static_cast<double>(lp[static_cast<std::size_t>(i)]),
                                                          static_cast<double>(h[static_cast<std::size_t>(i)]))
                                                    .loss;
        if (!logp.null()) logp(i) = lp[static_cast<std::size_t>(i)];
        if (!entropy.null()) entropy(i) = h[static_cast<std::size_t>(i)];
      }
    } else {
      detail::require_rows_finite(fn, cpu_kernels::run_logits(a, [&](index_t i, double lp, double h) {
                                    const token_terms t = objective(i, lp, h);
                                    row_loss[static_cast<std::size_t>(i)] = t.loss;
                                    return cpu_kernels::row_grad{t.dlogp, t.dentropy};
                                  }));
    }
  }
  double total = 0;
  for (double l : row_loss) total += l;
  rlhf::detail::require_finite_result(total, fn, "logits", "the objective is not finite");
  return total;
}

}  // namespace rlhf::ops
