// rlhf++ — preference losses beyond DPO (formulas and papers: math/preference.hpp):
//   pref::kto_loss   unpaired desirable / undesirable samples against a
//                    reference (KTO, APO-zero): TRL KTOTrainer._compute_loss
//   pref::cpo_loss   reference-free pairs (CPO, SimPO, AlphaPO, hinge, IPO):
//                    TRL experimental CPOTrainer.cpo_loss
//   pref::orpo_loss  the odds-ratio term of ORPO: TRL experimental
//                    ORPOTrainer.odds_ratio_loss
// Inputs are sequence log-probabilities [B] (sums, or length averages where
// the trainer averages: SimPO, IPO, ORPO). Every output is per sample, in
// the inputs' order: the loss, the implicit reward (detached) and d loss_b /
// d input_b; the reported loss is the mean over samples (so the gradient of
// the mean is the per-sample derivative / B).
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../core/named_enum.hpp"
#include "../math/preference.hpp"

namespace rlhf::pref {

RLHF_BACKEND_FIRST(kto_loss)
RLHF_BACKEND_FIRST(cpo_loss)
RLHF_BACKEND_FIRST(orpo_loss)

// ---------------------------------------------------------------------------
// KTO

RLHF_NAMED_ENUM(kto_loss_type, (kto, "kto"), (apo_zero_unpaired, "apo_zero_unpaired"));

/// "kto" or "apo_zero_unpaired"; anything else is rlhf::error(param).
inline kto_loss_type parse_kto_loss_type(std::string_view s) {
  if (auto e = parse_enum<kto_loss_type>(s)) return *e;
  rlhf::detail::fail(error_kind::param, "pref::parse_kto_loss_type", "loss_type",
                     "unknown KTO loss '" + std::string(s) + "' (" + enum_name_list<kto_loss_type>() + ")");
}

struct kto_params {
  kto_loss_type type = kto_loss_type::kto;
  double beta = 0.1;  ///< KTOConfig default
  double desirable_weight = 1.0;
  double undesirable_weight = 1.0;
};

struct kto_result {
  double loss = 0;       ///< mean of the weighted per-sample losses
  double kl = 0;         ///< z = max(mean(KL_logps - ref_KL_logps), 0) (kto; 0 for apo_zero_unpaired)
  index_t chosen = 0;    ///< desirable samples
  index_t rejected = 0;  ///< undesirable samples
};

inline void check_kto_params(const kto_params& p, const char* fn) {
  rlhf::detail::require_finite_param(p.beta, fn, "beta");
  rlhf::detail::require_param(p.beta > 0, fn, "beta", "must be > 0");
  rlhf::detail::require_finite_param(p.desirable_weight, fn, "desirable_weight");
  rlhf::detail::require_finite_param(p.undesirable_weight, fn, "undesirable_weight");
  rlhf::detail::require_nonneg_param(p.desirable_weight, fn, "desirable_weight");
  rlhf::detail::require_nonneg_param(p.undesirable_weight, fn, "undesirable_weight");
}

/// KTO over B unpaired samples: `label` nonzero = desirable. kto needs the
/// mismatched pairs' log-probs `kl_logps`, `ref_kl_logps` [M >= 1] for the
/// detached KL estimate z; apo_zero_unpaired takes none (null views).
/// Outputs (each optional, [B]): `losses` (weighted), `rewards` = beta rho,
/// `dlogps` = d losses_b / d logps_b (the KL inputs get no gradient: z is
/// detached). No sample is rlhf::error(empty).
template <class T, class L>
kto_result kto_loss(cpu_t tag, tensor_view<T, 1> logps, in_view<T, 1> ref_logps, tensor_view<L, 1> label,
                    in_view<T, 1> kl_logps, in_view<T, 1> ref_kl_logps, const kto_params& p, out_view<T, 1> losses = {},
                    out_view<T, 1> rewards = {}, out_view<T, 1> dlogps = {}) {
  constexpr const char* fn = "pref::kto_loss";
  check_kto_params(p, fn);
  rlhf::detail::require_same_shape(fn, "ref_logps", ref_logps, "completion_logps", logps);
  rlhf::detail::require_same_shape(fn, "label", label, "completion_logps", logps);
  rlhf::detail::require_nonempty(fn, "completion_logps", logps);
  rlhf::detail::require_output(fn, "losses", losses, "completion_logps", logps);
  rlhf::detail::require_output(fn, "rewards", rewards, "completion_logps", logps);
  rlhf::detail::require_output(fn, "dlogps", dlogps, "completion_logps", logps);
  const bool apo = p.type == kto_loss_type::apo_zero_unpaired;
  if (!apo) {
    rlhf::detail::require_nonempty(fn, "KL_logps", kl_logps);
    rlhf::detail::require_same_shape(fn, "ref_KL_logps", ref_kl_logps, "KL_logps", kl_logps);
  }
  rlhf::detail::require_finite(tag, fn, "completion_logps", logps);
  rlhf::detail::require_finite(tag, fn, "ref_logps", ref_logps);
  if (!apo) {
    rlhf::detail::require_finite(tag, fn, "KL_logps", kl_logps);
    rlhf::detail::require_finite(tag, fn, "ref_KL_logps", ref_kl_logps);
  }
  kto_result r;
  if (!apo) {
    double s = 0;
    for (index_t i = 0; i < kl_logps.extent(0); ++i)
      s += static_cast<double>(kl_logps(i)) - static_cast<double>(ref_kl_logps(i));
    const double m = s / static_cast<double>(kl_logps.extent(0));
    rlhf::detail::require_finite_result(m, fn, "KL_logps", "the KL estimate overflows");
    r.kl = m > 0 ? m : 0.0;
  }
  const index_t B = logps.extent(0);
  std::vector<double> l(static_cast<std::size_t>(B)), rw(l.size()), d(l.size());
  double sum = 0;
  for (index_t b = 0; b < B; ++b) {
    const bool des = label(b) != L(0);
    const double rho = static_cast<double>(logps(b)) - static_cast<double>(ref_logps(b));
    const auto t = math::kto_sample(rho, r.kl, des, apo, p.beta);
    const double w = des ? p.desirable_weight : p.undesirable_weight;
    const auto i = static_cast<std::size_t>(b);
    l[i] = w * t.value;
    d[i] = w * t.d;
    rw[i] = p.beta * rho;
    sum += l[i];
    (des ? r.chosen : r.rejected) += 1;
    for (double x : {l[i], d[i], rw[i]})
      rlhf::detail::require_finite_result(x, fn, "completion_logps", "a loss, reward or gradient overflows");
  }
  r.loss = sum / static_cast<double>(B);
  using V = value_t<T>;
  for (index_t b = 0; b < B; ++b) {
    const auto i = static_cast<std::size_t>(b);
    if (!losses.null()) losses(b) = static_cast<V>(l[i]);
    if (!rewards.null()) rewards(b) = static_cast<V>(rw[i]);
    if (!dlogps.null()) dlogps(b) = static_cast<V>(d[i]);
  }
  return r;
}

// ---------------------------------------------------------------------------
// CPO, SimPO, AlphaPO

RLHF_NAMED_ENUM(cpo_loss_type, (sigmoid, "sigmoid"), (hinge, "hinge"), (ipo, "ipo"), (simpo, "simpo"));

/// sigmoid, hinge, ipo or simpo; anything else is rlhf::error(param).
inline cpo_loss_type parse_cpo_loss_type(std::string_view s) {
  if (auto e = parse_enum<cpo_loss_type>(s)) return *e;
  rlhf::detail::fail(error_kind::param, "pref::parse_cpo_loss_type", "loss_type",
                     "unknown CPO loss '" + std::string(s) + "' (" + enum_name_list<cpo_loss_type>() + ")");
}

struct cpo_params {
  cpo_loss_type type = cpo_loss_type::sigmoid;
  double beta = 0.1;             ///< CPOConfig default
  double label_smoothing = 0.0;  ///< eps (sigmoid, simpo)
  double simpo_gamma = 0.5;      ///< target margin gamma (simpo)
  double alpha = 0.0;            ///< AlphaPO's alpha; 0 = plain log-prob rewards

