// rlhf++ — the DPO family (Rafailov et al. 2023) and its variants.
//
// Inputs are four [B] sequence log-probabilities: policy and reference, of the
// chosen and the rejected response. With x_c = c - ref_c, x_r = r - ref_r
// (the reference terms dropped when reference_free) and a per-response score
// g (the f-divergence: g(x) = x for reverse KL, log s(x) for JS,
// -exp(-a x)/a, exp((a-1) x)/(a-1) for alpha divergences),
//   delta = g(x_c) - g(x_r),  z = beta * delta
// and the per-pair loss is one of (math/dpo.hpp for the sigmoid family):
//   sigmoid, robust, exo_pair, hinge, ipo, discopop   functions of z (ipo: delta)
//   sigmoid_norm   sigmoid of beta (g(x_c)/len_c - g(x_r)/len_r)
//   sppo_hard      (S_c - 1/(2 beta))^2 + (S_r + 1/(2 beta))^2
//   nca_pair       -log s(beta S_c) - 1/2 log s(-beta S_c) - 1/2 log s(-beta S_r)
//   bco_pair       -log s(beta S_c) - log s(-beta S_r)
//   aot            sigmoid of beta (sort(c - r) - sort(ref_c - ref_r))
//   aot_unpaired   sigmoid of beta (sort(x_c) - sort(x_r))
//   apo_zero       1 - s(beta x_c) + s(beta x_r)
//   apo_down       s(beta x_c) + 1 - s(beta (x_c - x_r))
// where S = x (raw log ratios; TRL <= 0.28) or g(x) (TRL >= 1.0,
// scores_in_pair_losses). Implicit rewards beta (c - ref_c), beta (r - ref_r)
// always use the reference. Gradients are of mean_b(loss_b).
// References: TRL v0.28.0 DPOTrainer.dpo_loss, TRL HEAD DPOTrainer._compute_loss,
// OpenRLHF models/loss.py DPOLoss.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "../backend/engine.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../core/named_enum.hpp"
#include "../math/dpo.hpp"

namespace rlhf::dpo {

RLHF_BACKEND_FIRST(loss)
RLHF_BACKEND_FIRST(weighted_loss)
RLHF_BACKEND_FIRST(evaluate)

RLHF_NAMED_ENUM(loss_type, (sigmoid, "sigmoid"), (hinge, "hinge"), (ipo, "ipo"), (exo_pair, "exo_pair"),
                (nca_pair, "nca_pair"), (robust, "robust"), (bco_pair, "bco_pair"), (sppo_hard, "sppo_hard"),
                (aot, "aot"), (aot_unpaired, "aot_unpaired"), (apo_zero, "apo_zero"), (apo_down, "apo_down"),
                (discopop, "discopop"), (sigmoid_norm, "sigmoid_norm"));

/// TRL's names; "aot_pair" (TRL <= 0.27) is accepted for aot_unpaired.
inline loss_type parse_loss_type(std::string_view s) {
  if (s == "aot_pair") return loss_type::aot_unpaired;
  if (const auto t = parse_enum<loss_type>(s)) return *t;
  rlhf::detail::fail(error_kind::param, "dpo::parse_loss_type", "loss_type",
                     "unknown DPO loss type '" + std::string(s) + "' (" + enum_name_list<loss_type>() + ")");
}

/// The per-response score g of the f-divergence.
///   identity     reverse KL (standard DPO)
///   log_sigmoid  Jensen-Shannon
///   neg_exp      -exp(-alpha x) / alpha (TRL <= 0.28 alpha divergence; forward KL at alpha = 1)
///   power        exp((alpha - 1) x) / (alpha - 1) (TRL >= 1.0 alpha divergence, alpha != 1)
RLHF_NAMED_ENUM(score_fn, (identity, "identity"), (log_sigmoid, "log_sigmoid"), (neg_exp, "neg_exp"), (power, "power"));

struct params {
  loss_type type = loss_type::sigmoid;
  double beta = 0.1;
  double label_smoothing = 0.0;  ///< cDPO / robust / exo epsilon
  score_fn score = score_fn::identity;
  double alpha = 1.0;                  ///< alpha-divergence coefficient
  double exp_cap = 709.7827;           ///< clamp of the exponent in neg_exp/power (TRL cap_exp: float64 max)
  bool reference_free = false;         ///< drop the reference from the scores (TRL <= 0.28)
  bool smooth_sigmoid = true;          ///< label smoothing in sigmoid (TRL <= 0.28, OpenRLHF); TRL >= 1.0: false
  bool length_normalize = false;       ///< ipo, sigmoid_norm: scores / completion length (TRL >= 1.0)
  bool scores_in_pair_losses = false;  ///< nca/sppo/bco/discopop/apo_down use g(x) (TRL >= 1.0), else x
  double exo_zero_smoothing = 1e-3;    ///< exo_pair with eps = 0 uses this (TRL <= 0.28); 0: rlhf::error(param)
  double discopop_tau = 0.05;

