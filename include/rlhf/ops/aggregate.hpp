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
/// `dloss_mat` when given (masked entries get 0). One pass of the tag's
/// engine (the objectives aggregate the same way without the matrix); under
/// tag.with(comm) the value over every rank's rows (docs/distributed.md).
template <class Tag, class T, class M>
requires backend<Tag>
double aggregate(Tag tag, tensor_view<T, 2, typename Tag::space> loss_mat, tensor_view<M, 2, typename Tag::space> mask,
                 const agg_params& p, out_view_in<T, 2, typename Tag::space> dloss_mat = {}) {
  constexpr const char* fn = "ops::aggregate";
  using S = typename Tag::space;
  [[maybe_unused]] const engine::op_scope scope(tag);
  rlhf::detail::require_same_shape(fn, "loss_mask", mask, "loss_mat", loss_mat);
  rlhf::detail::require_nonempty(fn, "loss_mat", loss_mat);
  rlhf::detail::require_output(fn, "dloss_mat", dloss_mat, "loss_mat", loss_mat);
  using V = value_t<T>;
  engine::run_options o{};
  o.mask_name = "loss_mask";
  o.require_tokens = false;
  return engine::run<1, 0>(tag, fn, rules::value_token<strided2<V>>{strided(loss_mat)}, mask, p,
                           std::array<tensor_view<V, 2, S>, 1>{dloss_mat},
                           engine::inputs<V, 1, S>{tag.check_finite, {"loss_mat"}, {loss_mat}}, o)
      .value;
}

RLHF_BACKEND_FIRST(global_counts)

/// `p` with the counts its mode divides by filled in from `mask` over every
/// rank of the tag's communicator (one collective; a single process: the
/// batch's own): batch_num_tokens (token-mean), global_batch_size (the
/// seq-mean modes: rows with a valid token) and, for
/// seq-mean-token-sum-norm, loss_scale_factor (the longest T). Counts `p`
/// already gives are kept, and a count of 0 is left unset (the op then
/// raises its own error). An op given them makes one collective instead of
/// two: a trainer computes them once per minibatch, for every loss over
/// the same mask (docs/distributed.md).
template <class Tag, class M>
requires(backend<Tag>&& is_host_backend_v<Tag>) agg_params
    global_counts(Tag tag, tensor_view<M, 2> mask, agg_params p) {
  constexpr const char* fn = "ops::global_counts";
  [[maybe_unused]] const engine::op_scope scope(tag);
  rlhf::detail::require_nonempty(fn, "loss_mask", mask);
  const auto& comm = engine::comm_of(tag);
  dist::failure mine;
  double part[3] = {0, 0, static_cast<double>(mask.extent(1))};
  dist::local_phase(comm, mine, [&] {
    detail::check_agg_params(p, fn);
    std::vector<double> count;
    cpu_engine::mask_pass(fn, mask, cpu_engine::inputs<float, 0>{false, {}, {}}, "loss_mask", count);
    for (double c : count) {
      part[0] += c;
      part[1] += c > 0 ? 1.0 : 0.0;
    }
  });
  const dist::frames g = dist::exchange(comm, mine, part);
  const bool seq = p.mode != agg_mode::token_mean && p.mode != agg_mode::token_sum;
  if (p.mode == agg_mode::token_mean && !p.batch_num_tokens && g.sum(0) > 0) p.batch_num_tokens = g.sum(0);
  if (seq && !p.global_batch_size && g.sum(1) > 0) p.global_batch_size = g.sum(1);
  if (p.mode == agg_mode::seq_mean_token_sum_norm && !p.loss_scale_factor) p.loss_scale_factor = g.max(2);
  return p;
}

}  // namespace ops
}  // namespace rlhf
