// rlhf++ — PPO objectives for RLHF.
//
// policy loss   L_pg  = agg_t( ppo_clip(logp, old_logp, A) * w_t )      (math/ppo.hpp)
// entropy bonus L_ent = -entropy_coef * agg_t(H_t)
// KL in loss    L_kl  = kl_coef * agg_t(KL_t(logp, ref_logp))            (kl/penalty.hpp)
// actor loss    L     = L_pg + L_ent + L_kl                               (verl dp_actor)
// value loss    L_vf  = scale * agg_t( max((v-R)^2, (clip(v)-R)^2) )      (verl compute_value_loss)
// combined      L + vf_coef * L_vf
//
// Statistics, as the stacks log them:
//   clipfrac       = masked_mean(l2 > l1)              (verl pg_clipfrac, OpenRLHF clip_ratio, TRL)
//                    or masked_mean(|r - 1| > eps)     (Stable-Baselines3 clip_fraction)
//   clipfrac_lower = masked_mean(dual clip active)     (verl pg_clipfrac_lower)
//   ppo_kl         = masked_mean(-d)                   (verl: d clamped; OpenRLHF: raw)
//                    or masked_mean(d^2/2) (TRL approxkl), masked_mean((r-1) - log r) (SB3 approx_kl)
// Each convention is a field of policy_params; presets give each stack's values.
#pragma once

#include <array>
#include <cmath>
#include <utility>

#include "../core/named_enum.hpp"
#include "../ops/aggregate.hpp"
#include "../kl/penalty.hpp"
#include "../math/ppo.hpp"
#include "../math/tokens.hpp"
#include "../backend/cpu/objective.hpp"

namespace rlhf::ppo {

RLHF_BACKEND_FIRST(policy_loss)
RLHF_BACKEND_FIRST(value_loss)
RLHF_BACKEND_FIRST(entropy_bonus)
RLHF_BACKEND_FIRST(actor_loss)
RLHF_BACKEND_FIRST(combined_loss)

RLHF_NAMED_ENUM(clipfrac_rule, (objective_clipped, "objective_clipped"), (ratio_outside, "ratio_outside"));
RLHF_NAMED_ENUM(approx_kl_rule, (neg_log_ratio, "neg_log_ratio"), (half_squared, "half_squared"), (k3, "k3"));

struct policy_params {
  double clip_low = 0.2;          ///< epsilon below 1 (verl clip_ratio_low)
  double clip_high = 0.2;         ///< epsilon above 1 (verl clip_ratio_high, DAPO clip-higher)
  double dual_clip = 3.0;         ///< c > 1 for A < 0; INFINITY = off (verl clip_ratio_c)
  double log_ratio_clamp = 20.0;  ///< clamp of logp - old_logp before exp; INFINITY = off
  bool kl_stat_clamped = true;    ///< ppo_kl from the clamped log ratio (verl) or the raw one
  double stat_eps = 1e-8;         ///< epsilon of the masked means of the statistics (verl 1e-8)
  clipfrac_rule clipfrac = clipfrac_rule::objective_clipped;
  approx_kl_rule approx_kl = approx_kl_rule::neg_log_ratio;
  agg_params agg{};  ///< aggregation of the token losses