  /// TRL <= 0.28 DPOTrainer.dpo_loss.
  static params trl(loss_type t, double beta = 0.1, double label_smoothing = 0.0) {
    params p;
    p.type = t;
    p.beta = beta;
    p.label_smoothing = label_smoothing;
    return p;
  }
  /// TRL >= 1.0 DPOTrainer._compute_loss.
  static params trl_v1(loss_type t, double beta = 0.1, double label_smoothing = 0.0) {
    params p = trl(t, beta, label_smoothing);
    p.smooth_sigmoid = false;
    p.length_normalize = true;
    p.scores_in_pair_losses = true;
    p.exo_zero_smoothing = 0.0;
    return p;
  }
  /// OpenRLHF DPOLoss(beta, label_smoothing, ipo).
  static params openrlhf(double beta, double label_smoothing = 0.0, bool ipo = false) {
    return trl(ipo ? loss_type::ipo : loss_type::sigmoid, beta, label_smoothing);
  }
};

/// Sets the f-divergence by TRL's name. classic = TRL <= 0.28 semantics
/// (alpha_divergence is -exp(-a x)/a); otherwise TRL >= 1.0 (forward_kl is
/// -exp(-x), alpha_divergence exp((a-1)x)/(a-1), identity at a = 1).
inline void set_f_divergence(params& p, std::string_view name, double alpha, bool classic) {
  p.alpha = alpha;
  if (name == "reverse_kl")
    p.score = score_fn::identity;
  else if (name == "js_divergence")
    p.score = score_fn::log_sigmoid;
  else if (name == "forward_kl" && !classic) {
    p.score = score_fn::neg_exp;
    p.alpha = 1.0;
    p.exp_cap = INFINITY;
  } else if (name == "alpha_divergence" && classic)
    p.score = score_fn::neg_exp;
  else if (name == "alpha_divergence") {
    p.score = std::fabs(alpha - 1.0) < 1e-6 ? score_fn::identity : score_fn::power;
    p.exp_cap = 80.0;
  } else
    rlhf::detail::fail(error_kind::param, "dpo::set_f_divergence", "f_divergence_type",
                       "unknown f-divergence '" + std::string(name) + "' (reverse_kl, " +
                           (classic ? "" : "forward_kl, ") + "js_divergence, alpha_divergence)");
}

/// Optional outputs; null views are skipped. Gradients are of the mean loss.
template <class T, class Space = host_space>
struct outputs {
  tensor_view<T, 1, Space> losses{}, chosen_rewards{}, rejected_rewards{}, dchosen{}, drejected{};
};

struct summary {
  double loss = 0;                                ///< mean per-pair loss (weighted sum of means for several types)
  double reward_margin = 0;                       ///< mean(chosen_rewards - rejected_rewards)
  double reward_accuracy = 0;                     ///< mean(chosen_rewards > rejected_rewards)
  double chosen_reward = 0, rejected_reward = 0;  ///< means of the implicit rewards
};

namespace detail {
/// Adds one pair's implicit rewards (chosen cr, rejected rj) to the
/// summary's means over B pairs.
inline void add_reward_pair(summary& s, double cr, double rj, double B) {
  s.chosen_reward += cr / B;
  s.rejected_reward += rj / B;
  s.reward_margin += (cr - rj) / B;
  s.reward_accuracy += (cr > rj ? 1.0 : 0.0) / B;
}
}  // namespace detail

/// One loss type with its weight (TRL's loss_type list with loss_weights, e.g. MPO).
struct weighted {
  params p;
  double weight = 1.0;
};

namespace detail {

RLHF_HD inline math::dual score(double x, const params& p) {
  switch (p.score) {
    case score_fn::identity:
      return {x, 1.0};
    case score_fn::log_sigmoid:
      return {num::log_sigmoid(x), num::sigmoid(-x)};
    case score_fn::neg_exp: {
      const double e = -p.alpha * x;
      if (e > p.exp_cap) return {-std::exp(p.exp_cap) / p.alpha, 0.0};
      const double v = std::exp(e);
      return {-v / p.alpha, v};
    }
    case score_fn::power: {
      const double e = (p.alpha - 1.0) * x;
      if (e > p.exp_cap) return {std::exp(p.exp_cap) / (p.alpha - 1.0), 0.0};
      const double v = std::exp(e);
      return {v / (p.alpha - 1.0), v};
    }
  }
  return {x, 1.0};
}

inline void check_params(const params& p, const char* fn) {
  rlhf::detail::require_positive_param(p.beta, fn, "beta");
  rlhf::detail::require_nonneg_param(p.label_smoothing, fn, "label_smoothing");
  rlhf::detail::require_param(p.label_smoothing < 1, fn, "label_smoothing", "must be < 1");
  if (p.type == loss_type::robust)
    rlhf::detail::require_param(p.label_smoothing != 0.5, fn, "label_smoothing",
                                "must not be 0.5 for the robust loss (it divides by 1 - 2 eps)");
  if (p.type == loss_type::exo_pair && p.label_smoothing == 0)
    rlhf::detail::require_param(p.exo_zero_smoothing > 0 && p.exo_zero_smoothing < 1, fn, "label_smoothing",
                                "must be > 0 for exo_pair (log eps)");
  if (p.score == score_fn::neg_exp || p.score == score_fn::power)
    rlhf::detail::require_param(std::isfinite(p.alpha) && p.alpha != 0 && (p.score != score_fn::power || p.alpha != 1),
                                fn, "alpha", "must be finite, non-zero (and != 1 for the power score)");
  rlhf::detail::require_positive_param(p.discopop_tau, fn, "discopop_tau");
}

/// The loss of one pair and its partials by the chosen and rejected
/// log-probs, for every type but aot / aot_unpaired (every backend).
struct pair_term {
  double loss, dc, dr;
};
RLHF_HD inline pair_term pair_loss(const params& p, double c, double r, double rc, double rr, double len_c,
                                   double len_r) {
  const double beta = p.beta;
  const double eps = p.label_smoothing;
  const double rf = p.reference_free ? 0.0 : 1.0;
  const double xc = c - rf * rc, xr = r - rf * rr;
  const math::dual gc = score(xc, p), gr = score(xr, p);
  // delta and its partials; the identity case keeps TRL's order of operations.
  double delta = p.score == score_fn::identity ? (c - r) - rf * (rc - rr) : gc.v - gr.v;
  double ddc = gc.d, ddr = -gr.d;
  const bool norm = p.length_normalize && (p.type == loss_type::ipo || p.type == loss_type::sigmoid_norm);
  if (norm) {
    const double lc = (len_c > 1.0 ? len_c : 1.0), lr = (len_r > 1.0 ? len_r : 1.0);
    delta = gc.v / lc - gr.v / lr;
    ddc = gc.d / lc;
    ddr = -gr.d / lr;
  }
  // S: the scores of the pair losses (raw log ratios, or g(x)).
  const math::dual Sc = p.scores_in_pair_losses ? gc : math::dual{c - rc, 1.0};
  const math::dual Sr = p.scores_in_pair_losses ? gr : math::dual{r - rr, 1.0};
  switch (p.type) {
    case loss_type::sigmoid:
    case loss_type::sigmoid_norm: {
      const auto l = math::dpo_sigmoid(beta * delta, p.smooth_sigmoid ? eps : 0.0);
      return pair_term{l.v, l.d * beta * ddc, l.d * beta * ddr};
    }
    case loss_type::robust: {
      const auto l = math::dpo_robust(beta * delta, eps);
      return pair_term{l.v, l.d * beta * ddc, l.d * beta * ddr};
    }
    case loss_type::exo_pair: {
      const auto l = math::dpo_exo(beta * delta, eps == 0 ? p.exo_zero_smoothing : eps);
      return pair_term{l.v, l.d * beta * ddc, l.d * beta * ddr};
    }
    case loss_type::hinge: {
      const auto l = math::dpo_hinge(beta * delta);
      return pair_term{l.v, l.d * beta * ddc, l.d * beta * ddr};
    }
    case loss_type::ipo: {
      const auto l = math::dpo_ipo(delta, beta);
      return pair_term{l.v, l.d * ddc, l.d * ddr};
    }
    case loss_type::discopop: {
      // TRL <= 0.28: the plain logits (c - r) - (ref_c - ref_r); TRL >= 1.0: delta.
      const bool plain = !p.scores_in_pair_losses;
      const double d = plain ? (c - r) - (rc - rr) : delta;
      const auto l = math::dpo_discopop(beta * d, p.discopop_tau);
      return pair_term{l.v, l.d * beta * (plain ? 1.0 : ddc), l.d * beta * (plain ? -1.0 : ddr)};
    }
    case loss_type::sppo_hard: {
      const double ec = Sc.v - 0.5 / beta, er = Sr.v + 0.5 / beta;
      return pair_term{ec * ec + er * er, 2 * ec * Sc.d, 2 * er * Sr.d};
    }
    case loss_type::nca_pair: {
      const double zc = beta * Sc.v, zr = beta * Sr.v;
      const double v = -num::log_sigmoid(zc) - 0.5 * num::log_sigmoid(-zc) - 0.5 * num::log_sigmoid(-zr);
      const double dzc = -num::sigmoid(-zc) + 0.5 * num::sigmoid(zc);
      const double dzr = 0.5 * num::sigmoid(zr);
      return pair_term{v, dzc * beta * Sc.d, dzr * beta * Sr.d};
    }
    case loss_type::bco_pair: {
      const double zc = beta * Sc.v, zr = beta * Sr.v;
      return pair_term{-num::log_sigmoid(zc) - num::log_sigmoid(-zr), -num::sigmoid(-zc) * beta * Sc.d,
                       num::sigmoid(zr) * beta * Sr.d};
    }
    case loss_type::apo_zero: {
      // TRL <= 0.28 honours reference_free here; TRL >= 1.0 uses the raw log ratios.
      const double a = p.scores_in_pair_losses ? c - rc : xc;
      const double b = p.scores_in_pair_losses ? r - rr : xr;
      const double sa = num::sigmoid(beta * a), sb = num::sigmoid(beta * b);
      return pair_term{1.0 - sa + sb, -beta * sa * (1 - sa), beta * sb * (1 - sb)};
    }
    case loss_type::apo_down: {
      const double a = p.scores_in_pair_losses ? c - rc : xc;
      const double sa = num::sigmoid(beta * a);
      // second term: s(beta (a - b)) raw (TRL <= 0.28) or s(beta delta) (TRL >= 1.0)
      const double d2 = p.scores_in_pair_losses ? delta : xc - xr;
      const double d2c = p.scores_in_pair_losses ? ddc : 1.0, d2r = p.scores_in_pair_losses ? ddr : -1.0;
      const double s2 = num::sigmoid(beta * d2);
      return pair_term{sa + 1.0 - s2, beta * sa * (1 - sa) - beta * s2 * (1 - s2) * d2c, -beta * s2 * (1 - s2) * d2r};
    }
    case loss_type::aot:
    case loss_type::aot_unpaired:
      break;  // sorted across pairs: accumulate() handles them
  }
  return pair_term{0.0, 0.0, 0.0};
}

/// Adds weight * mean(loss) of one type into losses/dc/dr (double buffers).
inline double accumulate(const params& p, double weight, const std::vector<double>& c, const std::vector<double>& r,
                         const std::vector<double>& rc, const std::vector<double>& rr, const double* len_c,
                         const double* len_r, std::vector<double>& losses, std::vector<double>& dc,
                         std::vector<double>& dr) {
  const std::size_t B = c.size();
  const double inv = weight / static_cast<double>(B);
  const double beta = p.beta;
  const double eps = p.label_smoothing;
  double total = 0;
  auto add = [&](std::size_t i, double v, double gc, double gr) {
    losses[i] += weight * v;
    dc[i] += inv * gc;
    dr[i] += inv * gr;
    total += v;
  };
  auto sorted_pairs = [&](auto&& key_a, auto&& key_b) {
    // delta_i = sort(a)_i - sort(b)_i; gradient routed back through each permutation.
    std::vector<std::size_t> ia(B), ib(B);
    std::iota(ia.begin(), ia.end(), 0);
    std::iota(ib.begin(), ib.end(), 0);
    std::stable_sort(ia.begin(), ia.end(), [&](auto x, auto y) { return key_a(x) < key_a(y); });
    std::stable_sort(ib.begin(), ib.end(), [&](auto x, auto y) { return key_b(x) < key_b(y); });
    return std::pair{ia, ib};
  };

  if (p.type == loss_type::aot || p.type == loss_type::aot_unpaired) {
    const bool paired = p.type == loss_type::aot;
    auto a = [&](std::size_t i) { return paired ? c[i] - r[i] : c[i] - rc[i]; };
    auto b = [&](std::size_t i) { return paired ? rc[i] - rr[i] : r[i] - rr[i]; };
    auto [ia, ib] = sorted_pairs(a, b);
    for (std::size_t k = 0; k < B; ++k) {
      const auto l = math::dpo_sigmoid(beta * (a(ia[k]) - b(ib[k])), eps);
      losses[k] += weight * l.v;
      total += l.v;
      const double g = inv * l.d * beta;
      if (paired) {  // a depends on c and r of pair ia[k]; b on the reference only
        dc[ia[k]] += g;
        dr[ia[k]] -= g;
      } else {  // a on c of ia[k], b on r of ib[k]
        dc[ia[k]] += g;
        dr[ib[k]] -= g;
      }
    }
    return weight * total / static_cast<double>(B);
  }

  for (std::size_t i = 0; i < B; ++i) {
    const pair_term t = pair_loss(p, c[i], r[i], rc[i], rr[i], len_c[i], len_r[i]);
    add(i, t.loss, t.dc, t.dr);
  }
  return weight * total / static_cast<double>(B);
}

}  // namespace detail

namespace detail {
struct term_needs {
  bool need_lengths = false;  ///< a length-normalized ipo / sigmoid_norm term
  bool sorted = false;        ///< an aot / aot_unpaired term (sorts across the batch)
};

/// The argument checks of weighted_loss on every backend (the NaN/Inf scans
/// only where the data is on the host).
template <class Tag, class C, class V, class O>
term_needs check_args(Tag tag, const char* fn, const C& chosen, const V& rejected, const V& ref_chosen,
                      const V& ref_rejected, std::span<const weighted> terms, const O& out) {
  using rlhf::detail::require_same_shape;
  require_same_shape(fn, "rejected_logps", rejected, "chosen_logps", chosen);
  require_same_shape(fn, "ref_chosen_logps", ref_chosen, "chosen_logps", chosen);
  require_same_shape(fn, "ref_rejected_logps", ref_rejected, "chosen_logps", chosen);
  rlhf::detail::require_nonempty(fn, "chosen_logps", chosen);
  if constexpr (is_host_backend_v<Tag>) {
    rlhf::detail::require_finite(tag, fn, "chosen_logps", chosen);
    rlhf::detail::require_finite(tag, fn, "rejected_logps", rejected);
    rlhf::detail::require_finite(tag, fn, "ref_chosen_logps", ref_chosen);
    rlhf::detail::require_finite(tag, fn, "ref_rejected_logps", ref_rejected);
  }
  rlhf::detail::require_output(fn, "losses", out.losses, "chosen_logps", chosen);
  rlhf::detail::require_output(fn, "chosen_rewards", out.chosen_rewards, "chosen_logps", chosen);
  rlhf::detail::require_output(fn, "rejected_rewards", out.rejected_rewards, "chosen_logps", chosen);
  rlhf::detail::require_output(fn, "dchosen", out.dchosen, "chosen_logps", chosen);
  rlhf::detail::require_output(fn, "drejected", out.drejected, "chosen_logps", chosen);
  if (terms.empty()) rlhf::detail::fail(error_kind::param, fn, "loss_type", "no loss type given");
  term_needs n;
  for (const auto& w : terms) {
    check_params(w.p, fn);
    rlhf::detail::require_finite_param(w.weight, fn, "loss_weights");
    n.need_lengths =
        n.need_lengths || (w.p.length_normalize && (w.p.type == loss_type::ipo || w.p.type == loss_type::sigmoid_norm));
    n.sorted = n.sorted || w.p.type == loss_type::aot || w.p.type == loss_type::aot_unpaired;
  }
  return n;
}

template <class C, class V>
void check_lengths(const char* fn, const C& chosen, const V& chosen_lengths, const V& rejected_lengths) {
  if (chosen_lengths.null() || rejected_lengths.null())
    rlhf::detail::fail(error_kind::shape, fn, "chosen_lengths",
                       "are required by length-normalized ipo/sigmoid_norm (completion token counts)");
  rlhf::detail::require_same_shape(fn, "chosen_lengths", chosen_lengths, "chosen_logps", chosen);
  rlhf::detail::require_same_shape(fn, "rejected_lengths", rejected_lengths, "chosen_logps", chosen);
}
}  // namespace detail

/// Several weighted loss types summed (TRL loss_type list). Every term must
/// agree on beta for the implicit rewards (the first term's beta is used).
template <class T>
summary weighted_loss(cpu_t tag, tensor_view<T, 1> chosen, in_view<T, 1> rejected, in_view<T, 1> ref_chosen,
                      in_view<T, 1> ref_rejected, std::span<const weighted> terms, outputs<value_t<T>> out = {},
                      in_view<T, 1> chosen_lengths = {}, in_view<T, 1> rejected_lengths = {}) {
  constexpr const char* fn = "dpo::loss";
  using rlhf::detail::require_same_shape;
  const bool need_len =
      detail::check_args(tag, fn, chosen, rejected, ref_chosen, ref_rejected, terms, out).need_lengths;
  const index_t B = chosen.extent(0);
  std::vector<double> c(B), r(B), rc(B), rr(B), lc(B, 1.0), lr(B, 1.0), losses(B, 0.0), dc(B, 0.0), dr(B, 0.0);
  for (index_t i = 0; i < B; ++i) {
    c[i] = static_cast<double>(chosen(i));
    r[i] = static_cast<double>(rejected(i));
    rc[i] = static_cast<double>(ref_chosen(i));
    rr[i] = static_cast<double>(ref_rejected(i));
  }
  if (need_len) detail::check_lengths(fn, chosen, chosen_lengths, rejected_lengths);
  // lengths given are token counts: each finite and > 0, also where no term divides by them
  for (const auto& [name, len, dst] :
       {std::tuple<const char*, const in_view<T, 1>*, std::vector<double>*>{"chosen_lengths", &chosen_lengths, &lc},
        {"rejected_lengths", &rejected_lengths, &lr}}) {
    if (len->null()) continue;
    require_same_shape(fn, name, *len, "chosen_logps", chosen);
    for (index_t i = 0; i < B; ++i) {
      const double l = static_cast<double>((*len)(i));
      if (!std::isfinite(l))
        rlhf::detail::fail(error_kind::non_finite, fn, name,
                           "holds a non-finite length at [" + std::to_string(i) + "]");
      if (!(l > 0))
        rlhf::detail::fail(error_kind::param, fn, name,
                           "holds a length <= 0 at [" + std::to_string(i) + "] (completion token counts are >= 1)");
      if (need_len) (*dst)[static_cast<std::size_t>(i)] = l;
    }
  }
  summary s{};
  for (const auto& w : terms)
    s.loss += detail::accumulate(w.p, w.weight, c, r, rc, rr, lc.data(), lr.data(), losses, dc, dr);
  // finite log-probs whose loss or gradient overflows (|log-ratios| near the largest double)
  bool finite = std::isfinite(s.loss);
  for (index_t i = 0; i < B; ++i)
    finite = finite && std::isfinite(losses[i]) && std::isfinite(dc[i]) && std::isfinite(dr[i]) &&
             std::isfinite(terms[0].p.beta * (c[i] - rc[i])) && std::isfinite(terms[0].p.beta * (r[i] - rr[i]));
  if (!finite)
    rlhf::detail::fail(error_kind::non_finite, fn, "chosen_logps",
                       "gives a non-finite loss, reward or gradient for these finite inputs (an overflow)");
  const double beta = terms[0].p.beta;
  for (index_t i = 0; i < B; ++i) {
    const double cr = beta * (c[i] - rc[i]), rj = beta * (r[i] - rr[i]);
    detail::add_reward_pair(s, cr, rj, static_cast<double>(B));
    using V = value_t<T>;
    if (!out.losses.null()) out.losses(i) = static_cast<V>(losses[i]);
    if (!out.chosen_rewards.null()) out.chosen_rewards(i) = static_cast<V>(cr);
    if (!out.rejected_rewards.null()) out.rejected_rewards(i) = static_cast<V>(rj);
    if (!out.dchosen.null()) out.dchosen(i) = static_cast<V>(dc[i]);
    if (!out.drejected.null()) out.drejected(i) = static_cast<V>(dr[i]);
  }
  if (!std::isfinite(s.loss))
    rlhf::detail::fail(error_kind::non_finite, fn, "chosen_logps",
                       "gives a non-finite loss (log-probabilities out of the range this loss type can represent)");
  return s;
}

/// Over the ranks of a communicator (rlhf::cpu.with(comm)): every rank
/// sends its pairs (the four log-probs and the two lengths: a count, then
/// one allgather of max-B pairs per rank), every rank computes the
/// one-process loss on the concatenated pairs (the ranks' pairs in rank
/// order) and writes its own pairs' outputs. The summary is the mean over
/// every pair, bitwise the one-process one on every rank, and the sorting
/// terms (aot, aot_unpaired) sort the global batch; dchosen / drejected are
/// this rank's pairs' gradients of the global mean times the tag's
/// gradient factor (size(), or 1 with summed_gradients()).
template <class C, class T>
summary weighted_loss(const on_ranks<cpu_t, C>& tag, tensor_view<T, 1> chosen, in_view<T, 1> rejected,
                      in_view<T, 1> ref_chosen, in_view<T, 1> ref_rejected, std::span<const weighted> terms,
                      outputs<value_t<T>> out = {}, in_view<T, 1> chosen_lengths = {},
                      in_view<T, 1> rejected_lengths = {}) {
  constexpr const char* fn = "dpo::loss";
  [[maybe_unused]] const engine::op_scope scope(tag);
  const cpu_t local{tag.check_finite};
  (void)detail::check_args(local, fn, chosen, rejected, ref_chosen, ref_rejected, terms, out);
  const bool lengths = !chosen_lengths.null() || !rejected_lengths.null();
  if (lengths) detail::check_lengths(fn, chosen, chosen_lengths, rejected_lengths);
  const auto& comm = *tag.comm;
  const auto B = static_cast<std::size_t>(chosen.extent(0));
  const double part[2] = {static_cast<double>(B), lengths ? 1.0 : 0.0};
  const dist::frames g = dist::exchange(comm, dist::failure{}, part);
  const auto P = g.ranks();
  if (g.max(1) != 0 && g.sum(1) != static_cast<double>(P))
    rlhf::detail::fail(error_kind::param, fn, "chosen_lengths", "are given on some ranks only");
  constexpr std::size_t K = 6;
  std::vector<double> mine(K * B);
  for (std::size_t i = 0; i < B; ++i) {
    const auto ii = static_cast<index_t>(i);
    mine[K * i] = static_cast<double>(chosen(ii));
    mine[K * i + 1] = static_cast<double>(rejected(ii));
    mine[K * i + 2] = static_cast<double>(ref_chosen(ii));
    mine[K * i + 3] = static_cast<double>(ref_rejected(ii));
    mine[K * i + 4] = lengths ? static_cast<double>(chosen_lengths(ii)) : 1.0;
    mine[K * i + 5] = lengths ? static_cast<double>(rejected_lengths(ii)) : 1.0;
  }
  const dist::gathered_rows rows = dist::gather_rows(comm, g, 0, K, mine);
  const std::size_t n = rows.n, first = rows.first;
  if (n == 0) rlhf::detail::fail(error_kind::empty, fn, "chosen_logps", "is empty on every rank");
  std::vector<std::vector<double>> col(K + 5, std::vector<double>(n));  // the inputs, then the outputs
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < K; ++k) col[k][i] = rows.rows[K * i + k];
  const auto N = static_cast<index_t>(n);
  auto in = [&](std::size_t k) { return tensor_view<const double, 1>(col[k].data(), {N}); };
  auto o = [&](std::size_t k) { return tensor_view<double, 1>(col[K + k].data(), {N}); };
  const summary s =
      weighted_loss(local.unchecked(), in(0), in(1), in(2), in(3), terms, outputs<double>{o(0), o(1), o(2), o(3), o(4)},
                    lengths ? in(4) : in_view<double, 1>{}, lengths ? in(5) : in_view<double, 1>{});
  using V = value_t<T>;
  const double gf = tag.gradient_factor();
  for (std::size_t i = 0; i < B; ++i) {
    const auto ii = static_cast<index_t>(i);
    if (!out.losses.null()) out.losses(ii) = static_cast<V>(col[K][first + i]);
    if (!out.chosen_rewards.null()) out.chosen_rewards(ii) = static_cast<V>(col[K + 1][first + i]);
    if (!out.rejected_rewards.null()) out.rejected_rewards(ii) = static_cast<V>(col[K + 2][first + i]);
    if (!out.dchosen.null()) out.dchosen(ii) = static_cast<V>(gf * col[K + 3][first + i]);
    if (!out.drejected.null()) out.drejected(ii) = static_cast<V>(gf * col[K + 4][first + i]);
  }
  return s;
}

