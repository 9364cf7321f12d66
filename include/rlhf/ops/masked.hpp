// rlhf++ — masked reductions over [B, T] tensors.
//
//   masked_sum(v, m)        = sum_i m_i v_i                 (masked entries are
//                             skipped, not multiplied: NaN-safe like verl's where)
//   masked_mean(v, m; eps)  = masked_sum / (sum_i m_i + eps)
//                             verl: eps = 1e-8; OpenRLHF, TRL: eps = 0
//   masked_var(v, m; unbiased, eps)
//                           = masked_mean((v - masked_mean(v))^2) * (n/(n-1) if unbiased)
//                             (verl torch_functional.masked_var; n = sum m)
//   masked_whiten(v, m)     = (v - mu) * rsqrt(var + var_eps) [+ mu unless shift_mean]
//                             applied to every position, masked ones included
//                             (verl torch_functional.masked_whiten).
//
// Contract: a mean over zero valid elements is rlhf::error(empty); so is an
// unbiased variance or a whitening over fewer than two. Per-row means
// (masked_mean_rows) give 0 for a row with no valid element, as verl does,
// and fail only when every row is empty.
#pragma once

#include <cmath>
#include <vector>

#include "../backend/cpu/loops.hpp"
#include "../backend/cpu/objective.hpp"
#include "../math/tokens.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"

namespace rlhf::ops {

RLHF_BACKEND_FIRST(masked_sum)
RLHF_BACKEND_FIRST(mask_count)
RLHF_BACKEND_FIRST(masked_mean)
RLHF_BACKEND_FIRST(masked_var)
RLHF_BACKEND_FIRST(masked_whiten)
RLHF_BACKEND_FIRST(masked_mean_rows)
RLHF_BACKEND_FIRST(masked_sum_rows)

namespace detail {
template <class M>
inline bool on(M m) {
  return m != M(0);
}

template <class Tag, class T, class M>
void check_values_mask(const Tag& tag, const char* fn, const tensor_view<T, 2>& v, const tensor_view<M, 2>& m,
                       const char* vname = "values", const char* mname = "mask") {
  rlhf::detail::require_same_shape(fn, mname, m, vname, v);
  rlhf::detail::require_nonempty(fn, vname, v);
  rlhf::detail::require_finite(tag, fn, vname, v);
  rlhf::detail::require_mask(fn, mname, m);
}
}  // namespace detail

namespace rules {
/// loss = x, gradient 1: a masked sum on the engine (also the entropy bonus's rule).
template <class A>
struct value_token {
  A x;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 0, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    token_out<1, 0, R> r;
    r.loss = x.template get<L>(b, t);
    r.grad[0] = math::lit<R>(1.0);
    return r;
  }
};
/// loss = x, gradient dx: an elementwise term with its own derivative,
/// aggregated on the engine (the token-level IS-corrected KL).
template <class A>
struct value_grad_token {
  A x, dx;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 0, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    token_out<1, 0, R> r;
    r.loss = x.template get<L>(b, t);
    r.grad[0] = dx.template get<L>(b, t);
    return r;
  }
};
/// stats [(x - mu)^2, x - mu]: the centred sums of a variance.
template <class A>
struct centered_token {
  A x;
  double mu;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 2, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    const R c = x.template get<L>(b, t) - static_cast<math::scalar_of<R>>(mu);
    token_out<1, 2, R> r;
    r.stat[0] = c * c;
    r.stat[1] = c;
    return r;
  }
};
/// (x - mean) s, plus the mean unless shift_mean: whitening, an elementwise
/// map; times the mask `times` where it is not null (verl's
/// `masked_whiten(x, m) * m`, one pass).
template <class A, class MA = A>
struct whiten_token {
  A x;
  double mean, s;
  bool shift_mean;
  MA times;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 0, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    using S = math::scalar_of<R>;
    const R w = (x.template get<L>(b, t) - static_cast<S>(mean)) * static_cast<S>(s);
    token_out<1, 0, R> r;
    r.grad[0] = shift_mean ? w : w + static_cast<S>(mean);
    if (!times.null()) r.grad[0] = r.grad[0] * times.template get<L>(b, t);
    return r;
  }
};
/// gradient scale[b], loss 0: the VJPs of the per-row reductions.
struct row_scale_token {
  const double* scale;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 0, math::real_t<L>> operator()(index_t b, index_t) const {
    using R = math::real_t<L>;
    token_out<1, 0, R> r;
    r.grad[0] = math::lit<R>(scale[b]);
    return r;
  }
};
}  // namespace rules

