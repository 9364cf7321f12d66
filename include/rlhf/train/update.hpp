// rlhf++ — the update stage of an on-policy step: PPO's epochs of
// minibatches (clipped objective, value loss, entropy bonus, KL in the loss,
// early stop on the approximate KL), or A2C's single update.
//
// Call order, per minibatch (PPO) or once (A2C, whole batch):
//   f = policy.forward(mb)  [A2C: then v = value.forward(b)]
//   policy.backward(f, dL/dlogp); policy.step()
//   [critic] value.forward(mb); value.backward(v, dL/dv); value.step()
// Minibatches are rows of the batch gathered into buffers the trainer keeps
// from step to step (no allocation once they have held the largest batch).
#pragma once

#include <cmath>
#include <vector>

#include "../kl/estimators.hpp"
#include "../kl/is.hpp"
#include "../kl/penalty.hpp"
#include "../objectives/a2c.hpp"
#include "../objectives/ppo.hpp"
#include "../ops/masked.hpp"
#include "metrics.hpp"
#include "model_calls.hpp"
#include "options.hpp"
#include "structure.hpp"

namespace rlhf::train::detail {

/// What the update reads from the rollout stage (views of the step's buffers).
template <class W, class Space = host_space>
struct rollout_views {
  tensor_view<const W, 2, Space> old_logp, ref_logp, advantages, returns, old_values;
  tensor_view<const double, 2, Space> loss_mask{};  ///< rollout correction's rejection (null: the batch's mask)
  tensor_view<const W, 2, Space> is_weights{};      ///< rollout correction's IS weights (null: none)
};

/// The update's reused buffers: one minibatch (host metadata for the models,
/// its mask and labels where the ops run) and its gradients.
template <class W, class B, class Space = host_space>
struct update_buffers {
  B mb;
  batch_mirror<typename B::token_type, Space> mbm;
  work_t<W, 2, Space> old_logp, ref_logp, advantages, returns, old_values, dlogp, dentropy, dvalues, kl_tok, weights;
  work_t<double, 2, Space> loss_mask;
  std::vector<index_t> perm, rows;
};

/// Rows `rows` of x into `out` (resized in place), where the ops run.
template <class Tag, class W, class Space>
void gather(Tag be, tensor_view<const W, 2, Space> x, const std::vector<index_t>& rows, work_t<W, 2, Space>& out,
            step_profile& prof) {
  const auto n = static_cast<index_t>(rows.size());
  out.resize({n, x.extent(1)});
  memory<Space>::gather_rows(be, x, rows, out.view());
  prof.gather_bytes += static_cast<std::size_t>(n * x.extent(1)) * sizeof(W);
}

/// The IS-corrected KL of a structure whose KL in the loss has a
/// correction (kl_correction_of<S>() != none): its estimator unclamped (TRL),
/// times the token ratio pi / pi_old (or exp(logp - sg(logp)) on-policy).
template <class S>
kl::is_kl_params is_kl_of() {
  kl::is_kl_params p;
  p.kl = kl_params{S::kl, false, INFINITY, INFINITY};
  p.weight = kl::is_weight_level::token;
  return p;
}

/// KL in the loss with an off-policy correction: kl_coef * agg(kl), its
/// gradient added to dlogp; returns agg(kl). (CPU: kl::loss_is.)
template <class S, class W, class Tag, class Space>
double corrected_kl_loss(Tag be, tensor_view<const W, 2, Space> logp, tensor_view<const W, 2, Space> old_logp,
                         tensor_view<const W, 2, Space> ref_logp, tensor_view<const double, 2, Space> m, double kl_coef,
                         const agg_params& agg, tensor_view<W, 2, Space> dlogp) {
  static_assert(is_host_backend_v<Tag>,
                "rlhf: the IS-corrected KL forms (kl::k3_is, k4, k3_on_policy) have no device version yet: choose "
                "rlhf::kl::k1/k2/k3/abs on rlhf::cuda");
  using CV = tensor_view<const W, 2, Space>;
  const CV old = kl_correction_of<S>() == kl_correction::ratio ? old_logp : CV{};
  return kl::loss_is(be, logp, old, ref_logp, m, kl_coef, is_kl_of<S>(), agg, dlogp, true).mean_kl;
}

template <class S, class W, class Tag, class P, class V, class B, class Space>
void ppo_update(Tag be, P& policy, V* value, const B& b, const rollout_views<W, Space>& in, const rl_options& o,
                double kl_coef, rng_t& rng, update_buffers<W, B, Space>& u, grad_pass<W, P, B, Space>& gp,
                value_pass<W, V, B, Space>* vp, record& r, step_profile& prof) {
  using CV = tensor_view<const W, 2, Space>;
  using MV = tensor_view<W, 2, Space>;
  constexpr bool has_value = ValueFunction<V, B>;
  const index_t B_ = b.size();
  const index_t mbs = o.minibatch_size > 0 ? std::min<index_t>(static_cast<index_t>(o.minibatch_size), B_) : B_;
  ppo::actor_params ap;
  ap.policy = o.ppo;
  ap.entropy_coef = o.entropy_coef;
  ap.kl = kl_params::verl(S::kl);
  constexpr bool corrected = kl_correction_of<S>() != kl_correction::none;
  // a corrected KL runs beside the actor loss (kl::loss_is), not inside it
  ap.kl_coef = S::kl_where == kl_placement::loss && !corrected ? kl_coef : 0.0;
  const kl_params k3{kl_estimator::k3, false, INFINITY, INFINITY};
  double pg = 0, clip = 0, akl = 0, ent = 0, vf = 0, vclip = 0, gnorm = 0, n_mb = 0, epochs = 0;
  bool stopped = false, logged_entropy = false;
  for (long long e = 0; e < o.ppo_epochs && !stopped; ++e) {
    permutation(B_, rng, u.perm);
    for (index_t start = 0; start < B_ && !stopped; start += mbs) {
      u.rows.assign(u.perm.begin() + start, u.perm.begin() + std::min(B_, start + mbs));
      gather_rows(b, u.rows, u.mb);
      u.mbm.set(be, u.mb, prof.batch_bytes);
      gather(be, in.old_logp, u.rows, u.old_logp, prof);
      gather(be, in.advantages, u.rows, u.advantages, prof);
      if constexpr (S::kl_where == kl_placement::loss) gather(be, in.ref_logp, u.rows, u.ref_logp, prof);
      const auto mm = u.mbm.mask();
      // the policy loss's mask and weights: rollout correction's where it is on
      if (!in.loss_mask.null()) gather(be, in.loss_mask, u.rows, u.loss_mask, prof);
      if (!in.is_weights.null()) gather(be, in.is_weights, u.rows, u.weights, prof);
      const auto lm = in.loss_mask.null() ? mm : tensor_view<const double, 2, Space>(u.loss_mask.view());
      const CV iw = in.is_weights.null() ? CV{} : CV(u.weights.view());
      const index_t n = mm.extent(0), T = mm.extent(1);
      u.dlogp.resize({n, T});
      u.dentropy.resize({n, T});
      u.kl_tok.resize({n, T});
      const bool want_h = o.entropy_coef != 0;
      gp.forward(be, policy, u.mb, u.mbm, want_h, prof);
      if constexpr (!is_host_backend_v<Tag>) {  // the host ops check their inputs themselves
        memory<Space>::require_finite(be, "train::rl_trainer::step", "policy log_probs", gp.logp());
        if (want_h && gp.has_entropy())
          memory<Space>::require_finite(be, "train::rl_trainer::step", "policy entropy", gp.entropy());
      }
      const bool use_h = gp.has_entropy() && want_h;
      const auto res = timed(prof.ops_s, [&] {
        return ppo::actor_loss(be, gp.logp(), CV(u.old_logp.view()), CV(u.advantages.view()), lm,
                               use_h ? gp.entropy() : CV{},
                               S::kl_where == kl_placement::loss ? CV(u.ref_logp.view()) : CV{}, ap, u.dlogp.view(),
                               use_h ? u.dentropy.view() : MV{}, iw);
      });
      if constexpr (S::kl_where == kl_placement::loss && corrected)
        timed(prof.ops_s, [&] {
          corrected_kl_loss<S>(be, gp.logp(), CV(u.old_logp.view()), CV(u.ref_logp.view()), lm, kl_coef, ap.policy.agg,
                               u.dlogp.view());
        });
      double approx_kl = 0;
      timed(prof.ops_s, [&] {
        // SB3's approx_kl, (r - 1) - log r, for the early stop (target_kl)
        kl::estimate(be, CV(u.old_logp.view()), gp.logp(), k3, u.kl_tok.view());
        approx_kl = ops::masked_mean(be, CV(u.kl_tok.view()), mm, 0.0);
        gnorm += std::sqrt(ops::sum_squares(be, CV(u.dlogp.view())));
        if (gp.has_entropy()) {
          ent += ops::masked_mean(be, gp.entropy(), mm, 0.0);
          logged_entropy = true;
        }
      });
      // the backward last: the model may free the forward's outputs (the handle's tensors)
      gp.backward(be, policy, CV(u.dlogp.view()), use_h ? CV(u.dentropy.view()) : CV{}, prof);
      timed(prof.model_s, [&] { policy.step(); });
      pg += res.policy.loss;
      clip += res.policy.clipfrac;
      akl += approx_kl;
      if constexpr (has_value) {
        gather(be, in.returns, u.rows, u.returns, prof);
        gather(be, in.old_values, u.rows, u.old_values, prof);
        vp->forward(be, *value, u.mb, prof);
        if constexpr (!is_host_backend_v<Tag>)
          memory<Space>::require_finite(be, "train::rl_trainer::step", "values", vp->values());
        u.dvalues.resize({n, T});
        const auto vr = timed(prof.ops_s, [&] {
          return ppo::value_loss(be, vp->values(), CV(u.returns.view()), CV(u.old_values.view()), mm, o.value,
                                 u.dvalues.view());
        });
        vp->backward(be, *value, CV(u.dvalues.view()), prof);
        timed(prof.model_s, [&] { value->step(); });
        vf += vr.loss;
        vclip += vr.clipfrac;
      }
      n_mb += 1;
      if (approx_kl > 1.5 * o.early_stop_kl) stopped = true;
    }
    epochs += 1;
  }
  r.set("loss", pg / n_mb).set("clipfrac", clip / n_mb).set("approx_kl", akl / n_mb);
  r.set("grad_norm", gnorm / n_mb).set("epochs", epochs).set("early_stopped", stopped);
  if (logged_entropy) r.set("entropy", ent / n_mb);
  if constexpr (has_value) r.set("vf_loss", vf / n_mb).set("vf_clipfrac", vclip / n_mb);
}

template <class S, class W, class Tag, class P, class V, class B, class Space>
void a2c_update(Tag be, P& policy, V& value, const B& b, const batch_mirror<typename B::token_type, Space>& bm,
                const rollout_views<W, Space>& in, const rl_options& o, double kl_coef, update_buffers<W, B, Space>& u,
                grad_pass<W, P, B, Space>& gp, value_pass<W, V, B, Space>& vp, record& r, step_profile& prof) {
  using CV = tensor_view<const W, 2, Space>;
  using MV = tensor_view<W, 2, Space>;
  const auto m = bm.mask();
  const index_t n = m.extent(0), T = m.extent(1);
  u.dlogp.resize({n, T});
  u.dentropy.resize({n, T});
  u.dvalues.resize({n, T});
  gp.forward(be, policy, b, bm, o.a2c.ent_coef != 0, prof);
  vp.forward(be, value, b, prof);
  if constexpr (!is_host_backend_v<Tag>) {
    memory<Space>::require_finite(be, "train::rl_trainer::step", "policy log_probs", gp.logp());
    memory<Space>::require_finite(be, "train::rl_trainer::step", "values", vp.values());
  }
  const bool use_h = gp.has_entropy();
  double kl_loss = 0, g2 = 0, h = 0;
  const auto res = timed(prof.ops_s, [&] {
    const auto out = a2c::loss(be, gp.logp(), vp.values(), in.advantages, in.returns, use_h ? gp.entropy() : CV{}, m,
                               o.a2c, u.dlogp.view(), u.dvalues.view(), use_h ? u.dentropy.view() : MV{});
    if constexpr (S::kl_where == kl_placement::loss && kl_correction_of<S>() != kl_correction::none)
      kl_loss = kl_coef *
                corrected_kl_loss<S>(be, gp.logp(), in.old_logp, in.ref_logp, m, kl_coef, agg_params{}, u.dlogp.view());
    else if constexpr (S::kl_where == kl_placement::loss)
      kl_loss =
          kl::loss(be, gp.logp(), in.ref_logp, m, kl_coef, kl_params::verl(S::kl), agg_params{}, u.dlogp.view(), true)
              .loss;
    g2 = ops::sum_squares(be, CV(u.dlogp.view()));
    if (use_h) h = ops::masked_mean(be, gp.entropy(), m, 0.0);
    return out;
  });
  gp.backward(be, policy, CV(u.dlogp.view()), use_h ? CV(u.dentropy.view()) : CV{}, prof);
  timed(prof.model_s, [&] { policy.step(); });
  vp.backward(be, value, CV(u.dvalues.view()), prof);
  timed(prof.model_s, [&] { value.step(); });
  r.set("loss", res.loss + kl_loss).set("pg_loss", res.policy_loss).set("vf_loss", res.value_loss);
  r.set("grad_norm", std::sqrt(g2));
  if (use_h) r.set("entropy", h);
}

}  // namespace rlhf::train::detail
