// rlhf++ — A2C, as Stable-Baselines3 composes it (a2c/a2c.py A2C.train).
//
//   A'      = (A - mean A) / (std A + adv_eps)   if normalize_advantage (unbiased std)
//   L_pg    = -mean(A' logp)
//   L_vf    = mean((R - V)^2)                     (F.mse_loss: no 0.5)
//   L_ent   = -mean(H), or -mean(-logp) when the policy gives no entropy
//   L       = L_pg + ent_coef L_ent + vf_coef L_vf
// Means are over the valid tokens of a [B, T] mask (SB3's flat batch of N
// samples is B = 1, T = N, mask of ones).
#pragma once

#include <cmath>

#include "../ops/masked.hpp"

namespace rlhf::a2c {

struct params {
  double ent_coef = 0.0;
  double vf_coef = 0.5;
  bool normalize_advantage = false;
  double adv_eps = 1e-8;     ///< added to the std when normalizing (SB3)
  double value_scale = 1.0;  ///< SB3 mse (1.0); 0.5 for the 0.5 (R - V)^2 convention

  /// Stable-Baselines3 A2C defaults.
  static constexpr params sb3() { return {0.0, 0.5, false, 1e-8, 1.0}; }
};

struct result {
  double loss = 0, policy_loss = 0, value_loss = 0, entropy_loss = 0;
};

namespace detail {
/// The shape and parameter checks of a2c::loss (every backend).
template <class L, class V, class M, class O>
void check_shapes(const char* fn, const L& logp, const V& values, const V& advantages, const V& returns,
                  const V& entropy, const M& mask, const O& dlogp, const O& dvalues, const O& dentropy) {
  using rlhf::detail::require_same_shape;
  require_same_shape(fn, "values", values, "log_prob", logp);
  require_same_shape(fn, "advantages", advantages, "log_prob", logp);
  require_same_shape(fn, "returns", returns, "log_prob", logp);
  require_same_shape(fn, "mask", mask, "log_prob", logp);
  if (!entropy.null()) require_same_shape(fn, "entropy", entropy, "log_prob", logp);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  rlhf::detail::require_output(fn, "dvalues", dvalues, "log_prob", logp);
  rlhf::detail::require_output(fn, "dentropy", dentropy, "log_prob", logp);
  rlhf::detail::require_nonempty(fn, "log_prob", logp);
}
inline void check_params(const params& p, const char* fn) {
  rlhf::detail::require_finite_param(p.ent_coef, fn, "ent_coef");
  rlhf::detail::require_nonneg_param(p.vf_coef, fn, "vf_coef");
  rlhf::detail::require_nonneg_param(p.adv_eps, fn, "adv_eps");
  rlhf::detail::require_nonneg_param(p.value_scale, fn, "value_scale");
}
}  // namespace detail

/// `entropy` may be a null view (then -mean(-logp) is the entropy term and
/// logp receives its gradient). Gradients go to the optional outputs.
template <class T, class M>
result loss(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> values, in_view<T, 2> advantages,
            in_view<T, 2> returns, in_view<T, 2> entropy, tensor_view<M, 2> mask, const params& p,
            out_view<T, 2> dlogp = {}, out_view<T, 2> dvalues = {}, out_view<T, 2> dentropy = {}) {
  constexpr const char* fn = "a2c::loss";
  detail::check_shapes(fn, logp, values, advantages, returns, entropy, mask, dlogp, dvalues, dentropy);
  rlhf::detail::require_finite(tag, fn, "advantages", advantages);
  rlhf::detail::require_finite(tag, fn, "returns", returns);
  rlhf::detail::require_finite(tag, fn, "log_prob", logp);
  rlhf::detail::require_finite(tag, fn, "values", values);
  if (!entropy.null()) rlhf::detail::require_finite(tag, fn, "entropy", entropy);
  rlhf::detail::require_mask(fn, "mask", mask);
  detail::check_params(p, fn);

  const index_t B = logp.extent(0), T_ = logp.extent(1);
  const double n = ops::mask_count(tag, mask);
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid sample");
  double mu = 0, sd = 1;
  if (p.normalize_advantage) {
    if (!(n > 1))
      rlhf::detail::fail(error_kind::empty, fn, "advantages",
                         "has a single sample: normalize_advantage needs at least 2 (std undefined)");
    const auto st = ops::masked_var(tag.unchecked(), advantages, mask, true, 0.0);
    mu = st.mean;
    sd = std::sqrt(st.var) + p.adv_eps;
  }
  auto adv = [&](index_t b, index_t t) {
    const double a = static_cast<double>(advantages(b, t));
    return p.normalize_advantage ? (a - mu) / sd : a;
  };
  double spg = 0, svf = 0, sent = 0;
  cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
    const double m = static_cast<double>(mask(b, t));
    if (m == 0) return;
    const double lp = static_cast<double>(logp(b, t));
    spg += m * adv(b, t) * lp;
    const double e = static_cast<double>(returns(b, t)) - static_cast<double>(values(b, t));
    svf += m * e * e;
    sent += m * (entropy.null() ? -lp : static_cast<double>(entropy(b, t)));
  });
  result r{};
  r.policy_loss = -spg / n;
  r.value_loss = p.value_scale * svf / n;
  r.entropy_loss = -sent / n;
  r.loss = r.policy_loss + p.ent_coef * r.entropy_loss + p.vf_coef * r.value_loss;
  rlhf::detail::require_finite_result(r.loss, fn, "values", "the loss overflows (extreme inputs)");
  cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
    const double m = static_cast<double>(mask(b, t)) / n;
    if (!dlogp.null())
      dlogp(b, t) = static_cast<value_t<T>>(m * (-adv(b, t) + (entropy.null() ? p.ent_coef : 0.0)));
    if (!dvalues.null())
      dvalues(b, t) = static_cast<value_t<T>>(
          m * p.vf_coef * p.value_scale * -2.0 *
          (static_cast<double>(returns(b, t)) - static_cast<double>(values(b, t))));
    if (!dentropy.null()) dentropy(b, t) = static_cast<value_t<T>>(entropy.null() ? 0.0 : -m * p.ent_coef);
  });
  return r;
}

}  // namespace rlhf::a2c