namespace detail {
/// The engine's settings for a masked sum (token-sum weights, a mask named
/// "mask", no error for an empty one); `raw` for an elementwise map.
inline cpu_engine::run_options sum_options(bool raw = false) {
  cpu_engine::run_options o{};
  o.mask_name = "mask";
  o.require_tokens = false;
  o.raw = raw;
  return o;
}

}  // namespace detail

/// sum of m * v over valid entries (double accumulation; the CPU engine:
/// vectorized, rows in parallel).
template <class T, class M>
double masked_sum(cpu_t tag, tensor_view<T, 2> v, tensor_view<M, 2> m) {
  constexpr const char* fn = "ops::masked_sum";
  rlhf::detail::require_same_shape(fn, "mask", m, "values", v);
  using V = value_t<T>;
  return cpu_engine::run<1, 0>(fn, rules::value_token<strided2<V>>{strided(v)}, m, agg_params::token_sum(),
                               std::array<tensor_view<V, 2>, 1>{},
                               cpu_engine::inputs<V, 1>{tag.check_finite, {"values"}, {v}}, detail::sum_options())
      .value;
}

/// Number of valid tokens (sum of the mask); a NaN / Inf in the mask is an
/// error (vectorized, rows in parallel: backend/cpu/objective.hpp).
template <class M>
double mask_count(cpu_t, tensor_view<M, 2> m) {
  return cpu_engine::mask_sum("ops::mask_count", m, "mask");
}

namespace detail {
/// The mask's pass (its scans of `in` and each row's count into `counts`)
/// and the mask's sum over every rank of the tag (one collective; one
/// process: the batch's own sum).
template <class Tag, class M, class V, std::size_t C>
double global_mask_sum(const Tag& tag, const char* fn, tensor_view<M, 2> mask, const cpu_engine::inputs<V, C>& in,
                       std::vector<double>& counts) {
  const auto& comm = engine::comm_of(tag);
  dist::failure mine;
  double n = 0;
  dist::local_phase(comm, mine, [&] { n = cpu_engine::mask_pass(fn, mask, in, "mask", counts); });
  const double part[1] = {n};
  return dist::exchange(comm, mine, part).sum(0);
}
}  // namespace detail

