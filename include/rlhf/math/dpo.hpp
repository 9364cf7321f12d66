// rlhf++ — per-pair DPO-family losses as functions of their scalar arguments.
//
// Each returns the value and the derivative(s) with respect to its input(s);
// objectives/dpo.hpp composes them with the scores of the chosen and rejected
// responses. z = beta * delta, eps = label smoothing.
//   sigmoid (cDPO)  -(1-eps) log s(z) - eps log s(-z)
//   robust          (-(1-eps) log s(z) + eps log s(-z)) / (1 - 2 eps)
//   exo_pair        s(z)(log s(z) - log(1-eps)) + s(-z)(log s(-z) - log eps)
//   hinge           relu(1 - z)
//   ipo             (delta - 1/(2 beta))^2
//   discopop        -log s(z)(1 - w) + exp(-z) w,  w = s(z / tau)
#pragma once

#include <cmath>

#include "../core/numerics.hpp"
#include "clamp.hpp"

namespace rlhf::math {

RLHF_HD inline dual dpo_sigmoid(double z, double eps) {
  using num::log_sigmoid;
  using num::sigmoid;
  return {-(1.0 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z), -(1.0 - eps) * sigmoid(-z) + eps * sigmoid(z)};
}

RLHF_HD inline dual dpo_robust(double z, double eps) {
  using num::log_sigmoid;
  using num::sigmoid;
  const double k = 1.0 - 2.0 * eps;
  return {(-(1.0 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / k,
          (-(1.0 - eps) * sigmoid(-z) - eps * sigmoid(z)) / k};
}

RLHF_HD inline dual dpo_exo(double z, double eps) {
  using num::log_sigmoid;
  using num::sigmoid;
  const double sp = sigmoid(z), sn = sigmoid(-z);
  const double v = sp * (log_sigmoid(z) - std::log1p(-eps)) + sn * (log_sigmoid(-z) - std::log(eps));
  // d/dz = s(z) s(-z) (z - log((1-eps)/eps)), since log s(z) - log s(-z) = z
  return {v, sp * sn * (z - std::log1p(-eps) + std::log(eps))};
}

RLHF_HD inline dual dpo_hinge(double z) { return 1.0 - z > 0 ? dual{1.0 - z, -1.0} : dual{0.0, 0.0}; }

RLHF_HD inline dual dpo_ipo(double delta, double beta) {
  const double e = delta - 1.0 / (2.0 * beta);
  return {e * e, 2.0 * e};
}

/// DiscoPOP: exact where the reference overflows (exp(-z) w = exp(-z + log s(z/tau))).
RLHF_HD inline dual dpo_discopop(double z, double tau) {
  using num::log_sigmoid;
  using num::sigmoid;
  const double w = sigmoid(z / tau);
  const double lw = log_sigmoid(z / tau);
  const double ew = std::exp(-z + lw);  // exp(-z) * w without inf * 0
  const double logistic = -log_sigmoid(z);
  const double v = logistic * (1.0 - w) + ew;
  // d/dz: -s(-z)(1-w) - logistic * w' + (-1) ew + exp(-z) w', w' = w (1-w) / tau
  const double wp_over_w = (1.0 - w) / tau;  // w'/w
  const double d = -sigmoid(-z) * (1.0 - w) - logistic * w * wp_over_w - ew + ew * wp_over_w;
  return {v, d};
}

}  // namespace rlhf::math