  /// verl compute_policy_loss_vanilla (ActorConfig defaults).
  static policy_params verl(agg_mode m = agg_mode::token_mean) {
    policy_params p;
    p.agg.mode = m;
    return p;
  }
  /// OpenRLHF PolicyLoss("ppo"): dual clip off unless set, raw-log-ratio ppo_kl,
  /// exact masked means; token_level_loss=false is seq-mean-token-mean.
  static policy_params openrlhf(bool token_level_loss = true) {
    policy_params p;
    p.dual_clip = INFINITY;
    p.kl_stat_clamped = false;
    p.stat_eps = 0.0;
    p.agg.mode = token_level_loss ? agg_mode::token_mean : agg_mode::seq_mean_token_mean;
    return p;
  }
  /// TRL experimental PPOTrainer: symmetric cliprange, no dual clip, no log-ratio
  /// clamp, exact masked means, approxkl = 0.5 * mean(d^2).
  static policy_params trl(double cliprange = 0.2) {
    policy_params p;
    p.clip_low = p.clip_high = cliprange;
    p.dual_clip = INFINITY;
    p.log_ratio_clamp = INFINITY;
    p.kl_stat_clamped = false;
    p.stat_eps = 0.0;
    p.approx_kl = approx_kl_rule::half_squared;
    return p;
  }
  /// Stable-Baselines3 PPO: mean over samples, clip_fraction = mean(|r-1| > eps),
  /// approx_kl = mean((r - 1) - log r).
  static policy_params sb3(double clip_range = 0.2) {
    policy_params p = trl(clip_range);
    p.clipfrac = clipfrac_rule::ratio_outside;
    p.approx_kl = approx_kl_rule::k3;
    return p;
  }
};

struct policy_result {
  double loss = 0;            ///< aggregated policy loss (verl pg_loss)
  double clipfrac = 0;        ///< pg_clipfrac / clip_ratio
  double ppo_kl = 0;          ///< approximate KL(old || new), see approx_kl_rule
  double clipfrac_lower = 0;  ///< pg_clipfrac_lower (dual clip)
};

inline void check_policy_params(const policy_params& p, const char* fn) {
  detail::require_nonneg_param(p.clip_low, fn, "clip_low");
  detail::require_nonneg_param(p.clip_high, fn, "clip_high");
  detail::require_param(p.clip_low < 1, fn, "clip_low", "must be < 1 (the ratio's lower bound 1 - clip_low is > 0)");
  detail::require_param(!std::isnan(p.dual_clip) && p.dual_clip > 1, fn, "dual_clip",
                        "must be > 1 (INFINITY turns the dual clip off); got " + std::to_string(p.dual_clip));
  detail::require_param(!std::isnan(p.log_ratio_clamp) && p.log_ratio_clamp > 0, fn, "log_ratio_clamp",
                        "must be > 0 (INFINITY = off)");
  detail::require_nonneg_param(p.stat_eps, fn, "stat_eps");
}

/// The statistics rules of the params, for math::ppo_stats (every backend).
inline math::ppo_stat_rules stat_rules(const policy_params& p) {
  return {p.clipfrac == clipfrac_rule::ratio_outside, static_cast<int>(p.approx_kl), p.kl_stat_clamped,
          std::fmax(p.clip_low, p.clip_high)};
}

namespace detail {
/// The shape checks of the policy losses, on every backend (on the CPU the
/// values are scanned by the engine's mask pass).
template <class L, class V, class M>
void check_policy_shapes(const char* fn, const L& logp, const V& old_logp, const V& adv, const M& mask) {
  rlhf::detail::require_same_shape(fn, "old_log_prob", old_logp, "log_prob", logp);
  rlhf::detail::require_same_shape(fn, "advantages", adv, "log_prob", logp);
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "log_prob", logp);
  rlhf::detail::require_nonempty(fn, "log_prob", logp);
}
/// Optional detached per-token weights (IS corrections).
template <class L, class W>
void check_weights_shape(const char* fn, const L& logp, const W& weights) {
  if (!weights.null()) rlhf::detail::require_same_shape(fn, "weights", weights, "log_prob", logp);
}
}  // namespace detail

namespace rules {
/// The clipped policy loss of one token (both engines): loss and d loss /
/// d logp (times the optional IS weight), and the statistics [clipped,
/// clipped_lower, kl] of math::ppo_stats.
template <class A>
struct policy_token {
  A logp, old, adv, weights;
  math::ppo_clip_params cp;
  math::ppo_stat_rules sr;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 3, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    const R lp = logp.template get<L>(b, t), o = old.template get<L>(b, t);
    const auto term = math::ppo_clip(lp, o, adv.template get<L>(b, t), cp);
    const auto st = math::ppo_stats(term, lp - o, sr);
    token_out<1, 3, R> r;
    if (weights.null()) {
      r.loss = term.loss;
      r.grad[0] = term.dlogp;
    } else {
      const R iw = weights.template get<L>(b, t);
      r.loss = term.loss * iw;
      r.grad[0] = term.dlogp * iw;
    }
    r.stat[0] = st.clipped;
    r.stat[1] = st.clipped_lower;
    r.stat[2] = st.kl;
    return r;
  }
};

