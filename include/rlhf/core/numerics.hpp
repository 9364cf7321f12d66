// rlhf++ — numerically stable scalar helpers.
//
// Written once and used by every backend (RLHF_HD). Each is exact in the
// regimes where the naive formula over- or underflows.
#pragma once

#include <cmath>

#include "config.hpp"

namespace rlhf::num {

/// log(sigmoid(x)) = -softplus(-x), without overflow for large |x|.
template <class T>
RLHF_HD inline T log_sigmoid(T x) {
  using std::exp;
  using std::log1p;
  return x >= T(0) ? -log1p(exp(-x)) : x - log1p(exp(x));
}

/// softplus(x) = log(1 + exp(x)), without overflow.
template <class T>
RLHF_HD inline T softplus(T x) {
  using std::exp;
  using std::log1p;
  return x > T(0) ? x + log1p(exp(-x)) : log1p(exp(x));
}

/// sigmoid(x) = 1 / (1 + exp(-x)), stable on both tails.
template <class T>
RLHF_HD inline T sigmoid(T x) {
  using std::exp;
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  const T e = exp(x);
  return e / (T(1) + e);
}

/// log(exp(a) + exp(b)).
template <class T>
RLHF_HD inline T logaddexp(T a, T b) {
  using std::exp;
  using std::log1p;
  const T m = a > b ? a : b;
  if (m == -INFINITY) return m;
  return m + log1p(exp(-(a > b ? a - b : b - a)));
}

/// Streaming log-sum-exp accumulator (online max): one pass, no overflow.
template <class T>
struct lse_accumulator {
  T max = -INFINITY;
  T sum = T(0);  // sum of exp(x - max)
  RLHF_HD void add(T x) {
    using std::exp;
    if (x > max) {
      sum = sum * exp(max - x) + T(1);
      max = x;
    } else {
      sum += exp(x - max);
    }
  }
  RLHF_HD T value() const {
    using std::log;
    return max + log(sum);
  }
};

/// log(sum(exp(x[i]))) over n values with stride.
template <class T>
RLHF_HD inline T logsumexp(const T* x, long n, long stride = 1) {
  using std::exp;
  using std::log;
  T m = -INFINITY;
  for (long i = 0; i < n; ++i) m = x[i * stride] > m ? x[i * stride] : m;
  if (m == -INFINITY || m == INFINITY) return m;
  T s = T(0);
  for (long i = 0; i < n; ++i) s += exp(x[i * stride] - m);
  return m + log(s);
}

}  // namespace rlhf::num
