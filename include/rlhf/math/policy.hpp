// rlhf++ — per-token terms of the PPO-family policy-loss variants.
//
//   SAPO  (soft adaptive gate):  loss = -A * sigmoid(tau (r - 1)) * 4 / tau
//   CISPO (clipped IS weight):   loss = -sg(clamp(r, 1-lo, 1+hi)) * A * logp
//   DRO   (quadratic):           loss = -(logp A - beta/2 (logp - old)^2)
//   DPPO  (trust region on p):   loss = -A sg(min(r, c)) logp * valid
// with r = exp(logp - old_logp); tau = tau_pos for A > 0, tau_neg otherwise.
// References: verl core_algos compute_policy_loss_{sapo,cispo,dro,dppo_tv,dppo_kl}.
#pragma once

#include <cmath>

#include "../core/numerics.hpp"
#include "clamp.hpp"

namespace rlhf::math {

RLHF_HD inline dual sapo_token(double logp, double old_logp, double adv, double tau_pos, double tau_neg) {
  const double r = std::exp(logp - old_logp);
  const double tau = adv > 0 ? tau_pos : tau_neg;
  const double s = num::sigmoid(tau * (r - 1.0));
  const double gate = s * 4.0 / tau;
  // d gate / d logp = 4 s (1 - s) r
  return {-gate * adv, -adv * 4.0 * s * (1.0 - s) * r};
}

struct cispo_term {
  double loss, dlogp;
  bool clipped;
};

RLHF_HD inline cispo_term cispo_token(double logp, double old_logp, double adv, double lo, double hi,
                                      double log_ratio_clamp) {
  double d = logp - old_logp;
  d = d < -log_ratio_clamp ? -log_ratio_clamp : (d > log_ratio_clamp ? log_ratio_clamp : d);
  const double r = std::exp(d);
  const double rc = r < 1.0 - lo ? 1.0 - lo : (r > 1.0 + hi ? 1.0 + hi : r);
  return {-rc * adv * logp, -rc * adv, r != rc};
}

RLHF_HD inline dual dro_token(double logp, double old_logp, double adv, double beta) {
  const double d = logp - old_logp;
  return {-(logp * adv - 0.5 * beta * d * d), -(adv - beta * d)};
}

/// DPPO validity masks (detached): total-variation or binary-KL trust region
/// on p = exp(logp), q = exp(old_logp).
RLHF_HD inline bool dppo_valid(double logp, double old_logp, double adv, double lo, double hi, bool kl_region) {
  const double p = std::exp(logp), q = std::exp(old_logp);
  bool pos, neg;
  if (!kl_region) {
    pos = (p - q) <= hi;
    neg = (p - q) >= -lo;
  } else {
    const double kl = q * (old_logp - logp) + (1.0 - q) * std::log((1.0 - q + 1e-8) / (1.0 - p + 1e-8));
    pos = (kl <= hi) || (p <= q);
    neg = (kl <= lo) || (p >= q);
  }
  return adv > 0 ? pos : neg;
}

/// DPPO's token: loss = coef logp with the detached coef = -A min(r, cap) valid.
struct dppo_term {
  double coef;       ///< d loss / d logp
  double log_ratio;  ///< clamped log ratio (its negation is ppo_kl)
  double ratio;      ///< exp(log_ratio)
  bool valid;        ///< inside the trust region
};
RLHF_HD inline dppo_term dppo_token(double logp, double old_logp, double adv, double lo, double hi, bool kl_region,
                                    double log_ratio_clamp, double cap) {
  const double d = logp - old_logp;
  const double lr = d < -log_ratio_clamp ? -log_ratio_clamp : (d > log_ratio_clamp ? log_ratio_clamp : d);
  const double r = std::exp(lr);
  const bool valid = dppo_valid(logp, old_logp, adv, lo, hi, kl_region);
  return {-adv * (r < cap ? r : cap) * (valid ? 1.0 : 0.0), lr, r, valid};
}

/// Geometric-mean PPO's token: sgn(A) min(sgn(A) d, sgn(A) clamp(d, -lo, hi)),
/// its derivative by logp, and whether the clamp moved d.
struct geo_term {
  double value, dlogp;
  bool clipped;
};
RLHF_HD inline geo_term geo_mean_token(double logp, double old_logp, double adv, double lo, double hi) {
  const double sa = sign(adv), d = logp - old_logp;
  const dual dc = clamp(dual{d, 1.0}, -lo, hi);
  const dual mn = minimum(dual{sa * d, sa}, dual{sa * dc.v, sa * dc.d});
  return {sa * mn.v, sa * mn.d, d != dc.v};
}

/// GSPO's clip statistic: the sequence ratio exp(min(s, s_max)) is clipped for advantage A.
RLHF_HD inline bool gspo_clipped(double s, double s_max, double adv, double lo, double hi) {
  const double sr = std::exp(s < s_max ? s : s_max);
  const double rc = sr < 1.0 - lo ? 1.0 - lo : (sr > 1.0 + hi ? 1.0 + hi : sr);
  return -adv * rc > -adv * sr;
}

}  // namespace rlhf::math