/// The value loss of one token (both engines): loss, d loss / d vpred, and
/// whether the clipped branch was taken.
template <class A>
struct value_token {
  A vpred, ret, old;
  double clip;
  bool clipped_only;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 1, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    const auto term = math::value_clip(vpred.template get<L>(b, t), old.template get<L>(b, t),
                                       ret.template get<L>(b, t), clip, clipped_only);
    token_out<1, 1, R> r;
    r.loss = term.loss;
    r.grad[0] = term.dv;
    r.stat[0] = math::indicator<R>(term.clipped);
    return r;
  }
};

/// loss = x (the aggregated quantity itself: entropy, a KL estimate); gradient 1.
template <class A>
using identity_token = ops::rules::value_token<A>;
}  // namespace rules

namespace detail {
/// The logged statistics divide by the mask's sum (+ stat_eps): a weight-like
/// mask whose sum is ~0 makes them overflow; that is an error, never an Inf.
inline void require_finite_stats(const policy_result& r, const char* fn) {
  for (double x : {r.clipfrac, r.clipfrac_lower, r.ppo_kl})
    rlhf::detail::require_finite_result(
        x, fn, "response_mask", "a logged statistic (clipfrac, ppo_kl) overflows: the mask sums to ~0 (weights?)");
}

/// The policy loss result from the engine's sums (both backends).
template <class Sums>
policy_result policy_from(const Sums& s, const policy_params& p, const char* fn) {
  rlhf::detail::require_finite_result(s.value, fn, "log_prob",
                                      "the ratio exp(log_prob - old_log_prob) overflows; set log_ratio_clamp");
  policy_result r{};
  r.loss = s.value;
  r.clipfrac = s.stat[0] / (s.n + p.stat_eps);
  r.clipfrac_lower = s.stat[1] / (s.n + p.stat_eps);
  r.ppo_kl = s.stat[2] / (s.n + p.stat_eps);
  require_finite_stats(r, fn);
  return r;
}
}  // namespace detail

/// Clipped PPO policy loss. `dlogp` (optional) receives d loss / d logp.
/// `weights` (optional, detached) multiplies each token's loss: truncated
/// importance-sampling corrections for rollout/training mismatch. One pass
/// of the CPU objective engine (backend/cpu/objective.hpp).
template <class Tag, class T, class M>
requires backend<Tag> policy_result policy_loss(Tag tag, tensor_view<T, 2, typename Tag::space> logp,
                                                in_view_in<T, 2, typename Tag::space> old_logp,
                                                in_view_in<T, 2, typename Tag::space> adv,
                                                tensor_view<M, 2, typename Tag::space> mask, const policy_params& p,
                                                out_view_in<T, 2, typename Tag::space> dlogp = {},
                                                in_view_in<T, 2, typename Tag::space> weights = {}) {
  constexpr const char* fn = "ppo::policy_loss";
  using S = typename Tag::space;
  [[maybe_unused]] const engine::op_scope scope(tag);
  detail::check_policy_shapes(fn, logp, old_logp, adv, mask);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  detail::check_weights_shape(fn, logp, weights);
  check_policy_params(p, fn);
  using V = value_t<T>;
  const rules::policy_token<strided2<V>> f{strided(logp),
                                           strided(old_logp),
                                           strided(adv),
                                           strided(weights),
                                           {p.clip_low, p.clip_high, p.dual_clip, p.log_ratio_clamp},
                                           stat_rules(p)};
  const auto s = engine::run<1, 3>(
      tag, fn, f, mask, p.agg, std::array<tensor_view<V, 2, S>, 1>{dlogp},
      engine::inputs<V, 4, S>{
          tag.check_finite, {"log_prob", "old_log_prob", "advantages", "weights"}, {logp, old_logp, adv, weights}});
  return detail::policy_from(s, p, fn);
}

// ---------------------------------------------------------------------------
// Value loss

RLHF_NAMED_ENUM(value_clip_style, (max_of_both, "max_of_both"), (clipped_only, "clipped_only"));

struct value_params {
  double clip = 0.2;  ///< clip range around the old values; INFINITY = no clip
  value_clip_style style = value_clip_style::max_of_both;
  double scale = 0.5;  ///< the 0.5 of 0.5 * (v - R)^2 (verl, OpenRLHF, TRL); SB3 uses 1
  double stat_eps = 1e-8;
  agg_params agg{};

