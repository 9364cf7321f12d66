// rlhf++ — importance-sampling-corrected KL estimates: the KL to the
// reference estimated from samples of an older policy (off-policy steps,
// a rollout engine), weighted by the importance ratio kept in the graph.
//
// With d = logp - ref_logp (math/kl.hpp's estimator k(d), its clamps) and
// lw the log importance weight:
//   token:    lw = logp - old_logp               (old absent: on-policy, lw = 0)
//   sequence: lw_b = sum_t m (logp - old) / max(sum_t m, 1), one per row
//   kl = clamp(w k(d), +-weighted_clamp),  w = exp(lw)   (weight none: kl = k(d))
// The weight is differentiated (d w / d logp = w d lw / d logp), so per token
// (token level) d kl / d logp = w (k'(d) + k(d)); for k3 that is w d, the
// form implemented (autograd's two terms cancel for d << -1). The sequence
// weight couples a row's tokens: its VJP is estimate_is_backward.
// References: TRL GRPOTrainer use_bias_correction_kl (k3, token/sequence,
// #4638), slime compute_approx_kl with use_unbiased_kl (#1004; the
// estimator in float32, low_var_kl clamped after the weight), open-instruct
// estimate_kl k4 = ratio * k1 (log ratio clamped to +-40).
// Zhang et al. 2025 (arXiv 2505.17508) on the gradient-correct forms.
#pragma once

#include <cmath>
#include <vector>

#include "../backend/cpu/loops.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../core/named_enum.hpp"
#include "../math/kl.hpp"
#include "estimators.hpp"
#include "penalty.hpp"

namespace rlhf::kl {

RLHF_BACKEND_FIRST(estimate_is)
RLHF_BACKEND_FIRST(estimate_is_backward)
RLHF_BACKEND_FIRST(loss_is)

RLHF_NAMED_ENUM(is_weight_level, (none, "none"), (token, "token"), (sequence, "sequence"));

struct is_kl_params {
  kl_params kl = kl_params::trl_grpo();             ///< the estimator k and its clamps (before the weight)
  is_weight_level weight = is_weight_level::token;  ///< the importance weight, or none
  double weighted_clamp = INFINITY;                 ///< clamp of w k to +-weighted_clamp (slime low_var_kl: 10)
  bool float32_estimate = false;                    ///< k(d) from float32 inputs in float32 (slime)