/// Global masked mean; writes d mean / d values into `dvalues` when given.
/// Under tag.with(comm), over every rank's elements.
template <class Tag, class T, class M>
requires(backend<Tag>&& is_host_backend_v<Tag>) double masked_mean(Tag tag, tensor_view<T, 2> values,
                                                                   tensor_view<M, 2> mask, double eps = 1e-8,
                                                                   out_view<T, 2> dvalues = {}) {
  constexpr const char* fn = "ops::masked_mean";
  [[maybe_unused]] const engine::op_scope scope(tag);
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_nonneg_param(eps, fn, "eps");
  rlhf::detail::require_output(fn, "dvalues", dvalues, "values", values);
  using V = value_t<T>;
  cpu_engine::inputs<V, 1> in{tag.check_finite, {"values"}, {values}};
  cpu_engine::run_options o = detail::sum_options();
  std::vector<double> counts;
  if (!dvalues.null()) {
    // the gradient m / (n + eps) needs n first: the mask's pass ahead (its
    // scans and counts then stand for the rule's pass)
    const double n = detail::global_mask_sum(tag, fn, mask, in, counts);
    if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
    o.grad_scale = 1.0 / (n + eps);
    o.counts = counts.data();
  }
  const auto s = engine::run<1, 0>(tag, fn, rules::value_token<strided2<V>>{strided(values)}, mask,
                                   agg_params::token_sum(), std::array<tensor_view<V, 2>, 1>{dvalues}, in, o);
  if (!(s.n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  const double mean = s.value / (s.n + eps);
  rlhf::detail::require_finite_result(mean, fn, "values", "the mean overflows: the mask sums to ~0 (weights?)");
  return mean;
}

namespace detail {
/// Each row's masked sum and mask sum (one engine pass).
template <class T, class M>
void row_sums(cpu_t tag, const char* fn, tensor_view<T, 2> values, tensor_view<M, 2> mask, std::vector<double>& sums,
              std::vector<double>& counts) {
  using V = value_t<T>;
  const auto B = static_cast<std::size_t>(values.extent(0));
  sums.assign(B, 0.0);
  counts.assign(B, 0.0);
  cpu_engine::run_options o = sum_options();
  o.row_sums = sums.data();
  o.row_counts = counts.data();
  cpu_engine::run<1, 0>(fn, rules::value_token<strided2<V>>{strided(values)}, mask, agg_params::token_sum(),
                        std::array<tensor_view<V, 2>, 1>{},
                        cpu_engine::inputs<V, 1>{tag.check_finite, {"values"}, {values}}, o);
}

/// dvalues[b, t] = scale[b] * m[b, t] (one engine pass; `counts`: the
/// mask's row sums when its pass has run already).
template <class O, class M>
void write_row_scaled(const char* fn, tensor_view<M, 2> mask, const std::vector<double>& scale,
                      tensor_view<O, 2> dvalues, const double* counts = nullptr) {
  using V = std::remove_const_t<O>;
  cpu_engine::run_options o = sum_options();
  o.counts = counts;
  cpu_engine::run<1, 0>(fn, rules::row_scale_token{scale.data()}, mask, agg_params::token_sum(),
                        std::array<tensor_view<V, 2>, 1>{dvalues}, cpu_engine::inputs<V, 0>{false, {}, {}}, o);
}
}  // namespace detail

/// Per-row masked mean over the last axis (verl masked_mean(..., axis=-1)).
/// Rows without a valid element give 0.
template <class T, class M>
void masked_mean_rows(cpu_t tag, tensor_view<T, 2> values, tensor_view<M, 2> mask, double eps, out_view<T, 1> out) {
  constexpr const char* fn = "ops::masked_mean_rows";
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_nonneg_param(eps, fn, "eps");
  rlhf::detail::require_out_extent(fn, "out", out, 0, values.extent(0), "one mean per row");
  std::vector<double> s, c;
  detail::row_sums(tag, fn, values, mask, s, c);
  double n = 0;
  for (double x : c) n += x;
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element in any row");
  std::vector<value_t<T>> mean(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    mean[i] = static_cast<value_t<T>>(c[i] + eps > 0 ? s[i] / (c[i] + eps) : 0.0);
    if (!std::isfinite(static_cast<double>(mean[i])))
      rlhf::detail::fail(error_kind::non_finite, fn, "values",
                         "row " + std::to_string(i) + ": the masked mean overflows (a mask whose row sum is ~0?)");
  }
  for (index_t b = 0; b < values.extent(0); ++b) out(b) = mean[static_cast<std::size_t>(b)];
}

/// VJP of masked_mean_rows: dvalues[b, t] = cot[b] * m[b, t] / (n_b + eps).
template <class T, class M>
void masked_mean_rows_backward(cpu_t tag, tensor_view<M, 2> mask, double eps, tensor_view<T, 1> cot,
                               out_view<T, 2> dvalues) {
  constexpr const char* fn = "ops::masked_mean_rows_backward";
  rlhf::detail::require_same_shape(fn, "dvalues", dvalues, "mask", mask);
  rlhf::detail::require_extent(fn, "cot", cot, 0, mask.extent(0), "one cotangent per row");
  rlhf::detail::require_nonneg_param(eps, fn, "eps");
  rlhf::detail::require_finite(tag, fn, "cot", cot);
  std::vector<double> c;
  cpu_engine::mask_pass(fn, mask, cpu_engine::inputs<float, 0>{false, {}, {}}, "mask", c);
  std::vector<double> scale(c.size());
  for (index_t b = 0; b < mask.extent(0); ++b) {
    const auto i = static_cast<std::size_t>(b);
    scale[i] = c[i] + eps > 0 ? static_cast<double>(cot(b)) / (c[i] + eps) : 0.0;
    if (!std::isfinite(scale[i]))
      rlhf::detail::fail(error_kind::non_finite, fn, "cot",
                         "row " + std::to_string(b) + ": the gradient overflows (a mask whose row sum is ~0?)");
  }
  detail::write_row_scaled(fn, mask, scale, dvalues, c.data());
}

/// Per-row masked sums: out[b] = sum_t m[b, t] v[b, t] (a sequence's
/// log-probability from its token log-probs).
template <class T, class M>
void masked_sum_rows(cpu_t tag, tensor_view<T, 2> values, tensor_view<M, 2> mask, out_view<T, 1> out) {
  constexpr const char* fn = "ops::masked_sum_rows";
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_out_extent(fn, "out", out, 0, values.extent(0), "one sum per row");
  std::vector<double> s, c;
  detail::row_sums(tag, fn, values, mask, s, c);
  for (index_t b = 0; b < values.extent(0); ++b) out(b) = static_cast<value_t<T>>(s[static_cast<std::size_t>(b)]);
}

/// VJP of masked_sum_rows: dvalues[b, t] = cot[b] * m[b, t].
template <class T, class M>
void masked_sum_rows_backward(cpu_t tag, tensor_view<M, 2> mask, tensor_view<T, 1> cot, out_view<T, 2> dvalues) {
  constexpr const char* fn = "ops::masked_sum_rows_backward";
  rlhf::detail::require_same_shape(fn, "dvalues", dvalues, "mask", mask);
  rlhf::detail::require_extent(fn, "cot", cot, 0, mask.extent(0), "one cotangent per row");
  rlhf::detail::require_finite(tag, fn, "cot", cot);
  std::vector<double> scale(static_cast<std::size_t>(mask.extent(0)));
  for (index_t b = 0; b < mask.extent(0); ++b) scale[static_cast<std::size_t>(b)] = static_cast<double>(cot(b));
  detail::write_row_scaled(fn, mask, scale, dvalues);
}

/// sum of v^2 over every entry (the squared norm of a gradient).
template <class T>
double sum_squares(cpu_t, tensor_view<T, 2> v) {
  return cpu_loops::sum_2d(v.extent(0), v.extent(1), [&](index_t b, index_t t) {
    const double x = static_cast<double>(v(b, t));
    return x * x;
  });
}

/// Sequence scores placed on each row's last valid token (verl's
/// token_level_scores of an outcome reward): out[b, last_b] = scores[b], 0
/// elsewhere. A row without a valid token is an `empty` error.
template <class T, class M>
void place_at_last_token(cpu_t tag, tensor_view<T, 1> scores, tensor_view<M, 2> mask, out_view<T, 2> out) {
  constexpr const char* fn = "ops::place_at_last_token";
  rlhf::detail::require_extent(fn, "scores", scores, 0, mask.extent(0), "one score per row of the mask");
  rlhf::detail::require_same_shape(fn, "out", out, "mask", mask);
  rlhf::detail::require_finite(tag, fn, "scores", scores);
  for (index_t b = 0; b < mask.extent(0); ++b) {
    index_t last = -1;
    for (index_t t = 0; t < mask.extent(1); ++t) {
      out(b, t) = value_t<T>(0);
      if (detail::on(mask(b, t))) last = t;
    }
    if (last < 0)
      rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has an empty response at row " + std::to_string(b));
    out(b, last) = scores(b);
  }
}

struct prob_diff_stats {
  double max = 0, mean = 0;  ///< over valid tokens, of |exp(logp_a) - exp(logp_b)|
};

/// How far two policies' token probabilities are apart on the valid tokens
/// (verl's training/rollout_probs_diff_max and _mean: the trainer's
/// recomputed old log-probs against the sampler's).
template <class T, class U, class M>
prob_diff_stats prob_diff(cpu_t tag, tensor_view<T, 2> logp_a, tensor_view<U, 2> logp_b, tensor_view<M, 2> mask) {
  constexpr const char* fn = "ops::prob_diff";
  detail::check_values_mask(tag, fn, logp_a, mask);
  rlhf::detail::require_same_shape(fn, "logp_b", logp_b, "logp_a", logp_a);
  rlhf::detail::require_finite(tag, fn, "logp_b", logp_b);
  prob_diff_stats r;
  double n = 0, s = 0;
  cpu_loops::for_each_2d(mask.extent(0), mask.extent(1), [&](index_t b, index_t t) {
    if (!detail::on(mask(b, t))) return;
    const double d =
        std::fabs(std::exp(static_cast<double>(logp_a(b, t))) - std::exp(static_cast<double>(logp_b(b, t))));
    r.max = std::fmax(r.max, d);
    s += static_cast<double>(mask(b, t)) * d;
    n += static_cast<double>(mask(b, t));
  });
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  r.mean = s / n;
  return r;
}

struct masked_var_result {
  double var;   ///< the (biased or unbiased) variance
  double mean;  ///< the masked mean it was centred on
};

namespace detail {
struct moments {
  double n = 0, mean = 0, ss = 0, sd = 0;  ///< sum m, mean, sum m (v - mean)^2, sum m (v - mean)
  std::vector<double> counts;              ///< each row's mask sum (for a later pass over the same mask)
};
/// The masked moments of `values` in two passes of the CPU engine (the
/// first with the mask's pass: its NaN / Inf scans and row counts; the
/// second reuses the counts), the mean over (n + eps). n = 0 gives mean 0
/// and no error: the caller checks n with its own message.
template <class T, class M>
moments local_moments(cpu_t tag, const char* fn, tensor_view<T, 2> values, tensor_view<M, 2> mask, double eps,
                      double* total = nullptr) {
  using V = value_t<T>;
  const agg_params sum = agg_params::token_sum();
  cpu_engine::run_options o = sum_options();
  const std::array<tensor_view<V, 2>, 1> none{};
  moments m;
  m.counts.assign(static_cast<std::size_t>(values.extent(0)), 0.0);
  o.row_counts = m.counts.data();
  const auto s1 = cpu_engine::run<1, 0>(fn, rules::value_token<strided2<V>>{strided(values)}, mask, sum, none,
                                        cpu_engine::inputs<V, 1>{tag.check_finite, {"values"}, {values}}, o);
  m.n = s1.n;
  if (total != nullptr) *total = s1.value;
  if (!(m.n > 0)) return m;
  m.mean = s1.value / (m.n + eps);
  o.row_counts = nullptr;
  o.counts = m.counts.data();
  const auto s2 = cpu_engine::run<1, 2>(fn, rules::centered_token<strided2<V>>{strided(values), m.mean}, mask, sum,
                                        none, cpu_engine::inputs<V, 1>{false, {"values"}, {values}}, o);
  m.ss = s2.stat[0];
  m.sd = s2.stat[1];
  return m;
}

/// The masked moments over every rank of the tag: each rank's own about its
/// own mean (n_r, sum_r, ss_r, sd_r, mean_r), one collective, then Chan's
/// combination about the global mean mu = sum / (n + eps):
///   ss = sum_r ss_r + 2 (mean_r - mu) sd_r + n_r (mean_r - mu)^2,
///   sd = sum_r sd_r + n_r (mean_r - mu)   (exact for any weights).
/// One process: local_moments itself.
template <class Tag, class T, class M>
moments masked_moments(const Tag& tag, const char* fn, tensor_view<T, 2> values, tensor_view<M, 2> mask, double eps) {
  if constexpr (!is_distributed_v<Tag>) {
    return local_moments(cpu_t{tag.check_finite}, fn, values, mask, eps);
  } else {
    const auto& comm = *tag.comm;
    dist::failure mine;
    moments m;
    double total = 0;
    dist::local_phase(comm, mine, [&] { m = local_moments(cpu_t{tag.check_finite}, fn, values, mask, 0.0, &total); });
    const double part[5] = {m.n, total, m.ss, m.sd, m.mean};
    const dist::frames g = dist::exchange(comm, mine, part);
    moments r;
    r.counts = std::move(m.counts);
    r.n = g.sum(0);
    if (!(r.n > 0)) return r;
    r.mean = g.sum(1) / (r.n + eps);
    for (std::size_t k = 0; k < g.ranks(); ++k) {
      const double d = g.at(k, 4) - r.mean;
      r.ss += g.at(k, 2) + 2 * d * g.at(k, 3) + g.at(k, 0) * d * d;
      r.sd += g.at(k, 3) + g.at(k, 0) * d;
    }
    return r;
  }
}
}  // namespace detail

/// Masked variance (verl masked_var); d var / d values into `dvalues` when given.
template <class Tag, class T, class M>
requires(backend<Tag>&& is_host_backend_v<Tag>) masked_var_result
    masked_var(Tag tag, tensor_view<T, 2> values, tensor_view<M, 2> mask, bool unbiased = true, double eps = 1e-8,
               out_view<T, 2> dvalues = {}) {
  constexpr const char* fn = "ops::masked_var";
  [[maybe_unused]] const engine::op_scope scope(tag);
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_nonneg_param(eps, fn, "eps");
  rlhf::detail::require_output(fn, "dvalues", dvalues, "values", values);
  const auto mo = detail::masked_moments(tag, fn, values, mask, eps);
  const double n = mo.n;
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  if (unbiased && !(n > 1))
    rlhf::detail::fail(error_kind::empty, fn, "mask",
                       "has fewer than 2 valid elements: the unbiased variance is undefined");
  const index_t B = values.extent(0), T_ = values.extent(1);
  const double D = n + eps, mu = mo.mean;
  const double bessel = unbiased ? n / (n - 1) : 1.0;
  const double var = mo.ss / D * bessel;
  const double gf = engine::gradient_factor(tag);
  rlhf::detail::require_finite_result(var, fn, "values", "the variance overflows");  // before any write
  if (!dvalues.null())
    cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
      const double m = static_cast<double>(mask(b, t));
      const double c = detail::on(mask(b, t)) ? static_cast<double>(values(b, t)) - mu : 0.0;
      dvalues(b, t) = static_cast<value_t<T>>(gf * (bessel / D * (2 * m * c - 2 * mo.sd * m / D)));
    });
  if (!dvalues.null()) rlhf::detail::require_finite_output(fn, "values", tensor_view<const value_t<T>, 2>(dvalues));
  return {var, mu};
}

