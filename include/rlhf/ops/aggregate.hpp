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

RLHF_BACKEND_FIRST(aggregate)

/// Aggregates a [B, T] loss matrix to a scalar; writes d loss / d loss_mat into
/// `dloss_mat` when given (masked entries get 0). One pass of the CPU
/// engine (the objectives aggregate the same way without the matrix).
template <class T, class M>
double aggregate(cpu_t tag, tensor_view<T, 2> loss_mat, tensor_view<M, 2> mask, const agg_params& p,
                 out_view<T, 2> dloss_mat = {}) {
  constexpr const char* fn = "ops::aggregate";
  rlhf::detail::require_same_shape(fn, "loss_mask", mask, "loss_mat", loss_mat);
  rlhf::detail::require_nonempty(fn, "loss_mat", loss_mat);
  rlhf::detail::require_output(fn, "dloss_mat", dloss_mat, "loss_mat", loss_mat);
  using V = value_t<T>;
  cpu_engine::run_options o = detail::sum_options();
  o.mask_name = "loss_mask";
  return cpu_engine::run<1, 0>(fn, rules::value_token<strided2<V>>{strided(loss_mat)}, mask, p,
                               std::array<tensor_view<V, 2>, 1>{dloss_mat},
                               cpu_engine::inputs<V, 1>{tag.check_finite, {"loss_mat"}, {loss_mat}}, o)
      .value;
}

}  // namespace ops
}  // namespace rlhf