  /// TRL GRPOTrainer: k3 unclamped; times the token or sequence ratio with
  /// use_bias_correction_kl.
  static is_kl_params trl(is_weight_level level = is_weight_level::token, bool bias_correction = true) {
    is_kl_params p;
    p.weight = bias_correction ? level : is_weight_level::none;
    return p;
  }
  /// slime compute_approx_kl: k1, k2, k3 (unclamped), low_var_kl = k3
  /// clamped to +-10 after the weight; the token ratio with use_unbiased_kl.
  static is_kl_params slime(kl_estimator e, bool low_var_kl, bool unbiased) {
    is_kl_params p;
    p.kl = kl_params{e, false, INFINITY, INFINITY};
    p.weight = unbiased ? is_weight_level::token : is_weight_level::none;
    p.weighted_clamp = low_var_kl ? 10.0 : INFINITY;
    p.float32_estimate = true;
    return p;
  }
  /// open-instruct estimate_kl(kl_estimator = 0..3): k1, k2, k3 of the log
  /// ratio clamped to +-40, and k4 = ratio * k1.
  static is_kl_params open_instruct(int estimator) {
    rlhf::detail::require_param(
        estimator >= 0 && estimator <= 3, "kl::is_kl_params::open_instruct", "kl_estimator",
        "must be 0 (k1), 1 (k2), 2 (k3) or 3 (k4 = ratio * k1); got " + std::to_string(estimator));
    static constexpr kl_estimator e[4] = {kl_estimator::k1, kl_estimator::k2, kl_estimator::k3, kl_estimator::k1};
    is_kl_params p;
    p.kl = kl_params{e[estimator], false, 40.0, INFINITY};
    p.weight = estimator == 3 ? is_weight_level::token : is_weight_level::none;
    return p;
  }
};

inline void check_is_params(const is_kl_params& p, const char* fn) {
  check_params(p.kl, fn);
  rlhf::detail::require_param(p.weighted_clamp > 0, fn, "weighted_clamp", "must be > 0 (INFINITY = off)");
  rlhf::detail::require_param(!p.kl.straight_through, fn, "straight_through",
                              "has no IS-weighted form (the weight's gradient needs the estimator's)");
  rlhf::detail::require_param(p.kl.estimator != kl_estimator::abs || !p.float32_estimate, fn, "estimator",
                              "abs has no float32 (slime) form");
}

namespace is_detail {
/// k(d) and k'(d) of one token: math::kl_token, or slime's float32 forms.
inline math::kl_term<double> is_estimate(double logp, double ref, const is_kl_params& p) {
  if (!p.float32_estimate) return math::kl_token(logp, ref, p.kl);
  const float lr = static_cast<float>(logp) - static_cast<float>(ref);
  switch (p.kl.estimator) {
    case kl_estimator::k1:
      return {static_cast<double>(lr), 1.0};
    case kl_estimator::k2:
      return {static_cast<double>(lr * lr / 2.0f), static_cast<double>(lr)};
    default: {  // k3: exp(-lr) - 1 + lr in float32 (slime's order)
      const float e = std::exp(-lr);
      return {static_cast<double>((e - 1.0f) + lr), static_cast<double>(1.0f - e)};
    }
  }
}

/// One token: the estimate and its derivative by logp through k and w (the
/// token weight's d lw / d logp is 1; the sequence weight's cross terms are
/// estimate_is_backward's).
struct is_token {
  double value, dlogp;  ///< kl and d kl / d logp (token level: the full derivative)
  double k, dk, w;      ///< the unweighted estimate, its derivative, the weight
  bool clamped;         ///< the weighted clamp is active (no gradient)
};
inline is_token is_term(double logp, double ref, double lw, const is_kl_params& p) {
  const auto k = is_estimate(logp, ref, p);
  if (p.weight == is_weight_level::none) {
    const double c = p.weighted_clamp;
    const bool out = k.value < -c || k.value > c;
    return {out ? (k.value < 0 ? -c : c) : k.value, out ? 0.0 : k.dlogp, k.value, k.dlogp, 1.0, out};
  }
  const double w = std::exp(lw);
  const double v = w * k.value;
  const double c = p.weighted_clamp;
  const bool out = v < -c || v > c;
  // w (k' + k); for k3 without a log-ratio clamp that is exactly w d
  double g;
  if (p.kl.estimator == kl_estimator::k3 && !(p.kl.log_ratio_clamp < INFINITY) && !(p.kl.value_clamp < INFINITY))
    g = w * (p.float32_estimate ? static_cast<double>(static_cast<float>(logp) - static_cast<float>(ref)) : logp - ref);
  else
    g = w * (k.dlogp + k.value);
  return {out ? (v < 0 ? -c : c) : v, out ? 0.0 : g, k.value, k.dlogp, w, out};
}

template <class L, class O, class R, class M>
void check_is_args(const char* fn, const L& logp, const O& old_logp, const R& ref_logp, const M& mask,
                   const is_kl_params& p) {
  rlhf::detail::require_nonempty(fn, "logp", logp);
  if (!old_logp.null()) rlhf::detail::require_same_shape(fn, "old_logp", old_logp, "logp", logp);
  rlhf::detail::require_same_shape(fn, "ref_logp", ref_logp, "logp", logp);
  if (p.weight == is_weight_level::sequence)
    rlhf::detail::require_same_shape(fn, "mask", mask, "logp", logp);
  else if (!mask.null())
    rlhf::detail::require_same_shape(fn, "mask", mask, "logp", logp);
  check_is_params(p, fn);
}

template <class Tag, class L, class O, class R, class M>
void scan_is_inputs(const Tag& tag, const char* fn, const L& logp, const O& old_logp, const R& ref_logp,
                    const M& mask) {
  rlhf::detail::require_finite(tag, fn, "logp", logp);
  if (!old_logp.null()) rlhf::detail::require_finite(tag, fn, "old_logp", old_logp);
  rlhf::detail::require_finite(tag, fn, "ref_logp", ref_logp);
  if (!mask.null()) rlhf::detail::require_mask(fn, "mask", mask);
}

/// Each row's log weight (sequence level; 0 elsewhere, filled per token).
template <class T, class M>
std::vector<double> sequence_log_weights(tensor_view<T, 2> logp, tensor_view<const value_t<T>, 2> old_logp,
                                         tensor_view<M, 2> mask, std::vector<double>& len) {
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  std::vector<double> lw(static_cast<std::size_t>(B), 0.0);
  len.assign(static_cast<std::size_t>(B), 0.0);
  for (index_t b = 0; b < B; ++b) {
    double s = 0, n = 0;
    for (index_t t = 0; t < T_; ++t) {
      const double m = static_cast<double>(mask(b, t));
      const double o = old_logp.null() ? static_cast<double>(logp(b, t)) : static_cast<double>(old_logp(b, t));
      s += (static_cast<double>(logp(b, t)) - o) * m;
      n += m;
    }
    len[static_cast<std::size_t>(b)] = n > 1.0 ? n : 1.0;
    lw[static_cast<std::size_t>(b)] = s / len[static_cast<std::size_t>(b)];
  }
  return lw;
}

/// The term of token (b, t) with its level's log weight (`lw`: the rows'
/// sequence log weights; the token level's is logp - old, 0 on-policy).
template <class L, class O, class R>
is_token term_at(const L& logp, const O& old_logp, const R& ref_logp, const std::vector<double>& lw,
                 const is_kl_params& p, index_t b, index_t t) {
  const double lp = static_cast<double>(logp(b, t));
  const double l = p.weight == is_weight_level::sequence ? lw[static_cast<std::size_t>(b)]
                   : old_logp.null()                     ? 0.0
                                                         : lp - static_cast<double>(old_logp(b, t));
  return is_term(lp, static_cast<double>(ref_logp(b, t)), l, p);
}

inline void require_finite_is(double x, const char* fn) {
  rlhf::detail::require_finite_result(x, fn, "logp",
                                      "the IS-weighted KL overflows (exp of the log ratio or of the log weight)");
}
}  // namespace is_detail

/// The IS-corrected per-token KL (not masked: the caller aggregates it with
/// the policy loss, as TRL does). `old_logp` null: on-policy (w = 1, its
/// gradient kept). `mask` is read by the sequence weight only (may be null
/// otherwise). `dkl_dlogp` (optional): d kl / d logp per token (token and
/// unweighted levels; the sequence weight couples a row's tokens:
/// estimate_is_backward). Every error is raised before anything is written.
template <class T, class M>
void estimate_is(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> old_logp, in_view<T, 2> ref_logp,
                 tensor_view<M, 2> mask, const is_kl_params& p, out_view<T, 2> kl_out, out_view<T, 2> dkl_dlogp = {}) {
  constexpr const char* fn = "kl::estimate_is";
  is_detail::check_is_args(fn, logp, old_logp, ref_logp, mask, p);
  rlhf::detail::require_output(fn, "kl", kl_out, "logp", logp);
  rlhf::detail::require_output(fn, "dkl_dlogp", dkl_dlogp, "logp", logp);
  rlhf::detail::require_param(dkl_dlogp.null() || p.weight != is_weight_level::sequence, fn, "dkl_dlogp",
                              "is not elementwise under the sequence weight (it couples a row's tokens): use "
                              "kl::estimate_is_backward");
  is_detail::scan_is_inputs(tag, fn, logp, old_logp, ref_logp, mask);
  using V = value_t<T>;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  std::vector<double> len, lw;
  if (p.weight == is_weight_level::sequence) lw = is_detail::sequence_log_weights(logp, old_logp, mask, len);
  // two passes: every value is computed and checked before the first write
  std::vector<double> val(static_cast<std::size_t>(B * T_)), der(static_cast<std::size_t>(B * T_));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) {
      const auto r = is_detail::term_at(logp, old_logp, ref_logp, lw, p, b, t);
      const auto i = static_cast<std::size_t>(b * T_ + t);
      val[i] = r.value;
      der[i] = r.dlogp;
      is_detail::require_finite_is(static_cast<double>(static_cast<V>(r.value)), fn);
      is_detail::require_finite_is(static_cast<double>(static_cast<V>(r.dlogp)), fn);
    }
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) {
      const auto i = static_cast<std::size_t>(b * T_ + t);
      if (!kl_out.null()) kl_out(b, t) = static_cast<V>(val[i]);
      if (!dkl_dlogp.null()) dkl_dlogp(b, t) = static_cast<V>(der[i]);
    }
}

