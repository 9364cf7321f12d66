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

#include <optional>
#include <string>
#include <string_view>

#include "masked.hpp"

namespace rlhf {

enum class agg_mode { token_mean, token_sum, seq_mean_token_sum, seq_mean_token_mean, seq_mean_token_sum_norm };

inline const char* to_string(agg_mode m) noexcept {
  switch (m) {
    case agg_mode::token_mean: return "token-mean";
    case agg_mode::token_sum: return "token-sum";
    case agg_mode::seq_mean_token_sum: return "seq-mean-token-sum";
    case agg_mode::seq_mean_token_mean: return "seq-mean-token-mean";
    case agg_mode::seq_mean_token_sum_norm: return "seq-mean-token-sum-norm";
  }
  return "?";
}

/// Parses verl's names ("token-mean", ...); unknown names are rlhf::error(param).
inline agg_mode parse_agg_mode(std::string_view s) {
  for (auto m : {agg_mode::token_mean, agg_mode::token_sum, agg_mode::seq_mean_token_sum,
                 agg_mode::seq_mean_token_mean, agg_mode::seq_mean_token_sum_norm})
    if (s == to_string(m)) return m;
  detail::fail(error_kind::param, "parse_agg_mode", "loss_agg_mode",
               "unknown aggregation mode '" + std::string(s) +
                   "' (token-mean, token-sum, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm)");
}

struct agg_params {
  agg_mode mode = agg_mode::token_mean;
  double dp_size = 1;                           ///< data-parallel world size
  std::optional<double> batch_num_tokens;       ///< global valid-token count (token-mean, dp > 1)
  std::optional<double> global_batch_size;      ///< global sequence count (seq modes, dp > 1)
  std::optional<double> loss_scale_factor;      ///< seq-mean-token-sum-norm divisor (default T)
  double row_eps = 1e-8;                        ///< seq-mean-token-mean per-row epsilon (verl, OpenRLHF)
};

namespace ops {

/// Aggregates a [B, T] loss matrix to a scalar; writes d loss / d loss_mat into
/// `dloss_mat` when given (masked entries get 0).
template <class T, class M>
double aggregate(cpu_t tag, tensor_view<T, 2> loss_mat, tensor_view<M, 2> mask, const agg_params& p,
                 out_view<T, 2> dloss_mat = {}) {
  constexpr const char* fn = "ops::aggregate";
  detail::check_values_mask(tag, fn, loss_mat, mask, "loss_mat", "loss_mask");
  rlhf::detail::require_output(fn, "dloss_mat", dloss_mat, "loss_mat", loss_mat);
  rlhf::detail::require_positive_param(p.dp_size, fn, "dp_size");
  rlhf::detail::require_nonneg_param(p.row_eps, fn, "row_eps");
  const bool seq = p.mode != agg_mode::token_mean && p.mode != agg_mode::token_sum;
  if (p.batch_num_tokens) rlhf::detail::require_positive_param(*p.batch_num_tokens, fn, "batch_num_tokens");
  if (p.global_batch_size) rlhf::detail::require_positive_param(*p.global_batch_size, fn, "global_batch_size");
  if (p.loss_scale_factor) rlhf::detail::require_positive_param(*p.loss_scale_factor, fn, "loss_scale_factor");
  if (p.dp_size != 1) {
    if (p.mode == agg_mode::token_mean && !p.batch_num_tokens)
      rlhf::detail::fail(error_kind::param, fn, "batch_num_tokens",
                         "is required with dp_size > 1 under token-mean (the global token count)");
    if (seq && !p.global_batch_size)
      rlhf::detail::fail(error_kind::param, fn, "global_batch_size",
                         "is required with dp_size > 1 under the seq-mean modes (the global sequence count)");
  }
  const index_t B = loss_mat.extent(0), T_ = loss_mat.extent(1);
  auto L = [&](index_t b, index_t t) {
    return detail::on(mask(b, t)) ? static_cast<double>(mask(b, t)) * static_cast<double>(loss_mat(b, t)) : 0.0;
  };
  auto set_grad = [&](auto weight) {
    if (!dloss_mat.null())
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        dloss_mat(b, t) = static_cast<value_t<T>>(static_cast<double>(mask(b, t)) * weight(b));
      });
  };
  if (p.mode == agg_mode::token_sum) {
    set_grad([&](index_t) { return p.dp_size; });
    return masked_sum(tag, loss_mat, mask) * p.dp_size;
  }
  if (p.mode == agg_mode::token_mean) {
    const double n = p.batch_num_tokens ? *p.batch_num_tokens : mask_count(tag, mask);
    if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "loss_mask", "has no valid token (token-mean)");
    set_grad([&](index_t) { return p.dp_size / n; });
    return masked_sum(tag, loss_mat, mask) / n * p.dp_size;
  }
  // Sequence modes.
  double total = 0, rows = 0;
  for (index_t b = 0; b < B; ++b) {
    double s = 0, c = 0;
    for (index_t t = 0; t < T_; ++t) {
      s += L(b, t);
      c += static_cast<double>(mask(b, t));
    }
    if (!(c > 0)) continue;
    rows += 1;
    total += p.mode == agg_mode::seq_mean_token_mean ? s / (c + p.row_eps) : s;
  }
  const double denom = p.global_batch_size ? *p.global_batch_size : rows;
  if (!(denom > 0)) rlhf::detail::fail(error_kind::empty, fn, "loss_mask", "has no row with a valid token");
  const double norm = p.mode == agg_mode::seq_mean_token_sum_norm
                          ? (p.loss_scale_factor ? *p.loss_scale_factor : static_cast<double>(T_))
                          : 1.0;
  set_grad([&](index_t b) {
    if (p.mode != agg_mode::seq_mean_token_mean) return p.dp_size / denom / norm;
    double c = 0;
    for (index_t t = 0; t < T_; ++t) c += static_cast<double>(mask(b, t));
    return c > 0 ? p.dp_size / denom / (c + p.row_eps) : 0.0;
  });
  return total / denom * p.dp_size / norm;
}

}  // namespace ops
}  // namespace rlhf
