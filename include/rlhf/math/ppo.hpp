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

namespace rlhf::math {

struct ppo_clip_params {
  double clip_low, clip_high;
  double dual_clip;        ///< INFINITY = off
  double log_ratio_clamp;  ///< INFINITY = off
};

struct ppo_clip_term {
  double loss, dlogp;
  double log_ratio;     ///< d after the log-ratio clamp
  bool clipped;         ///< l2 > l1: the clip is active
  bool clipped_lower;   ///< A < 0 and c1 > -A c: the dual clip is active
};

/// The clipped term from a log ratio already carrying its derivative
/// (d.d = d log_ratio / d logp): shared by token-level PPO and GSPO.
RLHF_HD inline ppo_clip_term ppo_clip_log_ratio(dual d, double adv, const ppo_clip_params& p) {
  const double e = std::exp(d.v);
  const dual r{e, e * d.d};
  const dual l1{-adv * r.v, -adv * r.d};
  const dual rc = clamp(r, 1.0 - p.clip_low, 1.0 + p.clip_high);
  const dual l2{-adv * rc.v, -adv * rc.d};
  const dual c1 = maximum(l1, l2);
  ppo_clip_term out{c1.v, c1.d, d.v, l2.v > l1.v, false};
  if (adv < 0 && p.dual_clip < INFINITY) {
    const dual l3{-adv * p.dual_clip, 0.0};
    out.clipped_lower = c1.v > l3.v;
    const dual c2 = minimum(l3, c1);
    out.loss = c2.v;
    out.dlogp = c2.d;
  }
  return out;
}

RLHF_HD inline ppo_clip_term ppo_clip(double logp, double old_logp, double adv, const ppo_clip_params& p) {
  return ppo_clip_log_ratio(clamp(dual{logp - old_logp, 1.0}, -p.log_ratio_clamp, p.log_ratio_clamp), adv, p);
}

/// The statistics verl/OpenRLHF/TRL/SB3 log per token, by their rules.
struct ppo_stat_rules {
  bool ratio_outside;    ///< clipfrac = |r - 1| > max(eps_low, eps_high) (SB3), else "the clip is active" (verl)
  int approx_kl;         ///< 0: -d (verl), 1: d^2 / 2 (TRL), 2: (e^d - 1) - d (SB3)
  bool kl_stat_clamped;  ///< d from the clamped log ratio (verl) or the raw one
  double clip_max;       ///< max(eps_low, eps_high)
};
struct ppo_token_stats {
  double clipped, clipped_lower, kl;
};
RLHF_HD inline ppo_token_stats ppo_stats(const ppo_clip_term& term, double raw_log_ratio, const ppo_stat_rules& r) {
  const double d = r.kl_stat_clamped ? term.log_ratio : raw_log_ratio;
  ppo_token_stats s{};
  s.clipped = r.ratio_outside ? (std::fabs(std::exp(term.log_ratio) - 1.0) > r.clip_max ? 1.0 : 0.0)
                              : (term.clipped ? 1.0 : 0.0);
  s.clipped_lower = term.clipped_lower ? 1.0 : 0.0;
  s.kl = r.approx_kl == 0 ? -d : r.approx_kl == 1 ? 0.5 * d * d : (std::exp(d) - 1.0) - d;
  return s;
}

struct value_clip_term {
  double loss, dv;
  bool clipped;  ///< the clipped branch was taken (strictly larger)
};

/// clipped_only = false: max(unclipped, clipped) (verl, OpenRLHF, TRL);
/// true: the clipped prediction alone (Stable-Baselines3).
RLHF_HD inline value_clip_term value_clip(double vpred, double old_value, double ret, double clip,
                                          bool clipped_only) {
  const dual v{vpred, 1.0};
  const dual vc = maximum(minimum(v, dual{old_value + clip, 0.0}), dual{old_value - clip, 0.0});
  const dual l1{(v.v - ret) * (v.v - ret), 2.0 * (v.v - ret)};
  const dual l2{(vc.v - ret) * (vc.v - ret), 2.0 * (vc.v - ret) * vc.d};
  if (clipped_only) return {l2.v, l2.d, vc.v != v.v};
  const dual m = maximum(l1, l2);
  return {m.v, m.d, l2.v > l1.v};
}

}  // namespace rlhf::math
