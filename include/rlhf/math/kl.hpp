// rlhf++ — per-token KL estimators between the policy and the reference.
//
// With d = log pi(y) - log pi_ref(y) (optionally clamped to [-c, c]):
//   k1  = d                       (unbiased, high variance)
//   abs = |d|
//   k2  = d^2 / 2                 ("mse")
//   k3  = exp(-d) + d - 1         ("low_var_kl", Schulman's estimator; >= 0)
// then optionally clamped to [-C, C]. Straight-through variants ("k1+", ...)
// keep the value of the estimator and use the k2 gradient, d.
// References: verl core_algos.kl_penalty (k3: c = 20, C = 10),
// OpenRLHF models/utils.compute_approx_kl (every estimator: C = 10).
#pragma once

#include <cmath>

#include "../core/vocabulary.hpp"
#include "clamp.hpp"
#include "real.hpp"

namespace rlhf {

/// Numeric conventions of a KL estimate; plain data, usable on device.
struct kl_params {
  kl_estimator estimator = kl_estimator::k3;
  bool straight_through = false;      ///< value of the estimator, gradient of k2
  double log_ratio_clamp = INFINITY;  ///< clamp of log pi - log pi_ref before the estimator
  double value_clamp = INFINITY;      ///< clamp of the estimate to [-value_clamp, value_clamp]

  /// verl kl_penalty: k3 clamps the log ratio to +-20 and the estimate to +-10;
  /// the other estimators are unclamped.
  static constexpr kl_params verl(kl_estimator e, bool straight_through = false) {
    return e == kl_estimator::k3 ? kl_params{e, straight_through, 20.0, 10.0}
                                 : kl_params{e, straight_through, INFINITY, INFINITY};
  }
  /// OpenRLHF compute_approx_kl: every estimator clamped to +-10, no log-ratio clamp.
  static constexpr kl_params openrlhf(kl_estimator e) { return {e, false, INFINITY, 10.0}; }
  /// TRL GRPO (beta > 0): k3 without clamps.
  static constexpr kl_params trl_grpo() { return {kl_estimator::k3, false, INFINITY, INFINITY}; }
};

namespace math {

template <class R = double>
struct kl_term {
  R value;  ///< the estimate
  R dlogp;  ///< d value / d log pi (the reference is frozen)
};

template <class R>
RLHF_HD_INLINE kl_term<R> kl_token(const R& logp, const R& ref_logp, const kl_params& p) {
  using S = scalar_of<R>;
  const R raw = logp - ref_logp;
  const dual_t<R> d = clamp(dual_t<R>{raw, lit<R>(1.0)}, -p.log_ratio_clamp, p.log_ratio_clamp);
  dual_t<R> k{};
  switch (p.estimator) {
    case kl_estimator::k1:
      k = d;
      break;
    case kl_estimator::abs:
      k = {rabs(d.v), sign(d.v) * d.d};
      break;
    case kl_estimator::k2:
      k = {S(0.5) * d.v * d.v, d.v * d.d};
      break;
    case kl_estimator::k3: {
      // verl's order of operations: x = ref - logp; exp(x) - x - 1.
      const R x = -d.v;
      const R e = rexp(x);
      k = {e - x - S(1), (S(1) - e) * d.d};
      break;
    }
  }
  k = clamp(k, -p.value_clamp, p.value_clamp);
  if (p.straight_through) k.d = raw;
  return {k.v, k.d};
}

}  // namespace math
}  // namespace rlhf
