// rlhf++ — the per-token PPO terms, written once for every backend.
//
// Clipped surrogate (Schulman et al. 2017), asymmetric clip (DAPO
// "clip-higher"), dual clip for negative advantages (Ye et al. 2020):
//   d  = clamp(logp - old_logp, -c_lr, c_lr),  r = exp(d)
//   l1 = -A r,  l2 = -A clamp(r, 1 - eps_low, 1 + eps_high),  c1 = max(l1, l2)
//   A < 0 and dual clip c: loss = min(-A c, c1), else loss = c1
// Value loss (PPO2 style): max((v - R)^2, (clip(v, v_old +- c) - R)^2).
#pragma once

#include <cmath>

#include "clamp.hpp"
#include "real.hpp"

namespace rlhf::math {

struct ppo_clip_params {
  double clip_low, clip_high;
  double dual_clip;        ///< INFINITY = off
  double log_ratio_clamp;  ///< INFINITY = off
};

template <class R = double>
struct ppo_clip_term {
  R loss, dlogp;
  R log_ratio;               ///< d after the log-ratio clamp
  R ratio;                   ///< exp(log_ratio)
  mask_of<R> clipped;        ///< l2 > l1: the clip is active
  mask_of<R> clipped_lower;  ///< A < 0 and c1 > -A c: the dual clip is active
};

/// The clipped term from a log ratio already carrying its derivative
/// (d.d = d log_ratio / d logp): shared by token-level PPO and GSPO.
template <class R>
RLHF_HD_INLINE ppo_clip_term<R> ppo_clip_log_ratio(const dual_t<R>& d, const R& adv, const ppo_clip_params& p) {
  using S = scalar_of<R>;
  const R e = rexp(d.v);
  const dual_t<R> r{e, e * d.d};
  const dual_t<R> l1{-adv * r.v, -adv * r.d};
  const dual_t<R> rc = clamp(r, 1.0 - p.clip_low, 1.0 + p.clip_high);
  const dual_t<R> l2{-adv * rc.v, -adv * rc.d};
  const dual_t<R> c1 = maximum(l1, l2);
  ppo_clip_term<R> out{c1.v, c1.d, d.v, e, l2.v > l1.v, R{} != R{}};
  if (p.dual_clip < INFINITY) {
    const dual_t<R> l3{-adv * static_cast<S>(p.dual_clip), R{}};
    const auto neg = adv < R{};
    out.clipped_lower = neg & (c1.v > l3.v);
    const dual_t<R> c2 = minimum(l3, c1);
    out.loss = sel(neg, c2.v, c1.v);
    out.dlogp = sel(neg, c2.d, c1.d);
  }
  return out;
}

template <class R>
RLHF_HD_INLINE ppo_clip_term<R> ppo_clip(const R& logp, const R& old_logp, const R& adv, const ppo_clip_params& p) {
  return ppo_clip_log_ratio(clamp(dual_t<R>{logp - old_logp, lit<R>(1.0)}, -p.log_ratio_clamp, p.log_ratio_clamp), adv,
                            p);
}

/// The statistics verl/OpenRLHF/TRL/SB3 log per token, by their rules.
struct ppo_stat_rules {
  bool ratio_outside;    ///< clipfrac = |r - 1| > max(eps_low, eps_high) (SB3), else "the clip is active" (verl)
  int approx_kl;         ///< 0: -d (verl), 1: d^2 / 2 (TRL), 2: (e^d - 1) - d (SB3)
  bool kl_stat_clamped;  ///< d from the clamped log ratio (verl) or the raw one
  double clip_max;       ///< max(eps_low, eps_high)
};
template <class R = double>
struct ppo_token_stats {
  R clipped, clipped_lower, kl;
};
template <class R>
RLHF_HD_INLINE ppo_token_stats<R> ppo_stats(const ppo_clip_term<R>& term, const R& raw_log_ratio,
                                            const ppo_stat_rules& r) {
  using S = scalar_of<R>;
  const R d = r.kl_stat_clamped ? term.log_ratio : raw_log_ratio;
  ppo_token_stats<R> s{};
  s.clipped =
      r.ratio_outside ? indicator<R>(rabs(term.ratio - S(1)) > static_cast<S>(r.clip_max)) : indicator<R>(term.clipped);
  s.clipped_lower = indicator<R>(term.clipped_lower);
  if (r.approx_kl == 0) {
    s.kl = -d;
  } else if (r.approx_kl == 1) {
    s.kl = S(0.5) * d * d;
  } else {
    // exp of the clamped log ratio is the term's ratio; only the raw one needs another exp
    const R e = r.kl_stat_clamped ? term.ratio : rexp(d);
    s.kl = (e - S(1)) - d;
  }
  return s;
}

template <class R = double>
struct value_clip_term {
  R loss, dv;
  mask_of<R> clipped;  ///< the clipped branch was taken (strictly larger)
};

/// clipped_only = false: max(unclipped, clipped) (verl, OpenRLHF, TRL);
/// true: the clipped prediction alone (Stable-Baselines3).
template <class R>
RLHF_HD_INLINE value_clip_term<R> value_clip(const R& vpred, const R& old_value, const R& ret, double clip,
                                             bool clipped_only) {
  using S = scalar_of<R>;
  const S c = static_cast<S>(clip);
  const dual_t<R> v{vpred, lit<R>(1.0)};
  const dual_t<R> vc = maximum(minimum(v, dual_t<R>{old_value + c, R{}}), dual_t<R>{old_value - c, R{}});
  const dual_t<R> l1{(v.v - ret) * (v.v - ret), S(2) * (v.v - ret)};
  const dual_t<R> l2{(vc.v - ret) * (vc.v - ret), S(2) * (vc.v - ret) * vc.d};
  if (clipped_only) return {l2.v, l2.d, vc.v != v.v};
  const dual_t<R> m = maximum(l1, l2);
  return {m.v, m.d, l2.v > l1.v};
}

}  // namespace rlhf::math
