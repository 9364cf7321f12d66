// rlhf++ — log-probabilities and entropy from logits, with their backward.
//
// For each row z of [N, V] logits (after division by the temperature tau):
//   lse   = log sum_k exp(z_k)               (online max, one pass)
//   logp  = z_label - lse                    (verl logprobs_from_logits)
//   H     = lse - sum_k p_k z_k,  p = softmax(z)   (verl entropy_from_logits)
// Backward, with upstream g = dL/dlogp and h = dL/dH:
//   dL/dz_k = g (1[k = label] - p_k) - h p_k (log p_k + H)
// (divided by tau for the raw logits). The softmax is never stored: extra
// memory is O(1) per row; dlogits may alias logits (in place).
// The work is done by the fused kernels of backend/cpu/logits_kernels.hpp
// (one streaming pass per row, one exp per element, SIMD chosen at run time);
// views whose rows are not contiguous take the plain reference loops below.
#pragma once

#include <cmath>
#include <type_traits>
#include <vector>

#include "../backend/cpu/logits_kernels.hpp"
#include "../backend/cpu/loops.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"

namespace rlhf::ops {

struct logits_params {
  double temperature = 1.0;
};

namespace detail {
template <class T, class L>
void check_logits(cpu_t tag, const char* fn, const tensor_view<T, 2>& logits, const tensor_view<L, 1>& labels,
                  bool need_labels) {
  rlhf::detail::require_nonempty(fn, "logits", logits);
  rlhf::detail::require_finite(tag, fn, "logits", logits);
  if (!need_labels) return;
  rlhf::detail::require_extent(fn, "labels", labels, 0, logits.extent(0), "one label per logits row");
  const index_t V = logits.extent(1);
  for (index_t i = 0; i < labels.extent(0); ++i) {
    const auto l = static_cast<long long>(labels(i));
    if (l < 0 || l >= V)
      rlhf::detail::fail(error_kind::shape, fn, "labels",
                         "holds " + std::to_string(l) + " at [" + std::to_string(i) + "], outside the vocabulary [0, " +
                             std::to_string(V) + ")");
  }
}

/// Arguments of the forward entry points (fast and plain).
template <class T, class L, class O>
void check_forward(cpu_t tag, const char* fn, const tensor_view<T, 2>& logits, const tensor_view<L, 1>& labels,
                   const O& logp, const O& entropy, const O& lse, const logits_params& p) {
  check_logits(tag, fn, logits, labels, !logp.null());
  rlhf::detail::require_positive_param(p.temperature, fn, "temperature");
  for (const O* o : {&logp, &entropy, &lse})
    if (!o->null()) rlhf::detail::require_out_extent(fn, "output", *o, 0, logits.extent(0), "one value per logits row");
}

/// Arguments of the backward entry points (fast and plain).
template <class T, class L, class I, class O>
void check_backward(cpu_t tag, const char* fn, const tensor_view<T, 2>& logits, const tensor_view<L, 1>& labels,
                    const I& dlogp, const I& dentropy, const O& dlogits, const logits_params& p) {
  check_logits(tag, fn, logits, labels, !dlogp.null());
  rlhf::detail::require_same_shape(fn, "dlogits", dlogits, "logits", logits);
  rlhf::detail::require_positive_param(p.temperature, fn, "temperature");
  const index_t N = logits.extent(0);
  if (!dlogp.null()) {
    rlhf::detail::require_extent(fn, "dlogp", dlogp, 0, N, "one upstream gradient per row");
    rlhf::detail::require_finite(tag, fn, "dlogp", dlogp);
  }
  if (!dentropy.null()) {
    rlhf::detail::require_extent(fn, "dentropy", dentropy, 0, N, "one upstream gradient per row");
    rlhf::detail::require_finite(tag, fn, "dentropy", dentropy);
  }
}

/// Finite logits whose row results overflow (|z| / tau near the largest
/// value of the precision): a `non_finite` error naming the logits.
inline void require_rows_finite(const char* fn, index_t bad_row) {
  if (bad_row >= 0)
    rlhf::detail::fail(error_kind::non_finite, fn, "logits",
                       "row " + std::to_string(bad_row) +
                           ": the log-probability, entropy or gradient overflows for these finite logits (|logits| / "
                           "temperature too large for the precision)");
}

/// Rows [0, N) in parallel, each f(i) -> whether row i overflowed; the first such row, or -1.
template <class F>
index_t rows_checked(index_t N, bool heavy, F&& f) {
  std::vector<unsigned char> bad(static_cast<std::size_t>(N), 0);
  cpu_loops::for_each_row(N, heavy, [&](index_t i) { bad[static_cast<std::size_t>(i)] = f(i) ? 1 : 0; });
  for (index_t i = 0; i < N; ++i)
    if (bad[static_cast<std::size_t>(i)] != 0) return i;
  return -1;
}

/// Row statistics: max, sum exp(z - max), sum exp(z - max) z (all of z / tau).
template <class Row>
inline void row_stats(const Row& z, index_t V, double inv_tau, double& lse, double& mean_z) {
  double m = -INFINITY;
  for (index_t k = 0; k < V; ++k) m = std::fmax(m, static_cast<double>(z(k)) * inv_tau);
  double s = 0, sz = 0;
  for (index_t k = 0; k < V; ++k) {
    const double x = static_cast<double>(z(k)) * inv_tau;
    const double e = std::exp(x - m);
    s += e;
    sz += e * x;
  }
  lse = m + std::log(s);
  mean_z = sz / s;
}
}  // namespace detail

/// Plain reference loop of logprobs_entropy (any strides).
template <class T, class L>
void plain_logprobs_entropy(cpu_t tag, tensor_view<T, 2> logits, tensor_view<L, 1> labels, out_view<T, 1> logp,
                            out_view<T, 1> entropy = {}, out_view<T, 1> lse = {}, const logits_params& p = {}) {
  detail::check_forward(tag, "ops::plain_logprobs_entropy", logits, labels, logp, entropy, lse, p);
  const index_t N = logits.extent(0), V = logits.extent(1);
  const double inv_tau = 1.0 / p.temperature;
  detail::require_rows_finite(
      "ops::plain_logprobs_entropy", detail::rows_checked(N, V >= 4096, [&](index_t i) {
        const auto z = logits.row(i);
        double l, mz;
        detail::row_stats(z, V, inv_tau, l, mz);
        using Vt = value_t<T>;
        bool bad = !std::isfinite(static_cast<Vt>(l)) || !std::isfinite(static_cast<Vt>(l - mz));
        if (!logp.null()) {
          const double lp = static_cast<double>(z(static_cast<index_t>(labels(i)))) * inv_tau - l;
          logp(i) = static_cast<Vt>(lp > 0 ? 0.0 : lp);  // log p <= 0 exactly (rounding can give +1 ulp)
          bad = bad || !std::isfinite(logp(i));
        }
        if (!entropy.null()) {
          const double h = l - mz;
          entropy(i) = static_cast<Vt>(h < 0 ? 0.0 : h);
        }
        if (!lse.null()) lse(i) = static_cast<Vt>(l);
        return bad;
      }));
}

/// Plain reference loop of logprobs_entropy_backward (any strides).
template <class T, class L>
void plain_logprobs_entropy_backward(cpu_t tag, tensor_view<T, 2> logits, tensor_view<L, 1> labels, in_view<T, 1> dlogp,
                                     in_view<T, 1> dentropy, out_view<T, 2> dlogits, const logits_params& p = {}) {
  detail::check_backward(tag, "ops::plain_logprobs_entropy_backward", logits, labels, dlogp, dentropy, dlogits, p);
  const index_t N = logits.extent(0), V = logits.extent(1);
  const double inv_tau = 1.0 / p.temperature;
  const index_t bad_row = detail::rows_checked(N, V >= 4096, [&](index_t i) {
    const auto z = logits.row(i);
    const auto dz = dlogits.row(i);
    double l, mz;
    detail::row_stats(z, V, inv_tau, l, mz);
    const double H = l - mz;
    const double g = dlogp.null() ? 0.0 : static_cast<double>(dlogp(i));
    const double h = dentropy.null() ? 0.0 : static_cast<double>(dentropy(i));
    const index_t label = dlogp.null() ? -1 : static_cast<index_t>(labels(i));
    value_t<T> probe = 0;  // 0 while every gradient is finite
    for (index_t k = 0; k < V; ++k) {
      // log p below -1e4 has p = 0 exactly: the floor keeps p (log p + H) at 0, not 0 * -Inf
      const double lp = std::fmax(static_cast<double>(z(k)) * inv_tau - l, -1e4);
      const double pk = std::exp(lp);
      const double d = g * ((k == label ? 1.0 : 0.0) - pk) - h * pk * (lp + H);
      const auto dv = static_cast<value_t<T>>(d * inv_tau);
      probe += dv - dv;
      dz(k) = dv;
    }
    return !(probe == 0) || !std::isfinite(l);
  });
  detail::require_rows_finite("ops::plain_logprobs_entropy_backward", bad_row);
}

namespace detail {
/// Kernel arguments for contiguous rows; false when the views need the plain loops.
template <class T, class L>
bool kernel_args(const tensor_view<T, 2>& logits, const tensor_view<L, 1>& labels, bool use_labels,
                 cpu_kernels::logits_args<value_t<T>>& a, std::vector<long long>& label_copy) {
  if (logits.stride(1) != 1) return false;
  a.logits = logits.data();
  a.rows = logits.extent(0);
  a.V = logits.extent(1);
  a.row_stride = logits.stride(0);
  if (use_labels) {
    if constexpr (std::is_integral_v<value_t<L>> && (sizeof(L) == 4 || sizeof(L) == 8)) {
      a.labels = labels.data();
      a.label_bytes = static_cast<int>(sizeof(L));
      a.label_stride = labels.stride(0);
    } else {
      label_copy.resize(static_cast<std::size_t>(labels.extent(0)));
      for (index_t i = 0; i < labels.extent(0); ++i)
        label_copy[static_cast<std::size_t>(i)] = static_cast<long long>(labels(i));
      a.labels = label_copy.data();
      a.label_bytes = 8;
      a.label_stride = 1;
    }
  }
  return true;
}

template <class T>
bool same_stride(const tensor_view<T, 1>& a, const tensor_view<T, 1>& b) {
  return a.null() || b.null() || a.stride(0) == b.stride(0);
}
}  // namespace detail

/// Forward: any of logp [N], entropy [N], lse [N] (null views are skipped).
template <class T, class L>
void logprobs_entropy(cpu_t tag, tensor_view<T, 2> logits, tensor_view<L, 1> labels, out_view<T, 1> logp,
                      out_view<T, 1> entropy = {}, out_view<T, 1> lse = {}, const logits_params& p = {}) {
  detail::check_forward(tag, "ops::logprobs_entropy", logits, labels, logp, entropy, lse, p);
  cpu_kernels::logits_args<value_t<T>> a;
  std::vector<long long> lc;
  const index_t os = !logp.null()      ? logp.stride(0)
                     : !entropy.null() ? entropy.stride(0)
                     : !lse.null()     ? lse.stride(0)
                                       : 1;
  if (!detail::kernel_args(logits, labels, !logp.null(), a, lc) || !detail::same_stride(logp, entropy) ||
      !detail::same_stride(logp, lse) || !detail::same_stride(entropy, lse)) {
    plain_logprobs_entropy(tag.unchecked(), logits, labels, logp, entropy, lse, p);
    return;
  }
  a.logp = logp.data();
  a.entropy = entropy.data();
  a.lse = lse.data();
  a.out_stride = os;
  a.inv_tau = 1.0 / p.temperature;
  detail::require_rows_finite("ops::logprobs_entropy", cpu_kernels::run_logits(a, [](index_t, double, double) {
                                return cpu_kernels::row_grad{};
                              }));
}

/// Backward: dlogits = dlogp-part + dentropy-part; either upstream may be null.
/// `dlogits` may be the same memory as `logits` (in place: zero extra memory,
/// one more exp per element).
template <class T, class L>
void logprobs_entropy_backward(cpu_t tag, tensor_view<T, 2> logits, tensor_view<L, 1> labels, in_view<T, 1> dlogp,
                               in_view<T, 1> dentropy, out_view<T, 2> dlogits, const logits_params& p = {}) {
  detail::check_backward(tag, "ops::logprobs_entropy_backward", logits, labels, dlogp, dentropy, dlogits, p);
  cpu_kernels::logits_args<value_t<T>> a;
  std::vector<long long> lc;
  const bool aliased = static_cast<const void*>(dlogits.data()) == static_cast<const void*>(logits.data());
  if (!detail::kernel_args(logits, labels, !dlogp.null(), a, lc) || dlogits.stride(1) != 1 ||
      (aliased && dlogits.stride(0) != logits.stride(0))) {
    plain_logprobs_entropy_backward(tag.unchecked(), logits, labels, dlogp, dentropy, dlogits, p);
    return;
  }
  a.dlogits = dlogits.data();
  a.drow_stride = dlogits.stride(0);
  a.inv_tau = 1.0 / p.temperature;
  detail::require_rows_finite("ops::logprobs_entropy_backward",
                              cpu_kernels::run_logits(a, [&](index_t i, double, double) {
                                return cpu_kernels::row_grad{dlogp.null() ? 0.0 : static_cast<double>(dlogp(i)),
                                                             dentropy.null() ? 0.0 : static_cast<double>(dentropy(i))};
                              }));
}

}  // namespace rlhf::ops