/// One loss type (rlhf::cpu, or rlhf::cpu.with(comm): weighted_loss above).
template <class Tag, class T>
requires(backend<Tag>&& is_host_backend_v<Tag>) summary
    loss(Tag tag, tensor_view<T, 1> chosen, in_view<T, 1> rejected, in_view<T, 1> ref_chosen,
         in_view<T, 1> ref_rejected, const params& p, outputs<value_t<T>> out = {}, in_view<T, 1> chosen_lengths = {},
         in_view<T, 1> rejected_lengths = {}) {
  const weighted one[] = {{p, 1.0}};
  return weighted_loss(tag, chosen, rejected, ref_chosen, ref_rejected, std::span<const weighted>(one), out,
                       chosen_lengths, rejected_lengths);
}

/// Owning results of the convenience overload.
template <class T>
struct result {
  summary stats;
  tensor<T, 1> losses, chosen_rewards, rejected_rewards, dchosen, drejected;
};

/// Convenience: allocates every per-pair output.
template <class T>
result<value_t<T>> evaluate(cpu_t tag, tensor_view<T, 1> chosen, in_view<T, 1> rejected, in_view<T, 1> ref_chosen,
                            in_view<T, 1> ref_rejected, const params& p) {
  using V = value_t<T>;
  const index_t B = chosen.extent(0);
  result<V> r{{}, tensor<V, 1>({B}), tensor<V, 1>({B}), tensor<V, 1>({B}), tensor<V, 1>({B}), tensor<V, 1>({B})};
  r.stats = loss(tag, chosen, rejected, ref_chosen, ref_rejected, p,
                 outputs<V>{r.losses.view(), r.chosen_rewards.view(), r.rejected_rewards.view(), r.dchosen.view(),
                            r.drejected.view()});
  return r;
}

}  // namespace rlhf::dpo