  static value_params verl(double cliprange_value = 0.5, agg_mode m = agg_mode::token_mean) {
    value_params p;
    p.clip = cliprange_value;
    p.agg.mode = m;
    return p;
  }
  /// OpenRLHF ValueLoss(clip_eps, token_level_loss); clip_eps unset = INFINITY.
  static value_params openrlhf(double clip_eps = INFINITY, bool token_level_loss = true) {
    value_params p;
    p.clip = clip_eps;
    p.stat_eps = 0.0;
    p.agg.mode = token_level_loss ? agg_mode::token_mean : agg_mode::seq_mean_token_mean;
    return p;
  }
  /// Stable-Baselines3: F.mse_loss against the clipped prediction (clip_range_vf, or none).
  static value_params sb3(double clip_range_vf = INFINITY) {
    value_params p;
    p.clip = clip_range_vf;
    p.style = value_clip_style::clipped_only;
    p.scale = 1.0;
    p.stat_eps = 0.0;
    return p;
  }
};

inline void check_value_params(const value_params& p, const char* fn) {
  rlhf::detail::require_param(!std::isnan(p.clip) && p.clip >= 0, fn, "clip", "must be >= 0 (INFINITY = off)");
  rlhf::detail::require_nonneg_param(p.scale, fn, "scale");
  rlhf::detail::require_nonneg_param(p.stat_eps, fn, "stat_eps");
}

namespace detail {
/// The shape checks of value_loss (every backend).
template <class P, class V, class M, class O>
void check_value_shapes(const char* fn, const P& vpreds, const V& returns, const V& old_values, const M& mask,
                        const O& dvpreds) {
  rlhf::detail::require_same_shape(fn, "returns", returns, "vpreds", vpreds);
  rlhf::detail::require_same_shape(fn, "values", old_values, "vpreds", vpreds);
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "vpreds", vpreds);
  rlhf::detail::require_output(fn, "dvpreds", dvpreds, "vpreds", vpreds);
  rlhf::detail::require_nonempty(fn, "vpreds", vpreds);
}
}  // namespace detail

struct value_result {
  double loss = 0;      ///< vf_loss
  double clipfrac = 0;  ///< vf_clipfrac
};

namespace detail {
/// The value loss result from the engine's sums (both backends).
template <class Sums>
value_result value_from(const Sums& s, const value_params& p, const char* fn) {
  value_result r{};
  r.loss = p.scale * s.value;
  rlhf::detail::require_finite_result(r.loss, fn, "vpreds", "the squared error overflows");
  r.clipfrac = s.stat[0] / (s.n + p.stat_eps);
  rlhf::detail::require_finite_result(r.clipfrac, fn, "response_mask",
                                      "the clip fraction overflows: the mask sums to ~0 (weights?)");
  return r;
}
}  // namespace detail

/// Clipped value loss; `dvpreds` (optional) receives d loss / d vpreds
/// (times `grad_coef`: the combined loss's vf_coef, applied in the pass).
template <class Tag, class T, class M>
requires backend<Tag> value_result value_loss(Tag tag, tensor_view<T, 2, typename Tag::space> vpreds,
                                              in_view_in<T, 2, typename Tag::space> returns,
                                              in_view_in<T, 2, typename Tag::space> old_values,
                                              tensor_view<M, 2, typename Tag::space> mask, const value_params& p,
                                              out_view_in<T, 2, typename Tag::space> dvpreds = {},
                                              double grad_coef = 1.0) {
  constexpr const char* fn = "ppo::value_loss";
  using S = typename Tag::space;
  [[maybe_unused]] const engine::op_scope scope(tag);
  detail::check_value_shapes(fn, vpreds, returns, old_values, mask, dvpreds);
  check_value_params(p, fn);
  using V = value_t<T>;
  const rules::value_token<strided2<V>> f{strided(vpreds), strided(returns), strided(old_values), p.clip,
                                          p.style == value_clip_style::clipped_only};
  const auto s = engine::run<1, 1>(
      tag, fn, f, mask, p.agg, std::array<tensor_view<V, 2, S>, 1>{dvpreds},
      engine::inputs<V, 3, S>{tag.check_finite, {"vpreds", "returns", "values"}, {vpreds, returns, old_values}},
      {p.scale * grad_coef});
  return detail::value_from(s, p, fn);
}

// ---------------------------------------------------------------------------
// Entropy bonus and the combined actor loss

struct entropy_result {
  double loss = 0;     ///< -coef * agg(H)
  double entropy = 0;  ///< agg(H), the logged actor/entropy
};

