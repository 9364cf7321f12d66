// rlhf++ — importance-sampling corrections for the mismatch between the
// rollout engine's log-probs and the trainer's (OpenRLHF
// enable_vllm_is_correction; verl rollout_is_weights).
//
// With is = exp(old_logp - rollout_logp) per token and a threshold [lo, hi]:
//   tis           w = clamp(is, lo, hi)
//   icepop        w = is * 1[lo <= is <= hi]
//   seq_mask_tis  w = is * 1[lo <= exp(row masked_mean(old - rollout)) <= hi]
// The weights are detached; pass them as `weights` to the policy losses.
// vllm_kl = masked_mean(rollout_logp - old_logp) (exact division).
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include "../ops/masked.hpp"

namespace rlhf::ppo {

enum class is_correction { tis, icepop, seq_mask_tis };

inline is_correction parse_is_correction(std::string_view s) {
  if (s == "tis") return is_correction::tis;
  if (s == "icepop") return is_correction::icepop;
  if (s == "seq-mask-tis" || s == "seq_mask_tis") return is_correction::seq_mask_tis;
  rlhf::detail::fail(error_kind::param, "ppo::parse_is_correction", "vllm_is_correction_type",
                     "unknown correction '" + std::string(s) + "' (tis, icepop, seq-mask-tis)");
}

struct is_params {
  is_correction kind = is_correction::tis;
  double low = 0.5, high = 2.0;
};

/// The weight of one token from its ratio is = exp(old - rollout); `keep_row`
/// is seq-mask-tis's verdict on the whole sequence (every backend).
RLHF_HD inline double is_weight(const is_params& p, double is, bool keep_row) {
  switch (p.kind) {
    case is_correction::tis: return fmin(fmax(is, p.low), p.high);
    case is_correction::icepop: return (is >= p.low && is <= p.high) ? is : 0.0;
    case is_correction::seq_mask_tis: return keep_row ? is : 0.0;
  }
  return 0.0;
}

/// Writes the per-token weights; returns vllm_kl.
template <class T, class M>
double rollout_is_weights(cpu_t tag, tensor_view<T, 2> old_logp, in_view<T, 2> rollout_logp, tensor_view<M, 2> mask,
                          const is_params& p, out_view<T, 2> weights) {
  constexpr const char* fn = "ppo::rollout_is_weights";
  rlhf::detail::require_same_shape(fn, "rollout_log_probs", rollout_logp, "old_log_probs", old_logp);
  rlhf::detail::require_same_shape(fn, "action_mask", mask, "old_log_probs", old_logp);
  rlhf::detail::require_same_shape(fn, "weights", weights, "old_log_probs", old_logp);
  rlhf::detail::require_nonempty(fn, "old_log_probs", old_logp);
  rlhf::detail::require_finite(tag, fn, "old_log_probs", old_logp);
  rlhf::detail::require_finite(tag, fn, "rollout_log_probs", rollout_logp);
  rlhf::detail::require_mask(fn, "action_mask", mask);
  rlhf::detail::require_nonneg_param(p.low, fn, "low");
  rlhf::detail::require_finite_param(p.high, fn, "high");
  rlhf::detail::require_param(p.low <= p.high, fn, "high", "must be >= low");
  const index_t B = old_logp.extent(0), T_ = old_logp.extent(1);
  using V = value_t<T>;
  for (index_t b = 0; b < B; ++b) {
    bool keep_row = true;
    if (p.kind == is_correction::seq_mask_tis) {
      double s = 0, c = 0;
      for (index_t t = 0; t < T_; ++t) {
        const double m = static_cast<double>(mask(b, t));
        c += m;
        if (m != 0) s += m * (static_cast<double>(old_logp(b, t)) - static_cast<double>(rollout_logp(b, t)));
      }
      const double r = c > 0 ? std::exp(s / c) : NAN;
      keep_row = r >= p.low && r <= p.high;
    }
    for (index_t t = 0; t < T_; ++t) {
      const double is = std::exp(static_cast<double>(old_logp(b, t)) - static_cast<double>(rollout_logp(b, t)));
      weights(b, t) = static_cast<V>(is_weight(p, is, keep_row));
    }
  }
  const double n = ops::mask_count(tag, mask);
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "action_mask", "has no valid token");
  double s = 0;
  cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
    const double m = static_cast<double>(mask(b, t));
    if (m != 0) s += m * (static_cast<double>(rollout_logp(b, t)) - static_cast<double>(old_logp(b, t)));
  });
  return s / n;
}

}  // namespace rlhf::ppo