/// VJP of estimate_is: dlogp = J^T cot. Token and unweighted levels:
/// cot * d kl / d logp; sequence level, token t of row b:
/// cot_t w_b k'(d_t) + (sum_t' cot_t' k_t') w_b m_t / max(sum m, 1)
/// (the sum over every position of the row, masked ones included).
template <class T, class M>
void estimate_is_backward(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> old_logp, in_view<T, 2> ref_logp,
                          tensor_view<M, 2> mask, const is_kl_params& p, in_view<T, 2> cot, out_view<T, 2> dlogp) {
  constexpr const char* fn = "kl::estimate_is_backward";
  is_detail::check_is_args(fn, logp, old_logp, ref_logp, mask, p);
  rlhf::detail::require_same_shape(fn, "cot", cot, "logp", logp);
  rlhf::detail::require_same_shape(fn, "dlogp", dlogp, "logp", logp);
  is_detail::scan_is_inputs(tag, fn, logp, old_logp, ref_logp, mask);
  rlhf::detail::require_finite(tag, fn, "cot", cot);
  using V = value_t<T>;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  const bool seq = p.weight == is_weight_level::sequence;
  std::vector<double> len, lw;
  if (seq) lw = is_detail::sequence_log_weights(logp, old_logp, mask, len);
  std::vector<double> g(static_cast<std::size_t>(B * T_));
  for (index_t b = 0; b < B; ++b) {
    double cross = 0;  // sum_t cot_t k_t (sequence level)
    for (index_t t = 0; t < T_; ++t) {
      const double c = static_cast<double>(cot(b, t));
      const auto r = is_detail::term_at(logp, old_logp, ref_logp, lw, p, b, t);
      const auto i = static_cast<std::size_t>(b * T_ + t);
      if (seq) {
        g[i] = r.clamped ? 0.0 : c * r.w * r.dk;
        if (!r.clamped) cross += c * r.k;
      } else {
        g[i] = c * r.dlogp;
      }
    }
    if (seq) {
      const double s = cross * std::exp(lw[static_cast<std::size_t>(b)]) / len[static_cast<std::size_t>(b)];
      for (index_t t = 0; t < T_; ++t) g[static_cast<std::size_t>(b * T_ + t)] += s * static_cast<double>(mask(b, t));
    }
  }
  for (auto x : g) is_detail::require_finite_is(static_cast<double>(static_cast<V>(x)), fn);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) dlogp(b, t) = static_cast<V>(g[static_cast<std::size_t>(b * T_ + t)]);
}