/// Conventions of masked whitening (defaults: verl).
struct whiten_params {
  bool shift_mean = true;  ///< false adds the mean back (verl shift_mean=False)
  bool unbiased = true;    ///< variance with Bessel's correction (verl, TRL)
  double mean_eps = 1e-8;  ///< masked_mean denominator epsilon (verl 1e-8, TRL 0)
  double var_eps = 1e-8;   ///< added to the variance under the rsqrt

  static constexpr whiten_params verl(bool shift = true) { return {shift, true, 1e-8, 1e-8}; }
  static constexpr whiten_params trl(bool shift = true) { return {shift, true, 0.0, 1e-8}; }
};

struct whiten_stats {
  double mean, var;
};

namespace detail {
/// masked_whiten's work; `times_mask`: out = whitened values times the mask.
template <class Tag, class T, class M>
whiten_stats whiten_into(Tag tag, const char* fn, tensor_view<T, 2> values, tensor_view<M, 2> mask,
                         const whiten_params& p, out_view<T, 2> out, bool times_mask) {
  [[maybe_unused]] const engine::op_scope scope(tag);
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_same_shape(fn, "out", out, "values", values);
  rlhf::detail::require_nonneg_param(p.var_eps, fn, "var_eps");
  const auto mo = detail::masked_moments(tag, fn, values, mask, p.mean_eps);
  if (!(mo.n >= 2)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has fewer than 2 valid elements: cannot whiten");
  const double var = mo.ss / (mo.n + p.mean_eps) * (p.unbiased ? mo.n / (mo.n - 1) : 1.0);
  const double s = 1.0 / std::sqrt(var + p.var_eps);
  if (!std::isfinite(s))
    rlhf::detail::fail(error_kind::empty, fn, "values",
                       "has zero variance and var_eps = 0: the whitening is undefined");
  // the map (every position, masked ones included): one raw pass of the engine
  using V = value_t<T>;
  using MV = std::remove_const_t<value_t<M>>;
  cpu_engine::run_options o = detail::sum_options(true);
  o.counts = mo.counts.data();  // the moments' mask pass stands
  const rules::whiten_token<strided2<V>, strided2<MV>> rule{strided(values), mo.mean, s, p.shift_mean,
                                                            times_mask ? strided(mask) : strided2<MV>{}};
  cpu_engine::run<1, 0>(fn, rule, mask, agg_params::token_sum(), std::array<tensor_view<V, 2>, 1>{out},
                        cpu_engine::inputs<V, 1>{false, {"values"}, {values}}, o);
  return {mo.mean, var};
}
}  // namespace detail

/// out = whitened values (every position), with the mean and variance
/// over every rank's elements under tag.with(comm). `out` may alias `values`.
template <class Tag, class T, class M>
requires(backend<Tag>&& is_host_backend_v<Tag>) whiten_stats
    masked_whiten(Tag tag, tensor_view<T, 2> values, tensor_view<M, 2> mask, const whiten_params& p,
                  out_view<T, 2> out) {
  return detail::whiten_into(tag, "ops::masked_whiten", values, mask, p, out, false);
}

/// VJP of masked_whiten: dvalues = J^T cot (through the mean and the variance).
template <class T, class M>
void masked_whiten_backward(cpu_t tag, tensor_view<T, 2> values, tensor_view<M, 2> mask, const whiten_params& p,
                            in_view<T, 2> cot, out_view<T, 2> dvalues) {
  constexpr const char* fn = "ops::masked_whiten_backward";
  detail::check_values_mask(tag, fn, values, mask);
  rlhf::detail::require_same_shape(fn, "cot", cot, "values", values);
  rlhf::detail::require_finite(tag, fn, "cot", cot);
  rlhf::detail::require_same_shape(fn, "dvalues", dvalues, "values", values);
  rlhf::detail::require_nonneg_param(p.mean_eps, fn, "mean_eps");
  rlhf::detail::require_nonneg_param(p.var_eps, fn, "var_eps");
  const index_t B = values.extent(0), T_ = values.extent(1);
  tensor<value_t<T>, 2> dvar({B, T_});
  const auto st = masked_var(tag.unchecked(), values, mask, p.unbiased, p.mean_eps, dvar.view());
  const double n = mask_count(tag, mask);
  if (!(n >= 2)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has fewer than 2 valid elements: cannot whiten");
  const double D = n + p.mean_eps;
  const double s = 1.0 / std::sqrt(st.var + p.var_eps);
  if (!std::isfinite(s) || !std::isfinite(st.var))
    rlhf::detail::fail(std::isfinite(st.var) ? error_kind::empty : error_kind::non_finite, fn, "values",
                       std::isfinite(st.var) ? "has zero variance and var_eps = 0: the whitening is undefined"
                                             : "has a variance that overflows");
  double G = 0, Gc = 0;  // sum cot, sum cot * (v - mu)
  cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
    G += static_cast<double>(cot(b, t));
    Gc += static_cast<double>(cot(b, t)) * (static_cast<double>(values(b, t)) - st.mean);
  });
  const double ds = -0.5 * s * s * s;  // d s / d var
  cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
    const double dmu = static_cast<double>(mask(b, t)) / D;
    double g = static_cast<double>(cot(b, t)) * s - s * dmu * G + Gc * ds * static_cast<double>(dvar(b, t));
    if (!p.shift_mean) g += G * dmu;
    dvalues(b, t) = static_cast<value_t<T>>(g);
  });
  rlhf::detail::require_finite_output(fn, "cot", dvalues);  // an overflow of J^T cot
}

}  // namespace rlhf::ops

namespace rlhf {
using ops::whiten_params;
using ops::whiten_stats;
}  // namespace rlhf
