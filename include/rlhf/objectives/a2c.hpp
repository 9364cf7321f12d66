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

#include "../backend/cpu/objective.hpp"
#include "../math/tokens.hpp"
#include "../ops/masked.hpp"

namespace rlhf::a2c {

RLHF_BACKEND_FIRST(loss)

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

namespace rules {
/// A2C's token (both engines): stats = [A' logp, (R - V)^2, H or -logp];
/// grads d/dlogp, d/dvalues, d/dentropy of L = -mean(A' logp) + c_ent L_ent
/// + c_vf s mean((R - V)^2) (the engine's token-mean weight m / n supplies
/// the mean). `norm` (nullable; device memory on CUDA): the advantages'
/// masked moments {n, sum, sum of squared deviations} for
/// normalize_advantage, A' = (A - mu) / (unbiased std + adv_eps).
template <class A>
struct token {
  A logp, values, adv, ret, entropy;
  params p;
  const double* norm;
  template <class L = double>
  RLHF_HD_INLINE token_out<3, 3, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    using S = math::scalar_of<R>;
    R a = adv.template get<L>(b, t);
    if (norm) {
      const double n = norm[0], mu = norm[1] / n;
      const double sd = std::sqrt(norm[2] / n * (n / (n - 1))) + p.adv_eps;
      a = (a - static_cast<S>(mu)) / static_cast<S>(sd);
    }
    const R lp = logp.template get<L>(b, t), e = ret.template get<L>(b, t) - values.template get<L>(b, t);
    token_out<3, 3, R> r;
    r.stat[0] = a * lp;
    r.stat[1] = e * e;
    r.stat[2] = entropy.null() ? -lp : entropy.template get<L>(b, t);
    r.grad[0] = -a + static_cast<S>(entropy.null() ? p.ent_coef : 0.0);
    r.grad[1] = static_cast<S>(p.vf_coef * p.value_scale * -2.0) * e;
    r.grad[2] = math::lit<R>(entropy.null() ? 0.0 : -p.ent_coef);
    return r;
  }
};
}  // namespace rules

namespace detail {
/// The result from the engine's sums (both backends).
template <class Sums>
result result_from(const Sums& s, const params& p, const char* fn) {
  result r{};
  r.policy_loss = -s.stat[0] / s.n;
  r.value_loss = p.value_scale * s.stat[1] / s.n;
  r.entropy_loss = -s.stat[2] / s.n;
  r.loss = r.policy_loss + p.ent_coef * r.entropy_loss + p.vf_coef * r.value_loss;
  rlhf::detail::require_finite_result(r.loss, fn, "values", "the loss overflows (extreme inputs)");
  return r;
}
inline void require_two(double n, const char* fn) {
  if (!(n > 1))
    rlhf::detail::fail(error_kind::empty, fn, "advantages",
                       "has a single sample: normalize_advantage needs at least 2 (std undefined)");
}
}  // namespace detail

/// `entropy` may be a null view (then -mean(-logp) is the entropy term and
/// logp receives its gradient). Gradients go to the optional outputs. One
/// pass of the CPU objective engine (after the advantages' moments, when
/// normalize_advantage).
template <class T, class M>
result loss(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> values, in_view<T, 2> advantages, in_view<T, 2> returns,
            in_view<T, 2> entropy, tensor_view<M, 2> mask, const params& p, out_view<T, 2> dlogp = {},
            out_view<T, 2> dvalues = {}, out_view<T, 2> dentropy = {}) {
  constexpr const char* fn = "a2c::loss";
  detail::check_shapes(fn, logp, values, advantages, returns, entropy, mask, dlogp, dvalues, dentropy);
  detail::check_params(p, fn);
  using V = value_t<T>;
  cpu_engine::inputs<V, 5> in{tag.check_finite,
                              {"advantages", "returns", "log_prob", "values", "entropy"},
                              {advantages, returns, logp, values, entropy}};
  double norm[3] = {0, 0, 0};
  if (p.normalize_advantage) {
    const double n = cpu_engine::check_ahead(fn, mask, in, "mask");
    if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid token");
    detail::require_two(n, fn);
    const auto st = ops::masked_var(tag.unchecked(), advantages, mask, true, 0.0);
    norm[0] = n;
    norm[1] = st.mean * n;
    norm[2] = st.var * (n - 1);
  }
  const rules::token<strided2<V>> f{strided(logp),
                                    strided(values),
                                    strided(advantages),
                                    strided(returns),
                                    strided(entropy),
                                    p,
                                    p.normalize_advantage ? norm : nullptr};
  const auto s =
      cpu_engine::run<3, 3>(fn, f, mask, agg_params{}, std::array<tensor_view<V, 2>, 3>{dlogp, dvalues, dentropy}, in,
                            {1.0, false, "mask", true});
  return detail::result_from(s, p, fn);
}

}  // namespace rlhf::a2c
