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

}  // namespace rlhf::math
