// rlhf++ — value-and-derivative helpers with torch's tie rules.
//
// The references are differentiated by torch autograd, whose conventions we
// reproduce exactly: clamp passes the gradient when the input equals a bound;
// maximum/minimum of two tensors split the gradient 1/2-1/2 on exact ties;
// abs'(0) = 0.
#pragma once

#include "../core/config.hpp"

namespace rlhf::math {

/// A value and its derivative with respect to one input.
struct dual {
  double v, d;
};

RLHF_HD inline dual clamp(dual x, double lo, double hi) {
  if (x.v < lo) return {lo, 0.0};
  if (x.v > hi) return {hi, 0.0};
  return x;
}

RLHF_HD inline dual maximum(dual a, dual b) {
  if (a.v > b.v) return a;
  if (b.v > a.v) return b;
  return {a.v, 0.5 * (a.d + b.d)};
}

RLHF_HD inline dual minimum(dual a, dual b) {
  if (a.v < b.v) return a;
  if (b.v < a.v) return b;
  return {a.v, 0.5 * (a.d + b.d)};
}

RLHF_HD inline double sign(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

}  // namespace rlhf::math
