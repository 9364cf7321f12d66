// rlhf++ — KL estimators over [B, T] log-probabilities (formulas: math/kl.hpp).
//
//   kl::estimate(cpu, logp, ref_logp, params, kl_out, dkl_dlogp_out)
// writes the per-token estimate and its derivative with respect to logp
// (elementwise, so the VJP with a cotangent g is g * dkl_dlogp).
#pragma once

#include <sstream>
#include <string>
#include <string_view>

#include "../backend/cpu/loops.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../math/kl.hpp"

namespace rlhf {

inline const char* to_string(kl_estimator e) noexcept {
  switch (e) {
    case kl_estimator::k1: return "k1";
    case kl_estimator::abs: return "abs";
    case kl_estimator::k2: return "k2";
    case kl_estimator::k3: return "k3";
  }
  return "?";
}

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

inline void check_params(const kl_params& p, const char* fn) {
  detail::require_param(p.log_ratio_clamp > 0, fn, "log_ratio_clamp", "must be > 0 (INFINITY = off)");
  detail::require_param(p.value_clamp > 0, fn, "value_clamp", "must be > 0 (INFINITY = off)");
}

/// Per-token KL estimate and d/dlogp. Either output may be a null view.
template <class T>
void estimate(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> ref_logp, const kl_params& p,
              out_view<T, 2> kl_out, out_view<T, 2> dkl_dlogp = {}) {
  constexpr const char* fn = "kl::estimate";
  detail::require_same_shape(fn, "ref_logp", ref_logp, "logp", logp);
  detail::require_nonempty(fn, "logp", logp);
  detail::require_output(fn, "kl", kl_out, "logp", logp);
  detail::require_output(fn, "dkl_dlogp", dkl_dlogp, "logp", logp);
  detail::require_finite(tag, fn, "logp", logp);
  detail::require_finite(tag, fn, "ref_logp", ref_logp);
  check_params(p, fn);
  cpu_loops::for_each_2d(logp.extent(0), logp.extent(1), [&](index_t b, index_t t) {
    const auto k = math::kl_token(static_cast<double>(logp(b, t)), static_cast<double>(ref_logp(b, t)), p);
    if (!std::isfinite(k.value) || !std::isfinite(k.dlogp)) {
      std::ostringstream os;
      os << "and 'ref_logp' differ by " << static_cast<double>(logp(b, t)) - static_cast<double>(ref_logp(b, t))
         << " at [" << b << ", " << t
         << "]: the estimate overflows; set log_ratio_clamp / value_clamp (kl_params::verl does)";
      detail::fail(error_kind::non_finite, fn, "logp", os.str());
    }
    if (!kl_out.null()) kl_out(b, t) = static_cast<value_t<T>>(k.value);
    if (!dkl_dlogp.null()) dkl_dlogp(b, t) = static_cast<value_t<T>>(k.dlogp);
  });
}

/// Convenience overload: returns the estimate (no gradient).
template <class T>
tensor<value_t<T>, 2> estimate(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> ref_logp,
                               const kl_params& p) {
  tensor<value_t<T>, 2> out({logp.extent(0), logp.extent(1)});
  estimate(tag, logp, ref_logp, p, out.view());
  return out;
}

}  // namespace kl
}  // namespace rlhf