/// Entropy bonus -coef * agg(entropy); `dentropy` receives its gradient
/// (accumulated when `accumulate`).
template <class Tag, class T, class M>
requires backend<Tag> entropy_result entropy_bonus(Tag tag, tensor_view<T, 2, typename Tag::space> entropy,
                                                   tensor_view<M, 2, typename Tag::space> mask, double coef,
                                                   const agg_params& agg,
                                                   out_view_in<T, 2, typename Tag::space> dentropy = {},
                                                   bool accumulate = false) {
  constexpr const char* fn = "ppo::entropy_bonus";
  using S = typename Tag::space;
  [[maybe_unused]] const engine::op_scope scope(tag);
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "entropy", entropy);
  rlhf::detail::require_output(fn, "dentropy", dentropy, "entropy", entropy);
  rlhf::detail::require_finite_param(coef, fn, "entropy_coef");
  rlhf::detail::require_nonempty(fn, "entropy", entropy);
  using V = value_t<T>;
  const auto s = engine::run<1, 0>(tag, fn, rules::identity_token<strided2<V>>{strided(entropy)}, mask, agg,
                                   std::array<tensor_view<V, 2, S>, 1>{dentropy},
                                   engine::inputs<V, 1, S>{tag.check_finite, {"entropy"}, {entropy}},
                                   {-coef, accumulate, "loss_mask", false});
  return {-coef * s.value, s.value};
}

struct actor_params {
  policy_params policy{};
  double entropy_coef = 0.0;  ///< verl entropy_coeff, OpenRLHF entropy_loss_coef
  double kl_coef = 0.0;       ///< KL-in-loss coefficient (verl kl_loss_coef); 0 = KL in reward
  kl_params kl = kl_params::verl(kl_estimator::k3);
};

struct actor_result {
  double loss = 0;  ///< pg_loss - entropy_coef * agg(H) + kl_coef * agg(KL)
  policy_result policy;
  double entropy = 0;  ///< agg(H) (0 without entropy input)
  double kl = 0;       ///< agg(KL) (0 without ref_logp)
};

namespace detail {
/// The actor's loss from its parts, for both backends: each backend passes
/// its own policy loss, entropy bonus and KL-in-loss (the composition is
/// written once; rlhf/backend/cuda/objectives.cuh calls it with the device ops).
template <class Tag, class LP, class In, class Mask, class Out, class PolicyLoss, class EntropyBonus, class KLLoss>
actor_result compose_actor(Tag tag, LP logp, In old_logp, In adv, Mask mask, In entropy, In ref_logp,
                           const actor_params& p, Out dlogp, Out dentropy, In weights, PolicyLoss&& policy,
                           EntropyBonus&& bonus, KLLoss&& kl_loss) {
  constexpr const char* fn = "ppo::actor_loss";
  actor_result r{};
  r.policy = policy(tag, logp, old_logp, adv, mask, p.policy, dlogp, weights);
  r.loss = r.policy.loss;
  if (!entropy.null()) {
    rlhf::detail::require_same_shape(fn, "entropy", entropy, "log_prob", logp);
    const auto e = bonus(tag, entropy, mask, p.entropy_coef, p.policy.agg, dentropy);
    r.entropy = e.entropy;
    r.loss += e.loss;
  } else if (p.entropy_coef != 0) {
    rlhf::detail::fail(error_kind::param, fn, "entropy", "is required when entropy_coef != 0");
  }
  if (!ref_logp.null()) {
    const auto k = kl_loss(tag, logp, ref_logp, mask, p.kl_coef, p.kl, p.policy.agg, dlogp, true);
    r.kl = k.mean_kl;
    r.loss += k.loss;
  } else if (p.kl_coef != 0) {
    rlhf::detail::fail(error_kind::param, fn, "ref_log_prob", "is required when kl_coef != 0 (KL in the loss)");
  }
  return r;
}
}  // namespace detail

