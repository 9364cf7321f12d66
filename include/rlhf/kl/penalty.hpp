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

RLHF_BACKEND_FIRST(loss)
RLHF_BACKEND_FIRST(apply_in_reward)

struct in_reward_stats {
  double mean_seq_kl;  ///< mean over rows of the masked per-row mean KL (verl's current_kl)
  double beta;         ///< the coefficient that was applied
};

/// The shape and parameter checks of apply_in_reward on every backend.
template <class Tag, class S, class V, class M, class O>
void check_in_reward(Tag tag, const char* fn, const S& scores, const V& logp, const V& ref_logp, const M& mask,
                     double beta, const O& rewards) {
  detail::require_same_shape(fn, "logp", logp, "token_level_scores", scores);
  detail::require_same_shape(fn, "ref_logp", ref_logp, "token_level_scores", scores);
  detail::require_same_shape(fn, "response_mask", mask, "token_level_scores", scores);
  detail::require_same_shape(fn, "rewards", rewards, "token_level_scores", scores);
  detail::require_output(fn, "rewards", rewards, "token_level_scores", scores);  // storage, one address each
  detail::require_nonempty(fn, "token_level_scores", scores);
  (void)tag;  // (the values are scanned by the CPU engine's mask pass, not here)
  detail::require_nonneg_param(beta, fn, "beta");
}

/// verl's current_kl from each row's masked KL sum `kl(b)` and mask sum
/// `n(b)` (both backends): the mean over rows of kl / (n + 1e-8). Each
/// row's mean is at most the largest token KL (checked finite), and each is
/// divided by B before the sum, so the mean stays finite too.
/// A row's mean KL from its masked sum and mask sum (verl's 1e-8).
RLHF_HD inline double row_mean_kl(double kl_sum, double n) { return kl_sum / (n + 1e-8); }

template <class K, class N>
double mean_seq_kl(index_t B, const K& kl, const N& n, const char* fn) {
  double mean = 0;
  for (index_t b = 0; b < B; ++b) mean += row_mean_kl(kl(b), n(b)) / static_cast<double>(B);
  detail::require_finite_result(mean, fn, "logp", "the mean sequence KL overflows");
  return mean;
}

namespace rules {
/// The KL penalty in the reward (both engines), an elementwise map: the
/// reward score - beta m KL at every position; the statistic KL (its masked
/// row sums give verl's current_kl).
template <class A, class AM>
struct reward_token {
  A scores, logp, ref;
  AM mask;
  kl_params p;
  double beta;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 1, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    using S = math::scalar_of<R>;
    const R k = math::kl_token(logp.template get<L>(b, t), ref.template get<L>(b, t), p).value;
    token_out<1, 1, R> r;
    r.grad[0] = scores.template get<L>(b, t) - static_cast<S>(beta) * (k * mask.template get<L>(b, t));
    r.stat[0] = k;
    return r;
  }
};
}  // namespace rules

struct in_loss_result {
  double loss;     ///< kl_coef * agg(KL)
  double mean_kl;  ///< agg(KL), the logged "actor/kl_loss"
};

/// The shape and parameter checks of kl::loss (every backend).
template <class L, class R, class M, class O>
void check_loss(const char* fn, const L& logp, const R& ref_logp, const M& mask, const O& dlogp, double kl_coef,
                const kl_params& p) {
  rlhf::detail::require_same_shape(fn, "ref_logp", ref_logp, "logp", logp);
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "logp", logp);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "logp", logp);
  rlhf::detail::require_nonempty(fn, "logp", logp);
  rlhf::detail::require_nonneg_param(kl_coef, fn, "kl_coef");
  check_params(p, fn);
}

