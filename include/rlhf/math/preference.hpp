// rlhf++ — per-sample terms of the reference-free and unpaired preference
// losses (the paired DPO family is math/dpo.hpp), written once for every
// backend:
//   KTO (Ethayarajh et al. 2024, arXiv 2402.01306): rho = logp - ref_logp,
//     desirable 1 - sigmoid(beta (rho - z)), undesirable 1 - sigmoid(beta (z - rho))
//     with z the detached KL estimate; APO-zero (D'Oosterlinck et al. 2024,
//     arXiv 2408.06266): 1 - sigmoid(beta rho), sigmoid(beta rho).
//   CPO (Xu et al. 2024, arXiv 2401.08417) on l = r_c - r_r: sigmoid
//     -logsig(beta l)(1 - eps) - logsig(-beta l) eps; SimPO (Meng et al. 2024,
//     arXiv 2405.14734) the same on l - gamma / beta; hinge relu(1 - beta l);
//     IPO (l - 1/(2 beta))^2; AlphaPO (Gupta et al. 2025, arXiv 2501.03884)
//     rewards r = (1 - exp(logp)^(-alpha)) / alpha.
//   ORPO (Hong et al. 2024, arXiv 2403.07691): log_odds = (c - r) -
//     (log1mexp(c) - log1mexp(r)), loss beta logsig(log_odds).
#pragma once

#include <cmath>

#include "../core/config.hpp"
#include "../core/numerics.hpp"

namespace rlhf::math {

/// A value and its derivative by the one input it depends on.
struct pref_term {
  double value, d;
};

/// KTO / APO-zero loss of one sample with rho = logp - ref_logp; `z` is the
/// detached KL estimate (kto), `desirable` its label.
RLHF_HD inline pref_term kto_sample(double rho, double z, bool desirable, bool apo, double beta) {
  if (apo) {
    const double a = beta * rho;
    const double s = num::sigmoid(a), sm = num::sigmoid(-a);  // sm = 1 - s, without the cancellation
    return desirable ? pref_term{sm, -beta * s * sm} : pref_term{s, beta * s * sm};
  }
  const double a = desirable ? beta * (rho - z) : beta * (z - rho);
  const double s = num::sigmoid(a), sm = num::sigmoid(-a);
  return {sm, desirable ? -beta * s * sm : beta * s * sm};
}

/// AlphaPO's reward of a log-prob and its derivative (alpha = 0: logp itself).
RLHF_HD inline pref_term alphapo_reward(double logp, double alpha) {
  if (alpha == 0) return {logp, 1.0};
  const double p = pow(exp(logp), -alpha);
  return {(1.0 - p) / alpha, p};
}

enum class cpo_kind { sigmoid, hinge, ipo, simpo };

/// CPO's loss of one pair as a function of l = r_c - r_r, and d loss / d l.
RLHF_HD inline pref_term cpo_pair(double l, cpo_kind k, double beta, double eps, double gamma) {
  switch (k) {
    case cpo_kind::hinge: {
      const double x = 1.0 - beta * l;
      return {x > 0 ? x : 0.0, x > 0 ? -beta : 0.0};
    }
    case cpo_kind::ipo: {
      const double x = l - 1.0 / (2.0 * beta);
      return {x * x, 2.0 * x};
    }
    case cpo_kind::simpo:
      l = l - gamma / beta;
      [[fallthrough]];
    case cpo_kind::sigmoid:
      break;
  }
  const double x = beta * l;
  return {-num::log_sigmoid(x) * (1.0 - eps) - num::log_sigmoid(-x) * eps,
          -beta * (1.0 - eps) * num::sigmoid(-x) + beta * eps * num::sigmoid(x)};
}

/// log(1 - exp(x)) for x < 0 (Maechler's switch at -log 2).
RLHF_HD inline double log1mexp(double x) { return x < -0.6931471805599453 ? log1p(-exp(x)) : log(-expm1(x)); }

struct orpo_term {
  double loss, log_odds, dc, dr;  ///< beta logsig(log_odds), log_odds, d loss / d c, d loss / d r
};
RLHF_HD inline orpo_term orpo_pair(double c, double r, double beta) {
  const double lo = (c - r) - (log1mexp(c) - log1mexp(r));
  const double g = beta * num::sigmoid(-lo);  // d loss / d log_odds
  // d log_odds / d c = 1 / (1 - e^c) = -1 / expm1(c)
  return {beta * num::log_sigmoid(lo), lo, -g / expm1(c), g / expm1(r)};
}

}  // namespace rlhf::math
