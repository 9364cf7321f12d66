// rlhf++ — value-and-derivative helpers with torch's tie rules.
//
// The references are differentiated by torch autograd, whose conventions we
// reproduce exactly: clamp passes the gradient when the input equals a bound;
// maximum/minimum of two tensors split the gradient 1/2-1/2 on exact ties;
// abs'(0) = 0. Written over a real R (math/real.hpp): double, or a vector of
// lanes on the CPU engine; the selects are branch-free.
#pragma once

#include <cmath>

#include "real.hpp"

namespace rlhf::math {

/// A value and its derivative with respect to one input.
template <class R>
struct dual_t {
  R v, d;
};
using dual = dual_t<double>;

template <class R>
RLHF_HD_INLINE dual_t<R> clamp(const dual_t<R>& x, double lo, double hi) {
  if (lo == -INFINITY && hi == INFINITY) return x;  // (a clamp that is off: the same result, no selects)
  using S = scalar_of<R>;
  const S l = static_cast<S>(lo), h = static_cast<S>(hi);
  const auto below = x.v<l, above = x.v> h;
  return {sel(below, l - R{}, sel(above, h - R{}, x.v)), sel(below | above, R{}, x.d)};
}

template <class R>
RLHF_HD_INLINE dual_t<R> maximum(const dual_t<R>& a, const dual_t<R>& b) {
  const auto gt = a.v > b.v, lt = b.v > a.v;
  return {sel(lt, b.v, a.v), sel(gt, a.d, sel(lt, b.d, scalar_of<R>(0.5) * a.d + scalar_of<R>(0.5) * b.d))};
}

template <class R>
RLHF_HD_INLINE dual_t<R> minimum(const dual_t<R>& a, const dual_t<R>& b) {
  const auto lt = a.v < b.v, gt = b.v < a.v;
  return {sel(gt, b.v, a.v), sel(lt, a.d, sel(gt, b.d, scalar_of<R>(0.5) * a.d + scalar_of<R>(0.5) * b.d))};
}

template <class R>
RLHF_HD_INLINE R sign(const R& x) {
  return sel(x > R{}, lit<R>(1.0), sel(x < R{}, lit<R>(-1.0), R{}));
}

}  // namespace rlhf::math