/// KL as a loss term; writes d loss / d logp into `dlogp` when given
/// (accumulates with `accumulate = true`, for the combined PPO loss). One
/// pass of the CPU objective engine.
template <class Tag, class T, class M>
requires backend<Tag> in_loss_result loss(Tag tag, tensor_view<T, 2, typename Tag::space> logp,
                                          in_view_in<T, 2, typename Tag::space> ref_logp,
                                          tensor_view<M, 2, typename Tag::space> mask, double kl_coef,
                                          const kl_params& p, const agg_params& agg,
                                          out_view_in<T, 2, typename Tag::space> dlogp = {}, bool accumulate = false) {
  constexpr const char* fn = "kl::loss";
  using S = typename Tag::space;
  [[maybe_unused]] const engine::op_scope scope(tag);
  check_loss(fn, logp, ref_logp, mask, dlogp, kl_coef, p);
  using V = value_t<T>;
  const rules::loss_token<strided2<V>> f{strided(logp), strided(ref_logp), p};
  auto pass = [&](const auto& pre) {
    return engine::run<1, 0>(tag, fn, f, mask, agg, std::array<tensor_view<V, 2, S>, 1>{dlogp},
                             engine::inputs<V, 2, S>{tag.check_finite, {"logp", "ref_logp"}, {logp, ref_logp}},
                             {kl_coef, accumulate, "loss_mask", false}, pre);
  };
  // the overflow precheck (an error before anything is written) is the
  // CPU engine's; the device checks the result
  const auto s = [&] {
    if constexpr (is_host_backend_v<Tag>)
      return with_overflow_check<V>(p, f, logp, ref_logp, fn, pass);
    else
      return pass(engine::no_precheck{});
  }();
  rlhf::detail::require_finite_result(s.value, fn, "logp", "the aggregated KL overflows");
  return {kl_coef * s.value, s.value};
}

/// token_level_rewards = token_level_scores - beta * mask * KL(logp, ref_logp).
/// `rewards` may alias `scores`. One pass of the CPU objective engine. Any
/// host tag: under tag.with(comm) the rewards are this rank's rows and
/// mean_seq_kl (the adaptive controller's input) is the mean over every
/// rank's rows (one collective).
template <class Tag, class T, class M>
requires(backend<Tag>&& is_host_backend_v<Tag>) in_reward_stats
    apply_in_reward(Tag tag, tensor_view<T, 2> scores, in_view<T, 2> logp, in_view<T, 2> ref_logp,
                    tensor_view<M, 2> mask, double beta, const kl_params& p, out_view<T, 2> rewards) {
  constexpr const char* fn = "kl::apply_in_reward";
  [[maybe_unused]] const engine::op_scope scope(tag);
  check_in_reward(tag, fn, scores, logp, ref_logp, mask, beta, rewards);
  check_params(p, fn);
  using V = value_t<T>;
  using MV = std::remove_const_t<value_t<M>>;
  const index_t B = scores.extent(0);
  const rules::reward_token<strided2<V>, strided2<MV>> f{
      strided(scores), strided(logp), strided(ref_logp), strided(mask), p, beta};
  const rules::loss_token<strided2<V>> est{strided(logp), strided(ref_logp), p};
  std::vector<double> row_kl(static_cast<std::size_t>(B)), row_n(static_cast<std::size_t>(B));
  cpu_engine::run_options o{};
  o.raw = true;
  o.require_tokens = false;
  o.row_stats = row_kl.data();
  o.row_counts = row_n.data();
  const agg_params sum = agg_params::token_sum();
  with_overflow_check<V>(p, est, logp, ref_logp, fn, [&](const auto& pre) {
    cpu_engine::run<1, 1>(fn, f, mask, sum, std::array<tensor_view<V, 2>, 1>{rewards},
                          cpu_engine::inputs<V, 3>{
                              tag.check_finite, {"token_level_scores", "logp", "ref_logp"}, {scores, logp, ref_logp}},
                          o, pre);
  });
  if constexpr (is_distributed_v<Tag>) {
    // each rank's sum of its rows' mean KL and its row count, then the mean over every row
    double part[2] = {0, static_cast<double>(B)};
    for (std::size_t b = 0; b < row_kl.size(); ++b) part[0] += row_mean_kl(row_kl[b], row_n[b]);
    const dist::frames g = dist::exchange(*tag.comm, dist::failure{}, part);
    const double mean = g.sum(1) > 0 ? g.sum(0) / g.sum(1) : 0.0;
    detail::require_finite_result(mean, fn, "logp", "the mean sequence KL overflows");
    return {mean, beta};
  } else {
    const auto at = [](const std::vector<double>& v) {
      return [&v](index_t b) { return v[static_cast<std::size_t>(b)]; };
    };
    return {mean_seq_kl(B, at(row_kl), at(row_n), fn), beta};
  }
}

}  // namespace rlhf::kl