/// The IS-corrected KL as a loss term: kl_coef * agg(estimate_is(...),
/// mask), and its gradient by logp (the sequence weight's cross terms
/// included: estimate_is_backward of the aggregation's cotangent) written
/// into `dlogp` (added to it with `accumulate`, for the combined PPO loss).
/// `old_logp` null: the on-policy approximation (w = exp(logp - sg(logp)):
/// the value of k, the gradient of w k at w = 1). Token (or no) weights:
/// the estimate and its elementwise derivative, then one engine pass that
/// aggregates and writes kl_coef * row weight * mask * d kl / d logp (two
/// [B, T] temporaries); the sequence weight couples a row's tokens, so its
/// gradient is estimate_is_backward of the aggregation's cotangent. CPU.
/// Every error is raised before `dlogp` is written.
template <class T, class M>
in_loss_result loss_is(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> old_logp, in_view<T, 2> ref_logp,
                       tensor_view<M, 2> mask, double kl_coef, const is_kl_params& p, const agg_params& agg,
                       out_view<T, 2> dlogp = {}, bool accumulate = false) {
  constexpr const char* fn = "kl::loss_is";
  rlhf::detail::require_nonempty(fn, "logp", logp);
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "logp", logp);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "logp", logp);
  rlhf::detail::require_nonneg_param(kl_coef, fn, "kl_coef");
  ops::detail::check_agg_params(agg, fn);
  using V = value_t<T>;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  const engine::run_options ro{kl_coef, false, "loss_mask", false};
  tensor<V, 2> kl({B, T_}), cot, g;
  const in_view<V, 2> klv = kl.view();
  if (p.weight != is_weight_level::sequence) {
    tensor<V, 2> dkl(dlogp.null() ? std::array<index_t, 2>{0, 0} : std::array<index_t, 2>{B, T_});
    estimate_is(tag, logp, old_logp, ref_logp, mask, p, kl.view(), dlogp.null() ? out_view<T, 2>{} : dkl.view());
    const in_view<V, 2> dv = dlogp.null() ? klv : in_view<V, 2>(dkl.view());  // (no gradient: unread)
    engine::run_options o = ro;
    o.accumulate = accumulate;
    const auto s = engine::run<1, 0>(tag, fn, ops::rules::value_grad_token<strided2<V>>{strided(klv), strided(dv)},
                                     mask, agg, std::array<tensor_view<V, 2>, 1>{dlogp},
                                     engine::inputs<V, 2>{false, {"logp", "dkl_dlogp"}, {klv, dv}}, o);
    rlhf::detail::require_finite_result(s.value, fn, "logp", "the aggregated IS-weighted KL overflows");
    return {kl_coef * s.value, s.value};
  }
  cot = tensor<V, 2>({B, T_});
  estimate_is(tag, logp, old_logp, ref_logp, mask, p, kl.view());
  // the aggregation's cotangent: kl_coef * (its row weight) * mask, from the engine's own weights
  const auto s =
      engine::run<1, 0>(tag, fn, ops::rules::value_token<strided2<V>>{strided(klv)}, mask, agg,
                        std::array<tensor_view<V, 2>, 1>{cot.view()}, engine::inputs<V, 1>{false, {"logp"}, {klv}}, ro);
  rlhf::detail::require_finite_result(s.value, fn, "logp", "the aggregated IS-weighted KL overflows");
  if (!dlogp.null()) {
    g = tensor<V, 2>({B, T_});
    estimate_is_backward(tag, logp, old_logp, ref_logp, mask, p, in_view<V, 2>(cot.view()), g.view());
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T_; ++t) dlogp(b, t) = accumulate ? dlogp(b, t) + g(b, t) : g(b, t);
  }
  return {kl_coef * s.value, s.value};
}

}  // namespace rlhf::kl
