// rlhf++ — the second stage of an on-policy step: the KL toward the
// reference (in the reward, or only measured when it is in the loss), the
// advantages and returns, and the statistics of the batch. Every number is
// an op's (kl/, advantage/, ops/); this file only wires them.
#pragma once

#include <cmath>
#include <vector>

#include "../advantage/common.hpp"
#include "../advantage/gae.hpp"
#include "../advantage/grpo.hpp"
#include "../advantage/reinforce.hpp"
#include "../advantage/group_variants.hpp"
#include "../advantage/rloo.hpp"
#include "../kl/estimators.hpp"
#include "../kl/penalty.hpp"
#include "../objectives/rollout_correction.hpp"
#include "../ops/masked.hpp"
#include "metrics.hpp"
#include "model_calls.hpp"
#include "options.hpp"
#include "rollout.hpp"
#include "structure.hpp"

namespace rlhf::train::detail {

/// The [B, T] buffers of a step, in precision W and memory Space (reused from step to step).
template <class W, class Space = host_space>
struct step_buffers {
  score_buffers<W, Space> scores;
  work_t<W, 2, Space> rewards, advantages, returns, kl_tok;
  work_t<W, 1, Space> seq_rewards;            ///< [B] (leave-one-out GRPO)
  work_t<W, 2, Space> log_ratio, is_weights;  ///< rollout correction: old - rollout, the IS weights
  work_t<double, 2, Space> loss_mask;         ///< rollout correction: the mask with the rejected tokens at 0
  work_t<W, 2, Space> kept;                   ///< ... as rejection_mask writes it (precision W)
  std::vector<long long> groups;
  boundary_buf<long long, 1, Space> groups_dev;
};

/// KL toward the reference and advantages for the batch; writes the batch
/// statistics into `r` and returns the controller's input (mean over
/// sequences of the per-token mean KL, verl's current_kl).
template <class S, class W, class Tag, class B, class Space>
double kl_and_advantages(Tag be, const B& b, tensor_view<const double, 2, Space> m,
                         tensor_view<const W, 2, Space> old_logp, tensor_view<const W, 2, Space> ref_logp,
                         tensor_view<const W, 2, Space> old_values, double beta, const rl_options& o,
                         step_buffers<W, Space>& ws, record& r, step_profile& prof) {
  using CV = tensor_view<const W, 2, Space>;
  const index_t B_ = b.size(), T = b.length();
  ws.rewards.resize({B_, T});
  ws.advantages.resize({B_, T});
  ws.returns.resize({B_, T});
  ws.kl_tok.resize({B_, T});
  return timed(prof.ops_s, [&] {
    const kl_params klp = kl_params::verl(S::kl);
    const CV scores = ws.scores.token_scores.view();
    // in the reward: r = score - beta KL; in the loss: rewards are the scores (beta 0), the KL is only measured
    const auto kst = kl::apply_in_reward(be, scores, old_logp, ref_logp, m,
                                         S::kl_where == kl_placement::reward ? beta : 0.0, klp, ws.rewards.view());
    // the logged KL to the reference, nats per sequence: k3 (never negative, unbiased on the
    // policy's own samples) and the plain log-ratio sum (k1, the same expectation, any sign)
    kl::estimate(be, old_logp, ref_logp, kl_params::verl(kl_estimator::k3), ws.kl_tok.view());
    const double kl_seq = ops::masked_sum(be, CV(ws.kl_tok.view()), m) / static_cast<double>(B_);
    kl::estimate(be, old_logp, ref_logp, kl_params{kl_estimator::k1, false, INFINITY, INFINITY}, ws.kl_tok.view());
    const double log_ratio = ops::masked_sum(be, CV(ws.kl_tok.view()), m) / static_cast<double>(B_);

    adv::outputs<W, Space> out{ws.advantages.view(), ws.returns.view()};
    const CV rw = ws.rewards.view();
    double zero_groups = -1;
    if constexpr (S::adv == advantage_estimator::gae) {
      adv::gae(be, rw, old_values, m, adv::gae_params{o.gamma, o.lam, o.whiten_advantages}, out);
    } else if constexpr (S::adv == advantage_estimator::reinforce_pp) {
      adv::reinforce_pp_params rp;
      rp.gamma = o.gamma;
      adv::reinforce_pp(be, rw, m, rp, out);
    }
    if (group_relative(S::adv) || o.group_size >= 2) {
      ws.groups.resize(static_cast<std::size_t>(B_));
      for (index_t i = 0; i < B_; ++i) ws.groups[static_cast<std::size_t>(i)] = i / o.group_size;
      const auto idx = bring<long long, Space>(be, tensor_view<const long long, 1>(ws.groups.data(), {B_}),
                                               ws.groups_dev, prof.batch_bytes);
      if constexpr (S::adv == advantage_estimator::grpo)
        adv::grpo(be, rw, m, idx, o.grpo, out);
      else if constexpr (S::adv == advantage_estimator::rloo)
        adv::rloo(be, rw, m, idx, adv::rloo_params{true}, out);
      else if constexpr (S::adv == advantage_estimator::maxrl) {
        static_assert(std::is_same_v<Space, host_space>,
                      "rlhf: adv::maxrl has no device version yet: choose grpo, rloo or reinforce_pp on rlhf::cuda");
        adv::maxrl(be, rw, m, idx, adv::maxrl_params{}, out);
      } else if constexpr (S::adv == advantage_estimator::loo_grpo) {
        static_assert(std::is_same_v<Space, host_space>,
                      "rlhf: adv::loo_grpo has no device version yet: choose grpo, rloo or reinforce_pp on rlhf::cuda");
        // NeMo-RL's rewards are the sequences' (here: the token rewards' masked row sums, the KL in the
        // reward included); each row's advantage is constant, the mask applies in the loss
        ws.seq_rewards.resize({B_});
        ops::masked_sum_rows(be, rw, m, ws.seq_rewards.view());
        adv::loo_grpo(be, tensor_view<const W, 1>(ws.seq_rewards.view()), idx, adv::loo_grpo_params{},
                      ws.advantages.view());
        memory<Space>::convert(be, CV(ws.advantages.view()), ws.returns.view());
      } else if constexpr (S::adv == advantage_estimator::gdpo) {
        static_assert(std::is_same_v<Space, host_space>,
                      "rlhf: adv::gdpo has no device version yet: choose grpo, rloo or reinforce_pp on rlhf::cuda");
        // a ComponentRewardModel's [K, B] scores; else one component, the token rewards' row sums
        const CV comp = ws.scores.components.size() > 0 ? CV(ws.scores.components.view()) : CV{};
        adv::gdpo(be, rw, m, idx, comp, adv::gdpo_params{}, out);
      }
      if (o.group_size >= 2) zero_groups = adv::zero_variance_fraction(be, rw, idx);
    }

    r.set("kl_ref", kl_seq).set("log_ratio_ref", log_ratio).set("kl_ref_token", kst.mean_seq_kl).set("kl_coef", beta);
    r.set("response_length", ops::mask_count(be, m) / static_cast<double>(B_));
    // the entropy of the sampling policy estimated from its own samples: mean of -log pi(y_t)
    r.set("entropy_sampled", -ops::masked_mean(be, old_logp, m, 0.0));
    const auto av = ops::masked_var(be, CV(ws.advantages.view()), m, false, 0.0);
    r.set("adv_std", std::sqrt(av.var));
    if (zero_groups >= 0) r.set("zero_variance_groups", zero_groups);
    return kst.mean_seq_kl;
  });
}

/// Rollout correction (rl_options::rollout_corr): log_ratio = old - rollout
/// log-probs; the rejection mask into ws.loss_mask and the IS weights into
/// ws.is_weights (computed on the kept tokens), their statistics into `r`.
/// Returns the views the update reads (null where a part is off). CPU.
template <class W, class Tag, class Space>
std::pair<tensor_view<const double, 2, Space>, tensor_view<const W, 2, Space>> rollout_correct(
    Tag be, tensor_view<const W, 2, Space> old_logp, tensor_view<const double, 2, Space> rollout_logp,
    tensor_view<const double, 2, Space> m, const rollout_correction& rc,
    const std::vector<rollout_corr::rs_option>& rejection, step_buffers<W, Space>& ws, record& r) {
  static_assert(is_host_backend_v<Tag>, "rlhf: rollout correction runs on the CPU only for now");
  const index_t B_ = m.extent(0), T = m.extent(1);
  ws.log_ratio.resize({B_, T});
  for (index_t b = 0; b < B_; ++b)
    for (index_t t = 0; t < T; ++t) ws.log_ratio(b, t) = static_cast<W>(old_logp(b, t) - rollout_logp(b, t));
  const tensor_view<const W, 2, Space> lr = ws.log_ratio.view();
  tensor_view<const double, 2, Space> keep = m, loss_mask{};
  if (!rejection.empty()) {
    ws.loss_mask.resize({B_, T});
    ws.kept.resize({B_, T});
    const auto st = rollout_corr::rejection_mask(be, lr, m, rejection, ws.kept.view());
    memory<Space>::convert(be, tensor_view<const W, 2, Space>(ws.kept.view()), ws.loss_mask.view());
    r.set("rollout_rs_masked_fraction", st.masked_fraction)
        .set("rollout_rs_seq_masked_fraction", st.seq_masked_fraction);
    keep = loss_mask = ws.loss_mask.view();
  }
  tensor_view<const W, 2, Space> weights{};
  if (rc.weights != rollout_is_mode::off) {
    ws.is_weights.resize({B_, T});
    const auto st = rollout_corr::correction_weights(be, lr, keep, weight_params(rc), ws.is_weights.view());
    r.set("rollout_is_mean", st.mean).set("rollout_is_eff_sample_size", st.eff_sample_size);
    if (rc.weights_lower > 0) r.set("rollout_is_oob_ratio", st.oob_ratio);
    if (rc.weights_batch_normalize) r.set("rollout_is_batch_norm_factor", st.batch_norm_factor);
    weights = ws.is_weights.view();
  }
  return {loss_mask, weights};
}

}  // namespace rlhf::train::detail
