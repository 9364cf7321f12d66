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

#include <vector>

#include "../backend/cpu/objective.hpp"
#include "../math/tokens.hpp"
#include "../ops/masked.hpp"

namespace rlhf::ppo {

RLHF_BACKEND_FIRST(rollout_is_weights)

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
/// is seq-mask-tis's verdict on the whole sequence (every backend; over a
/// real type, math/real.hpp).
template <class R, class C>
RLHF_HD_INLINE R is_weight(const is_params& p, const R& is, const C& keep_row) {
  using S = math::scalar_of<R>;
  const S lo = static_cast<S>(p.low), hi = static_cast<S>(p.high);
  switch (p.kind) {
    case is_correction::tis: {
      const R x = math::sel(is > lo, is, lo - R{});  // fmax(is, lo), fmin(., hi)
      return math::sel(x < hi, x, hi - R{});
    }
    case is_correction::icepop:
      return math::sel((is >= lo) & (is <= hi), is, R{});
    case is_correction::seq_mask_tis:
      return keep_row ? is : R{};
  }
  return R{};
}

namespace rules {
/// One token's IS weight (an elementwise map of the engine) and the
/// statistic rollout - old (its masked mean is vllm_kl). `keep` (nullable):
/// seq-mask-tis's per-row verdicts, 1 or 0.
template <class A>
struct is_token {
  A old, rollout;
  is_params p;
  const double* keep;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 1, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    const R o = old.template get<L>(b, t), ro = rollout.template get<L>(b, t);
    token_out<1, 1, R> r;
    r.grad[0] = is_weight(p, math::rexp(o - ro), keep == nullptr || keep[b] != 0);
    r.stat[0] = ro - o;
    return r;
  }
};
}  // namespace rules

/// Writes the per-token weights (every position, masked or not); returns
/// vllm_kl. One pass of the CPU objective engine (seq-mask-tis first sums
/// each row).
template <class T, class M>
double rollout_is_weights(cpu_t tag, tensor_view<T, 2> old_logp, in_view<T, 2> rollout_logp, tensor_view<M, 2> mask,
                          const is_params& p, out_view<T, 2> weights) {
  constexpr const char* fn = "ppo::rollout_is_weights";
  rlhf::detail::require_same_shape(fn, "rollout_log_probs", rollout_logp, "old_log_probs", old_logp);
  rlhf::detail::require_same_shape(fn, "action_mask", mask, "old_log_probs", old_logp);
  rlhf::detail::require_same_shape(fn, "weights", weights, "old_log_probs", old_logp);
  rlhf::detail::require_nonempty(fn, "old_log_probs", old_logp);
  rlhf::detail::require_nonneg_param(p.low, fn, "low");
  rlhf::detail::require_finite_param(p.high, fn, "high");
  rlhf::detail::require_param(p.low <= p.high, fn, "high", "must be >= low");
  const index_t B = old_logp.extent(0), T_ = old_logp.extent(1);
  using V = value_t<T>;
  cpu_engine::inputs<V, 2> in{tag.check_finite, {"old_log_probs", "rollout_log_probs"}, {old_logp, rollout_logp}};
  std::vector<double> keep;
  if (p.kind == is_correction::seq_mask_tis) {
    cpu_engine::check_ahead(fn, mask, in, "action_mask");
    keep.assign(static_cast<std::size_t>(B), 0.0);
    for (index_t b = 0; b < B; ++b) {
      double s = 0, c = 0;
      for (index_t t = 0; t < T_; ++t) {
        const double m = static_cast<double>(mask(b, t));
        c += m;
        if (m != 0) s += m * (static_cast<double>(old_logp(b, t)) - static_cast<double>(rollout_logp(b, t)));
      }
      const double r = c > 0 ? std::exp(s / c) : NAN;
      keep[static_cast<std::size_t>(b)] = r >= p.low && r <= p.high ? 1.0 : 0.0;
    }
  }
  const rules::is_token<strided2<V>> f{strided(old_logp), strided(rollout_logp), p,
                                       keep.empty() ? nullptr : keep.data()};
  cpu_engine::run_options o{};
  o.mask_name = "action_mask";
  o.raw = true;
  const agg_params sum = agg_params::token_sum();
  const auto s = cpu_engine::run<1, 1>(fn, f, mask, sum, std::array<tensor_view<V, 2>, 1>{weights}, in, o);
  return s.stat[0] / s.n;
}

}  // namespace rlhf::ppo
