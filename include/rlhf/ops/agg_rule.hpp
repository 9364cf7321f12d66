// rlhf++ — the aggregation modes' vocabulary and arithmetic (verl
// core_algos.agg_loss), below every op and engine that aggregates: the
// modes, their parameters, each row's weight and the final normaliser.
// ops/aggregate.hpp has the formulas and the `aggregate` op.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/check.hpp"
#include "../core/config.hpp"
#include "../core/vocabulary.hpp"

namespace rlhf {

/// Parses verl's names ("token-mean", ...); unknown names are rlhf::error(param).
inline agg_mode parse_agg_mode(std::string_view s) {
  for (auto m : {agg_mode::token_mean, agg_mode::token_sum, agg_mode::seq_mean_token_sum, agg_mode::seq_mean_token_mean,
                 agg_mode::seq_mean_token_sum_norm})
    if (s == to_string(m)) return m;
  detail::fail(error_kind::param, "parse_agg_mode", "loss_agg_mode",
               "unknown aggregation mode '" + std::string(s) +
                   "' (token-mean, token-sum, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm)");
}

struct agg_params {
  agg_mode mode = agg_mode::token_mean;
  double dp_size = 1;                       ///< data-parallel world size
  std::optional<double> batch_num_tokens;   ///< global valid-token count (token-mean, dp > 1)
  std::optional<double> global_batch_size;  ///< global sequence count (seq modes, dp > 1)
  std::optional<double> loss_scale_factor;  ///< seq-mean-token-sum-norm divisor (default T)
  double row_eps = 1e-8;                    ///< seq-mean-token-mean per-row epsilon (verl, OpenRLHF)

  /// A plain masked sum (weight 1 per valid token).
  static agg_params token_sum() {
    agg_params a{};
    a.mode = agg_mode::token_sum;
    return a;
  }
};

/// The weight rule of every mode without optionals, for every backend (the
/// device kernels evaluate agg_row_weight per row).
struct agg_rule {
  agg_mode mode = agg_mode::token_mean;
  double dp = 1;
  double tokens = 0;  ///< the global token count; <= 0: the batch's
  double rows = 0;    ///< the global sequence count; <= 0: the batch's rows with a valid token
  double norm = 1;    ///< seq-mean-token-sum-norm divisor (1 for the other modes)
  double row_eps = 1e-8;
};

inline agg_rule make_agg_rule(const agg_params& p, index_t T) {
  agg_rule r;
  r.mode = p.mode;
  r.dp = p.dp_size;
  r.tokens = p.batch_num_tokens ? *p.batch_num_tokens : 0.0;
  r.rows = p.global_batch_size ? *p.global_batch_size : 0.0;
  r.norm = p.mode == agg_mode::seq_mean_token_sum_norm
               ? (p.loss_scale_factor ? *p.loss_scale_factor : static_cast<double>(T))
               : 1.0;
  r.row_eps = p.row_eps;
  return r;
}

/// The mode's denominator from the batch's valid-token count n and valid rows.
RLHF_HD inline double agg_denominator(const agg_rule& r, double n, double rows) {
  if (r.mode == agg_mode::token_sum) return 1.0;
  if (r.mode == agg_mode::token_mean) return r.tokens > 0 ? r.tokens : n;
  return r.rows > 0 ? r.rows : rows;
}

/// d value / d loss_mat[b, t] = mask[b, t] * agg_row_weight(row b): every mode is linear.
RLHF_HD inline double agg_row_weight(const agg_rule& r, double count_b, double n, double rows) {
  const double d = agg_denominator(r, n, rows);
  if (r.mode == agg_mode::token_sum) return r.dp;
  if (!(d > 0)) return 0.0;
  if (r.mode == agg_mode::token_mean) return r.dp / d;
  if (r.mode == agg_mode::seq_mean_token_mean) return count_b > 0 ? r.dp / d / (count_b + r.row_eps) : 0.0;
  return r.dp / d / r.norm;
}

namespace ops {

namespace detail {
/// The rules of every mode, from each row's masked sum and valid count:
/// returns the aggregated value and writes each row's weight (d value /
/// d loss_mat[b, t] = mask[b, t] * weight[b]). Shared by every backend.
/// The parameter checks of every mode (before any work, on every backend).
inline void check_agg_params(const agg_params& p, const char* fn) {
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
}

/// A batch's (or a rank's) part of the aggregated value: the masked sum of
/// the loss (token modes) or the sum over rows with a valid token of each
/// row's sum (seq-mean-token-sum[-norm]) or mean (seq-mean-token-mean).
/// Additive over rows, so the ranks' parts add to the global one.
inline double agg_numerator(const std::vector<double>& sum, const std::vector<double>& count, const agg_rule& rule) {
  double total = 0;
  if (rule.mode == agg_mode::token_sum || rule.mode == agg_mode::token_mean) {
    for (double s : sum) total += s;
    return total;
  }
  for (std::size_t b = 0; b < sum.size(); ++b) {
    if (!(count[b] > 0)) continue;
    total += rule.mode == agg_mode::seq_mean_token_mean ? sum[b] / (count[b] + rule.row_eps) : sum[b];
  }
  return total;
}

/// The aggregated value from the numerator and the (global) counts; the
/// denominator must be > 0 (agg_denominator).
inline double agg_value(const agg_rule& rule, double numerator, double n, double rows) {
  if (rule.mode == agg_mode::token_sum) return numerator * rule.dp;
  const double d = agg_denominator(rule, n, rows);
  if (rule.mode == agg_mode::token_mean) return numerator / d * rule.dp;
  return numerator / d * rule.dp / rule.norm;
}

/// The error of a mode without a denominator (no valid token / row).
[[noreturn]] inline void fail_no_denominator(const agg_params& p, const char* fn, const char* mask_name) {
  rlhf::detail::fail(
      error_kind::empty, fn, mask_name,
      p.mode == agg_mode::token_mean ? "has no valid token (token-mean)" : "has no row with a valid token");
}

}  // namespace detail
}  // namespace ops
}  // namespace rlhf
