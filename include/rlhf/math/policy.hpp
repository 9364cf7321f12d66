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
#include "real.hpp"

namespace rlhf::math {

/// sigmoid(x) = 1 / (1 + exp(-x)), stable on both tails (num::sigmoid's
/// two branches as a select: the exp of -|x| never overflows).
template <class R>
RLHF_HD_INLINE R rsigmoid(const R& x) {
  using S = scalar_of<R>;
  const auto pos = x >= S(0);
  const R e = rexp(sel(pos, -x, x));
  return sel(pos, S(1) / (S(1) + e), e / (S(1) + e));
}

template <class R>
RLHF_HD_INLINE dual_t<R> sapo_token(const R& logp, const R& old_logp, const R& adv, double tau_pos, double tau_neg) {
  using S = scalar_of<R>;
  const R r = rexp(logp - old_logp);
  const R tau = sel(adv > S(0), lit<R>(tau_pos), lit<R>(tau_neg));
  const R s = rsigmoid(tau * (r - S(1)));
  const R gate = s * S(4) / tau;
  // d gate / d logp = 4 s (1 - s) r
  return {-gate * adv, -adv * S(4) * s * (S(1) - s) * r};
}

template <class R = double>
struct cispo_term {
  R loss, dlogp;
  mask_of<R> clipped;
};

template <class R>
RLHF_HD_INLINE cispo_term<R> cispo_token(const R& logp, const R& old_logp, const R& adv, double lo, double hi,
                                         double log_ratio_clamp) {
  const R d = clamp(dual_t<R>{logp - old_logp, R{}}, -log_ratio_clamp, log_ratio_clamp).v;
  const R r = rexp(d);
  const R rc = clamp(dual_t<R>{r, R{}}, 1.0 - lo, 1.0 + hi).v;
  return {-rc * adv * logp, -rc * adv, r != rc};
}

template <class R>
RLHF_HD_INLINE dual_t<R> dro_token(const R& logp, const R& old_logp, const R& adv, double beta) {
  using S = scalar_of<R>;
  const R d = logp - old_logp;
  const S bt = static_cast<S>(beta);
  return {-(logp * adv - S(0.5) * bt * d * d), -(adv - bt * d)};
}

/// DPPO validity masks (detached): total-variation or binary-KL trust region
/// on p = exp(logp), q = exp(old_logp).
template <class R>
RLHF_HD_INLINE mask_of<R> dppo_valid(const R& logp, const R& old_logp, const R& adv, double lo, double hi,
                                     bool kl_region) {
  using S = scalar_of<R>;
  const R p = rexp(logp), q = rexp(old_logp);
  const S l = static_cast<S>(lo), h = static_cast<S>(hi);
  mask_of<R> pos, neg;
  if (!kl_region) {
    pos = (p - q) <= h;
    neg = (p - q) >= -l;
  } else {
    const R kl = q * (old_logp - logp) + (S(1) - q) * rlog((S(1) - q + S(1e-8)) / (S(1) - p + S(1e-8)));
    pos = (kl <= h) | (p <= q);
    neg = (kl <= l) | (p >= q);
  }
  return sel(adv > S(0), pos, neg);
}

/// DPPO's token: loss = coef logp with the detached coef = -A min(r, cap) valid.
template <class R = double>
struct dppo_term {
  R coef;            ///< d loss / d logp
  R log_ratio;       ///< clamped log ratio (its negation is ppo_kl)
  R ratio;           ///< exp(log_ratio)
  mask_of<R> valid;  ///< inside the trust region
};
template <class R>
RLHF_HD_INLINE dppo_term<R> dppo_token(const R& logp, const R& old_logp, const R& adv, double lo, double hi,
                                       bool kl_region, double log_ratio_clamp, double cap) {
  using S = scalar_of<R>;
  const R lr = clamp(dual_t<R>{logp - old_logp, R{}}, -log_ratio_clamp, log_ratio_clamp).v;
  const R r = rexp(lr);
  const auto valid = dppo_valid(logp, old_logp, adv, lo, hi, kl_region);
  const S c = static_cast<S>(cap);
  return {-adv * sel(r < c, r, lit<R>(cap)) * indicator<R>(valid), lr, r, valid};
}

/// Geometric-mean PPO's token: sgn(A) min(sgn(A) d, sgn(A) clamp(d, -lo, hi)),
/// its derivative by logp, and whether the clamp moved d.
template <class R = double>
struct geo_term {
  R value, dlogp;
  mask_of<R> clipped;
};
template <class R>
RLHF_HD_INLINE geo_term<R> geo_mean_token(const R& logp, const R& old_logp, const R& adv, double lo, double hi) {
  const R sa = sign(adv), d = logp - old_logp;
  const dual_t<R> dc = clamp(dual_t<R>{d, lit<R>(1.0)}, -lo, hi);
  const dual_t<R> mn = minimum(dual_t<R>{sa * d, sa}, dual_t<R>{sa * dc.v, sa * dc.d});
  return {sa * mn.v, sa * mn.d, d != dc.v};
}

/// GSPO's clip statistic: the sequence ratio exp(min(s, s_max)) is clipped for advantage A.
template <class R>
RLHF_HD_INLINE mask_of<R> gspo_clipped(double s, double s_max, const R& adv, double lo, double hi) {
  using S = scalar_of<R>;
  const double sr = std::exp(s < s_max ? s : s_max);
  const double rc = sr < 1.0 - lo ? 1.0 - lo : (sr > 1.0 + hi ? 1.0 + hi : sr);
  return -adv * static_cast<S>(rc) > -adv * static_cast<S>(sr);
}

}  // namespace rlhf::math
