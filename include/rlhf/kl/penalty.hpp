// rlhf++ — where the KL to the reference model goes.
//
// In the reward (InstructGPT; verl apply_kl_penalty, OpenRLHF compute_reward):
//   r_t = score_t - beta * m_t * KL_t(logp_old, ref_logp)
// and the controller is updated with the batch mean of per-sequence mean KL.
//
// In the loss (GRPO; verl use_kl_loss):
//   L_kl = kl_coef * agg(KL_t(logp, ref_logp)),  dL/dlogp = kl_coef * w_t * dKL_t/dlogp
// where agg is an aggregation mode (ops/aggregate.hpp) and w_t its weight.
#pragma once

#include <sstream>

#include "../backend/cpu/objective.hpp"
#include "../math/tokens.hpp"
#include "../ops/aggregate.hpp"
#include "estimators.hpp"

namespace rlhf::kl {

struct in_reward_stats {
  double mean_seq_kl;  ///< mean over rows of the masked per-row mean KL (verl's current_kl)
  double beta;         ///< the coefficient that was applied
};

/// The argument checks of apply_in_reward on every backend (the scans of
/// the values only where they are on the host).
template <class Tag, class S, class V, class M, class O>
void check_in_reward(Tag tag, const char* fn, const S& scores, const V& logp, const V& ref_logp, const M& mask,
                     double beta, const O& rewards) {
  detail::require_same_shape(fn, "logp", logp, "token_level_scores", scores);
  detail::require_same_shape(fn, "ref_logp", ref_logp, "token_level_scores", scores);
  detail::require_same_shape(fn, "response_mask", mask, "token_level_scores", scores);
  detail::require_same_shape(fn, "rewards", rewards, "token_level_scores", scores);
  detail::require_nonempty(fn, "token_level_scores", scores);
  if constexpr (is_host_backend_v<Tag>) {
    detail::require_finite(tag, fn, "token_level_scores", scores);
    detail::require_mask(fn, "response_mask", mask);
  }
  detail::require_nonneg_param(beta, fn, "beta");
}

/// token_level_rewards = token_level_scores - beta * mask * KL(logp, ref_logp).
/// `rewards` may alias `scores`.
template <class T, class M>
in_reward_stats apply_in_reward(cpu_t tag, tensor_view<T, 2> scores, in_view<T, 2> logp,
                                in_view<T, 2> ref_logp, tensor_view<M, 2> mask, double beta,
                                const kl_params& p, out_view<T, 2> rewards) {
  constexpr const char* fn = "kl::apply_in_reward";
  check_in_reward(tag, fn, scores, logp, ref_logp, mask, beta, rewards);
  const index_t B = scores.extent(0), T_ = scores.extent(1);
  tensor<value_t<T>, 2> kld({B, T_});
  estimate(tag, logp, ref_logp, p, kld.view());
  double sum_rows = 0;
  for (index_t b = 0; b < B; ++b) {
    double s = 0, c = 0;
    for (index_t t = 0; t < T_; ++t) {
      const double m = static_cast<double>(mask(b, t));
      const double k = static_cast<double>(kld(b, t)) * m;
      s += k;
      c += m;
      rewards(b, t) = static_cast<value_t<T>>(static_cast<double>(scores(b, t)) - beta * k);
    }
    sum_rows += s / (c + 1e-8);
  }
  return {sum_rows / static_cast<double>(B), beta};
}

struct in_loss_result {
  double loss;     ///< kl_coef * agg(KL)
  double mean_kl;  ///< agg(KL), the logged "actor/kl_loss"
};

namespace rules {
/// The KL estimate of one token as a loss (both engines): value and d / d logp.
template <class A>
struct loss_token {
  A logp, ref;
  kl_params p;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 0, math::real_t<L>> operator()(index_t b, index_t t) const {
    const auto k = math::kl_token(logp.template get<L>(b, t), ref.template get<L>(b, t), p);
    token_out<1, 0, math::real_t<L>> r;
    r.loss = k.value;
    r.grad[0] = k.dlogp;
    return r;
  }
};
}  // namespace rules

namespace precheck {
/// The CPU engine's precheck of kl::loss: a token whose estimate (or its
/// derivative) is not finite, masked or not, is an error before any write.
template <class F, class V>
struct overflow_check {
  static constexpr bool active = true;
  const F& f;
  tensor_view<const V, 2> logp, ref;
  template <class L>
  RLHF_ALWAYS_INLINE math::mask_of<math::real_t<L>> bad(index_t b, index_t t) const {
    const auto o = f.template operator()<L>(b, t);
    using S = math::scalar_of<math::real_t<L>>;
    return ((o.loss - o.loss) != S(0)) | ((o.grad[0] - o.grad[0]) != S(0));
  }
  [[noreturn]] void fail(index_t b, index_t t) const {
    std::ostringstream os;
    os << "and 'ref_logp' differ by " << static_cast<double>(logp(b, t)) - static_cast<double>(ref(b, t)) << " at ["
       << b << ", " << t << "]: the estimate overflows; set log_ratio_clamp / value_clamp (kl_params::verl does)";
    rlhf::detail::fail(error_kind::non_finite, "kl::loss", "logp", os.str());
  }
};
}  // namespace precheck

/// KL as a loss term; writes d loss / d logp into `dlogp` when given
/// (accumulates with `accumulate = true`, for the combined PPO loss). One
/// pass of the CPU objective engine.
template <class T, class M>
in_loss_result loss(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> ref_logp, tensor_view<M, 2> mask,
                    double kl_coef, const kl_params& p, const agg_params& agg, out_view<T, 2> dlogp = {},
                    bool accumulate = false) {
  constexpr const char* fn = "kl::loss";
  rlhf::detail::require_same_shape(fn, "ref_logp", ref_logp, "logp", logp);
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "logp", logp);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "logp", logp);
  rlhf::detail::require_nonempty(fn, "logp", logp);
  rlhf::detail::require_nonneg_param(kl_coef, fn, "kl_coef");
  check_params(p, fn);
  using V = value_t<T>;
  const rules::loss_token<strided2<V>> f{strided(logp), strided(ref_logp), p};
  const auto s = cpu_engine::run<1, 0>(fn, f, mask, agg, std::array<tensor_view<V, 2>, 1>{dlogp},
                                       cpu_engine::inputs<V, 2>{tag.check_finite, {"logp", "ref_logp"}, {logp, ref_logp}},
                                       {kl_coef, accumulate, "loss_mask", false},
                                       precheck::overflow_check<rules::loss_token<strided2<V>>, V>{f, logp, ref_logp});
  rlhf::detail::require_finite_result(s.value, fn, "logp", "the aggregated KL overflows");
  return {kl_coef * s.value, s.value};
}

}  // namespace rlhf::kl
