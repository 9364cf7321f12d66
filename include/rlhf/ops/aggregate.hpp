// rlhf++ — loss aggregation modes (verl core_algos.agg_loss).
//
// With L the [B, T] per-token loss, m the mask, n_b = sum_t m_bt, R the rows
// with n_b > 0, dp the data-parallel size:
//   token-mean               sum m L / (batch_num_tokens or sum m) * dp
//   token-sum                sum m L * dp
//   seq-mean-token-sum       sum_{b in R} (sum_t m L) / (global_batch_size or |R|) * dp
//   seq-mean-token-mean      sum_{b in R} (sum_t m L)/(n_b + row_eps) / (global_batch_size or |R|) * dp
//   seq-mean-token-sum-norm  seq-mean-token-sum / (loss_scale_factor or T)
// Every mode is linear in L, so the gradient is a weight per token.
// OpenRLHF's token_level_loss=True is token-mean; False is seq-mean-token-mean.
#pragma once

#include "agg_rule.hpp"
#include "masked.hpp"

namespace rlhf {
namespace ops {

/// Aggregates a [B, T] loss matrix to a scalar; writes d loss / d loss_mat into
/// `dloss_mat` when given (masked entries get 0).
template <class T, class M>
double aggregate(cpu_t tag, tensor_view<T, 2> loss_mat, tensor_view<M, 2> mask, const agg_params& p,
                 out_view<T, 2> dloss_mat = {}) {
  constexpr const char* fn = "ops::aggregate";
  detail::check_values_mask(tag, fn, loss_mat, mask, "loss_mat", "loss_mask");
  rlhf::detail::require_output(fn, "dloss_mat", dloss_mat, "loss_mat", loss_mat);
  const index_t B = loss_mat.extent(0), T_ = loss_mat.extent(1);
  std::vector<double> sum(static_cast<std::size_t>(B), 0.0), count(static_cast<std::size_t>(B), 0.0), weight;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) {
      const double m = static_cast<double>(mask(b, t));
      count[static_cast<std::size_t>(b)] += m;
      if (detail::on(mask(b, t))) sum[static_cast<std::size_t>(b)] += m * static_cast<double>(loss_mat(b, t));
    }
  const double value = detail::agg_finish(sum, count, T_, p, weight, fn);
  if (!dloss_mat.null())
    cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
      dloss_mat(b, t) = static_cast<value_t<T>>(static_cast<double>(mask(b, t)) * weight[static_cast<std::size_t>(b)]);
    });
  return value;
}

}  // namespace ops
}  // namespace rlhf