/// The actor's loss as verl's dp_actor composes it. `entropy` and `ref_logp`
/// may be null views (no bonus / no KL term). Gradients go to `dlogp` and
/// `dentropy` (optional). `weights` (optional, [B, T]): per-token weights of
/// the policy loss (ppo::policy_loss's: rollout-correction IS weights).
/// The gradients may be written over the inputs (`dlogp` over `logp`, in
/// place): an output that shares memory with an input is computed in a
/// buffer of its own and copied at the end (the passes re-read the inputs).
/// Any host backend (the tag's engine runs the three passes); the device's
/// overload is in backend/cuda/objectives.cuh.
template <class Tag, class T, class M>
requires(backend<Tag>&& std::is_same_v<typename Tag::space, host_space>) actor_result
    actor_loss(Tag tag, tensor_view<T, 2> logp, in_view<T, 2> old_logp, in_view<T, 2> adv, tensor_view<M, 2> mask,
               in_view<T, 2> entropy, in_view<T, 2> ref_logp, const actor_params& p, out_view<T, 2> dlogp = {},
               out_view<T, 2> dentropy = {}, in_view<T, 2> weights = {}) {
  constexpr const char* fn = "ppo::actor_loss";
  [[maybe_unused]] const engine::op_scope scope(tag);
  auto run = [&](out_view<T, 2> dl, out_view<T, 2> de) {
    return detail::compose_actor(
        tag, logp, old_logp, adv, mask, entropy, ref_logp, p, dl, de, weights,
        [](auto&&... a) { return policy_loss(a...); }, [](auto&&... a) { return entropy_bonus(a...); },
        [](auto&&... a) { return kl::loss(a...); });
  };
  auto reads = [&](const out_view<T, 2>& o) {
    using rlhf::detail::overlaps;
    return overlaps(o, logp) || overlaps(o, old_logp) || overlaps(o, adv) || overlaps(o, mask) ||
           overlaps(o, entropy) || overlaps(o, ref_logp) || overlaps(o, weights);
  };
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  rlhf::detail::require_output(fn, "dentropy", dentropy, "log_prob", logp);
  rlhf::detail::require_disjoint(fn, "dentropy", dentropy, "dlogp", dlogp);
  const bool own_dl = reads(dlogp), own_de = reads(dentropy);
  if (!own_dl && !own_de) return run(dlogp, dentropy);
  using V = value_t<T>;
  tensor<V, 2> bl(own_dl ? logp.shape() : std::array<index_t, 2>{0, 0});
  tensor<V, 2> be(own_de ? logp.shape() : std::array<index_t, 2>{0, 0});
  const auto r = run(own_dl ? bl.view() : dlogp, own_de ? be.view() : dentropy);
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) {
      if (own_dl) dlogp(b, t) = bl(b, t);
      if (own_de) dentropy(b, t) = be(b, t);
    }
  return r;
}

struct combined_params {
  actor_params actor{};
  value_params value{};
  double vf_coef = 0.5;
};

struct combined_result {
  double loss = 0;  ///< actor loss + vf_coef * value loss
  actor_result actor;
  value_result value;
};

/// Actor and critic in one loss (shared-trunk models, SB3/TRL style).
template <class T, class M>
combined_result combined_loss(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> old_logp, in_view<T, 2> adv,
                              tensor_view<M, 2> mask, in_view<T, 2> entropy, in_view<T, 2> ref_logp,
                              in_view<T, 2> vpreds, in_view<T, 2> returns, in_view<T, 2> old_values,
                              const combined_params& p, out_view<T, 2> dlogp = {}, out_view<T, 2> dentropy = {},
                              out_view<T, 2> dvpreds = {}) {
  constexpr const char* fn = "ppo::combined_loss";
  rlhf::detail::require_nonneg_param(p.vf_coef, fn, "vf_coef");
  // the actor's gradients are written before the value loss reads its inputs, and the reverse
  for (const auto& [name, o] : {std::pair<const char*, out_view<T, 2>>{"dlogp", dlogp}, {"dentropy", dentropy}}) {
    rlhf::detail::require_disjoint(fn, name, o, "vpreds", vpreds);
    rlhf::detail::require_disjoint(fn, name, o, "returns", returns);
    rlhf::detail::require_disjoint(fn, name, o, "old_values", old_values);
    rlhf::detail::require_disjoint(fn, name, o, "dvpreds", dvpreds);
  }
  combined_result r{};
  r.actor = actor_loss(tag, logp, old_logp, adv, mask, entropy, ref_logp, p.actor, dlogp, dentropy);
  r.value = value_loss(tag, vpreds, returns, old_values, mask, p.value, dvpreds, p.vf_coef);
  r.loss = r.actor.loss + p.vf_coef * r.value.loss;
  return r;
}

}  // namespace rlhf::ppo
