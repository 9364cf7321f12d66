// rlhf++ — KL estimators over [B, T] log-probabilities (formulas: math/kl.hpp).
//
//   kl::estimate(cpu, logp, ref_logp, params, kl_out, dkl_dlogp_out)
// writes the per-token estimate and its derivative with respect to logp
// (elementwise, so the VJP with a cotangent g is g * dkl_dlogp).
#pragma once

#include <sstream>
#include <string>
#include <string_view>

#include "../backend/cpu/objective.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../math/kl.hpp"
#include "../math/tokens.hpp"

namespace rlhf {

struct kl_name {
  kl_estimator estimator;
  bool straight_through;
};

/// Parses verl's names: kl/k1, abs, mse/k2, low_var_kl/k3, each optionally
/// with a trailing '+' (straight-through). Anything else (including verl's
/// "full", which needs logits) is rlhf::error(param).
inline kl_name parse_kl_estimator(std::string_view s) {
  const std::string full(s);
  bool st = false;
  if (!s.empty() && s.back() == '+') {
    st = true;
    s.remove_suffix(1);
  }
  if (s == "kl" || s == "k1") return {kl_estimator::k1, st};
  if (s == "abs") return {kl_estimator::abs, st};
  if (s == "mse" || s == "k2") return {kl_estimator::k2, st};
  if (s == "low_var_kl" || s == "k3") return {kl_estimator::k3, st};
  detail::fail(error_kind::param, "parse_kl_estimator", "kl_penalty",
               "unknown KL estimator '" + full +
                   "' (kl/k1, abs, mse/k2, low_var_kl/k3, optionally with a trailing '+'; "
                   "the full-distribution KL needs logits: kl::full_from_logits)");
}

namespace kl {

RLHF_BACKEND_FIRST(estimate)

inline void check_params(const kl_params& p, const char* fn) {
  detail::require_param(p.log_ratio_clamp > 0, fn, "log_ratio_clamp", "must be > 0 (INFINITY = off)");
  detail::require_param(p.value_clamp > 0, fn, "value_clamp", "must be > 0 (INFINITY = off)");
}

namespace rules {
/// The KL estimate of one token as a loss (both engines): value and d / d logp.
template <class A>
struct loss_token {
  A logp, ref;
  kl_params p;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 0, math::real_t<L>> operator()(index_t b, index_t t) const {
    const auto k = math::kl_token(logp.template get<L>(b, t), ref.template get<L>(b, t), p);
    token_out<1, 0, math::real_t<L>> r;
    r.loss = k.value;
    r.grad[0] = k.dlogp;
    return r;
  }
};
/// The estimate as an elementwise map (kl::estimate): the outputs are the
/// estimate and its derivative at every position.
template <class A>
struct estimate_token {
  A logp, ref;
  kl_params p;
  template <class L = double>
  RLHF_HD_INLINE token_out<2, 0, math::real_t<L>> operator()(index_t b, index_t t) const {
    const auto k = math::kl_token(logp.template get<L>(b, t), ref.template get<L>(b, t), p);
    token_out<2, 0, math::real_t<L>> r;
    r.grad[0] = k.value;
    r.grad[1] = k.dlogp;
    return r;
  }
};
}  // namespace rules

namespace precheck {
/// The CPU engine's precheck of kl::loss and kl::apply_in_reward: a token
/// whose estimate (or its derivative) is not finite, masked or not, is an
/// error before any write. F: a rule whose loss and grad[0] are the
/// estimate and its derivative.
template <class F, class V>
struct overflow_check {
  static constexpr bool active = true;
  const F& f;
  tensor_view<const V, 2> logp, ref;
  const char* fn;
  template <class L>
  RLHF_ALWAYS_INLINE math::mask_of<math::real_t<L>> bad(index_t b, index_t t) const {
    const auto o = f.template operator()<L>(b, t);
    using S = math::scalar_of<math::real_t<L>>;
    return ((o.loss - o.loss) != S(0)) | ((o.grad[0] - o.grad[0]) != S(0));
  }
  [[noreturn]] void fail(index_t b, index_t t) const {
    std::ostringstream os;
    os << "and 'ref_logp' differ by " << static_cast<double>(logp(b, t)) - static_cast<double>(ref(b, t)) << " at ["
       << b << ", " << t << "]: the estimate overflows; set log_ratio_clamp / value_clamp (kl_params::verl does)";
    rlhf::detail::fail(error_kind::non_finite, fn, "logp", os.str());
  }
};
}  // namespace precheck

/// Whether an estimate or its derivative can overflow for finite inputs, so
/// that the engine's overflow precheck (one more evaluation of the rule per
/// token) is needed: with the log ratio clamped to |d| <= 80 (exp(80) <
/// FLT_MAX) and no straight-through gradient (the raw difference), every
/// estimator and its derivative is finite in float and double.
inline bool may_overflow(const kl_params& p) { return p.straight_through || !(p.log_ratio_clamp <= 80.0); }

/// run(precheck): the overflow precheck of `est` when the parameters allow
/// an overflow (may_overflow), else none.
template <class V, class Run>
decltype(auto) with_overflow_check(const kl_params& p, const rules::loss_token<strided2<V>>& est,
                                   tensor_view<const V, 2> logp, tensor_view<const V, 2> ref, const char* fn,
                                   Run&& run) {
  if (may_overflow(p)) return run(precheck::overflow_check<rules::loss_token<strided2<V>>, V>{est, logp, ref, fn});
  return run(cpu_engine::detail::no_precheck{});
}

/// Per-token KL estimate and d/dlogp. Either output may be a null view.
/// One elementwise pass of the CPU engine; a token whose estimate
/// overflows is an error before anything is written.
template <class T>
void estimate(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> ref_logp, const kl_params& p, out_view<T, 2> kl_out,
              out_view<T, 2> dkl_dlogp = {}) {
  constexpr const char* fn = "kl::estimate";
  detail::require_same_shape(fn, "ref_logp", ref_logp, "logp", logp);
  detail::require_nonempty(fn, "logp", logp);
  detail::require_output(fn, "kl", kl_out, "logp", logp);
  detail::require_output(fn, "dkl_dlogp", dkl_dlogp, "logp", logp);
  check_params(p, fn);
  using V = value_t<T>;
  const rules::loss_token<strided2<V>> est{strided(logp), strided(ref_logp), p};
  with_overflow_check<V>(p, est, logp, ref_logp, fn, [&](const auto& pre) {
    cpu_engine::map<2>(fn, rules::estimate_token<strided2<V>>{strided(logp), strided(ref_logp), p},
                       std::array<tensor_view<V, 2>, 2>{kl_out, dkl_dlogp},
                       cpu_engine::inputs<V, 2>{tag.check_finite, {"logp", "ref_logp"}, {logp, ref_logp}}, pre);
  });
}

/// Convenience overload: returns the estimate (no gradient).
template <class T>
tensor<value_t<T>, 2> estimate(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> ref_logp, const kl_params& p) {
  tensor<value_t<T>, 2> out({logp.extent(0), logp.extent(1)});
  estimate(tag, logp, ref_logp, p, out.view());
  return out;
}

}  // namespace kl
}  // namespace rlhf