  /// SimPO (Meng et al. 2024): length-averaged log-probs, margin gamma.
  static cpo_params simpo(double beta = 2.0, double gamma = 0.5) {
    cpo_params p;
    p.type = cpo_loss_type::simpo;
    p.beta = beta;
    p.simpo_gamma = gamma;
    return p;
  }
  /// AlphaPO (Gupta et al. 2025): SimPO with the alpha reward.
  static cpo_params alphapo(double alpha, double beta = 2.0, double gamma = 0.5) {
    cpo_params p = simpo(beta, gamma);
    p.alpha = alpha;
    return p;
  }
};

inline void check_cpo_params(const cpo_params& p, const char* fn) {
  rlhf::detail::require_finite_param(p.beta, fn, "beta");
  rlhf::detail::require_param(p.beta > 0, fn, "beta", "must be > 0");
  rlhf::detail::require_param(p.label_smoothing >= 0 && p.label_smoothing <= 0.5, fn, "label_smoothing",
                              "must be in [0, 0.5]");
  rlhf::detail::require_finite_param(p.simpo_gamma, fn, "simpo_gamma");
  rlhf::detail::require_finite_param(p.alpha, fn, "alpha");
}

/// The pair outputs (each optional, [B]).
template <class T>
struct pair_outputs {
  tensor_view<T, 1> losses{}, chosen_rewards{}, rejected_rewards{}, dchosen{}, drejected{};
};

namespace detail {
template <class T, class R, class O>
void check_pairs(const char* fn, const T& chosen, const R& rejected, const O& o) {
  rlhf::detail::require_same_shape(fn, "policy_rejected_logps", rejected, "policy_chosen_logps", chosen);
  rlhf::detail::require_output(fn, "losses", o.losses, "policy_chosen_logps", chosen);
  rlhf::detail::require_output(fn, "chosen_rewards", o.chosen_rewards, "policy_chosen_logps", chosen);
  rlhf::detail::require_output(fn, "rejected_rewards", o.rejected_rewards, "policy_chosen_logps", chosen);
  rlhf::detail::require_output(fn, "dchosen", o.dchosen, "policy_chosen_logps", chosen);
  rlhf::detail::require_output(fn, "drejected", o.drejected, "policy_chosen_logps", chosen);
}
template <class V>
void write_pairs(const pair_outputs<V>& o, const std::vector<double> (&v)[5]) {
  const index_t B = static_cast<index_t>(v[0].size());
  for (index_t b = 0; b < B; ++b) {
    const auto i = static_cast<std::size_t>(b);
    if (!o.losses.null()) o.losses(b) = static_cast<V>(v[0][i]);
    if (!o.chosen_rewards.null()) o.chosen_rewards(b) = static_cast<V>(v[1][i]);
    if (!o.rejected_rewards.null()) o.rejected_rewards(b) = static_cast<V>(v[2][i]);
    if (!o.dchosen.null()) o.dchosen(b) = static_cast<V>(v[3][i]);
    if (!o.drejected.null()) o.drejected(b) = static_cast<V>(v[4][i]);
  }
}
}  // namespace detail

/// CPO-family loss of B pairs; returns the mean loss. No pair is
/// rlhf::error(empty).
template <class T>
double cpo_loss(cpu_t tag, tensor_view<T, 1> chosen, in_view<T, 1> rejected, const cpo_params& p,
                const pair_outputs<value_t<T>>& o = {}) {
  constexpr const char* fn = "pref::cpo_loss";
  check_cpo_params(p, fn);
  detail::check_pairs(fn, chosen, rejected, o);
  rlhf::detail::require_nonempty(fn, "policy_chosen_logps", chosen);
  rlhf::detail::require_finite(tag, fn, "policy_chosen_logps", chosen);
  rlhf::detail::require_finite(tag, fn, "policy_rejected_logps", rejected);
  const auto kind = static_cast<math::cpo_kind>(static_cast<int>(p.type));
  const index_t B = chosen.extent(0);
  std::vector<double> v[5];
  for (auto& x : v) x.resize(static_cast<std::size_t>(B));
  double sum = 0;
  for (index_t b = 0; b < B; ++b) {
    const auto rc = math::alphapo_reward(static_cast<double>(chosen(b)), p.alpha);
    const auto rr = math::alphapo_reward(static_cast<double>(rejected(b)), p.alpha);
    const auto t = math::cpo_pair(rc.value - rr.value, kind, p.beta, p.label_smoothing, p.simpo_gamma);
    const auto i = static_cast<std::size_t>(b);
    v[0][i] = t.value;
    v[1][i] = p.beta * rc.value;
    v[2][i] = p.beta * rr.value;
    v[3][i] = t.d * rc.d;
    v[4][i] = -t.d * rr.d;
    sum += t.value;
    for (auto& x : v)
      rlhf::detail::require_finite_result(x[i], fn, "policy_chosen_logps",
                                          "a loss, reward or gradient overflows (AlphaPO: exp(logp)^-alpha)");
  }
  detail::write_pairs(o, v);
  return sum / static_cast<double>(B);
}

// ---------------------------------------------------------------------------
// ORPO

struct orpo_result {
  double loss = 0;             ///< mean of beta logsig(log_odds) (<= 0: the trainer subtracts it)
  double log_odds_ratio = 0;   ///< mean of logsig(log_odds)
  double log_odds_chosen = 0;  ///< mean of log_odds
};

/// ORPO's odds-ratio term over B pairs of length-averaged log-probs (each
/// < 0: log1mexp is -inf at 0); losses = beta logsig(log_odds).
template <class T>
orpo_result orpo_loss(cpu_t tag, tensor_view<T, 1> chosen, in_view<T, 1> rejected, double beta,
                      const pair_outputs<value_t<T>>& o = {}) {
  constexpr const char* fn = "pref::orpo_loss";
  rlhf::detail::require_finite_param(beta, fn, "beta");
  rlhf::detail::require_param(beta > 0, fn, "beta", "must be > 0");
  detail::check_pairs(fn, chosen, rejected, o);
  rlhf::detail::require_nonempty(fn, "policy_chosen_logps", chosen);
  rlhf::detail::require_finite(tag, fn, "policy_chosen_logps", chosen);
  rlhf::detail::require_finite(tag, fn, "policy_rejected_logps", rejected);
  const index_t B = chosen.extent(0);
  for (index_t b = 0; b < B; ++b) {
    if (!(static_cast<double>(chosen(b)) < 0))
      rlhf::detail::fail(error_kind::non_finite, fn, "policy_chosen_logps",
                         "must be < 0 (a log-probability; log(1 - exp(0)) is -inf)");
    if (!(static_cast<double>(rejected(b)) < 0))
      rlhf::detail::fail(error_kind::non_finite, fn, "policy_rejected_logps",
                         "must be < 0 (a log-probability; log(1 - exp(0)) is -inf)");
  }
  std::vector<double> v[5];
  for (auto& x : v) x.resize(static_cast<std::size_t>(B));
  orpo_result r;
  double sr = 0, so = 0, sl = 0;
  for (index_t b = 0; b < B; ++b) {
    const double c = static_cast<double>(chosen(b)), rj = static_cast<double>(rejected(b));
    const auto t = math::orpo_pair(c, rj, beta);
    const auto i = static_cast<std::size_t>(b);
    v[0][i] = t.loss;
    v[1][i] = beta * c;
    v[2][i] = beta * rj;
    v[3][i] = t.dc;
    v[4][i] = t.dr;
    sr += num::log_sigmoid(t.log_odds);
    so += t.log_odds;
    sl += t.loss;
    for (auto& x : v)
      rlhf::detail::require_finite_result(x[i], fn, "policy_chosen_logps",
                                          "a loss or gradient overflows (log-probabilities too close to 0)");
  }
  r.log_odds_ratio = sr / static_cast<double>(B);
  r.log_odds_chosen = so / static_cast<double>(B);
  r.loss = sl / static_cast<double>(B);
  detail::write_pairs(o, v);
  return r;
}

}  // namespace rlhf::pref
