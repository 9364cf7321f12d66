// rlhf++ — training a reward model on preference pairs: the pairwise
// (Bradley–Terry) loss.
//
// With r_c, r_r the scores of the chosen and the rejected response of B
// pairs and an optional margin m,
//   d_i  = r_c,i - r_r,i - m_i
//   loss = mean_i(-log s(d_i)) [+ c * mean_i((r_c,i + r_r,i)^2)]
// computed stably (softplus: finite at |d| = 700), with its gradient
//   dL/dr_c,i = (-s(-d_i) + 2 c (r_c,i + r_r,i)) / B,
//   dL/dr_r,i = ( s(-d_i) + 2 c (r_c,i + r_r,i)) / B.
// The per-pair term is DPO's sigmoid rule at z = d (math/dpo.hpp).
// References: TRL RewardTrainer.compute_loss (margin, center_rewards_coefficient);
// OpenRLHF PairWiseLoss (sigmoid, with margin) and LogExpLoss
// (log(1 + exp(r_r - r_c)), which ignores the margin).
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../core/named_enum.hpp"
#include "../math/dpo.hpp"

namespace rlhf::rm {

RLHF_BACKEND_FIRST(pairwise_loss)

/// OpenRLHF's two reward losses (TRL's is `sigmoid`).
RLHF_NAMED_ENUM(pairwise_kind, (sigmoid, "sigmoid"), (logexp, "logexp"));

inline pairwise_kind parse_pairwise_kind(std::string_view s) {
  if (const auto k = parse_enum<pairwise_kind>(s)) return *k;
  rlhf::detail::fail(error_kind::param, "rm::parse_pairwise_kind", "loss",
                     "unknown reward loss '" + std::string(s) + "' (" + enum_name_list<pairwise_kind>() + ")");
}

struct pairwise_params {
  pairwise_kind kind = pairwise_kind::sigmoid;
  /// TRL's center_rewards_coefficient: + c * mean((r_c + r_r)^2); unset = off.
  std::optional<double> center_coef;

  /// TRL RewardTrainer (RewardConfig.center_rewards_coefficient, default None).
  static pairwise_params trl(std::optional<double> center = std::nullopt) { return {pairwise_kind::sigmoid, center}; }
  /// OpenRLHF rm_trainer: "sigmoid" (PairWiseLoss) or "logexp" (LogExpLoss).
  static pairwise_params openrlhf(pairwise_kind k) { return {k, std::nullopt}; }
};

struct pairwise_result {
  double loss;
  double accuracy;  ///< fraction of pairs with r_c > r_r (TRL's "accuracy")
  double margin;    ///< mean of r_c - r_r
};

/// The pairwise loss over [B] scores; `dchosen` / `drejected` (optional)
/// receive its gradient. `margin` (optional, [B]) is subtracted from the
/// difference (ignored by logexp, as OpenRLHF does).
template <class T>
pairwise_result pairwise_loss(cpu_t tag, tensor_view<T, 1> chosen, in_view<T, 1> rejected, const pairwise_params& p,
                              in_view<T, 1> margin = {}, out_view<T, 1> dchosen = {}, out_view<T, 1> drejected = {}) {
  constexpr const char* fn = "rm::pairwise_loss";
  using V = value_t<T>;
  rlhf::detail::require_same_shape(fn, "rejected", rejected, "chosen", chosen);
  rlhf::detail::require_nonempty(fn, "chosen", chosen);
  rlhf::detail::require_storage(fn, "rejected", rejected);
  if (!margin.null() || margin.size() != 0) {
    rlhf::detail::require_same_shape(fn, "margin", margin, "chosen", chosen);
    rlhf::detail::require_storage(fn, "margin", margin);
  }
  rlhf::detail::require_output(fn, "dchosen", dchosen, "chosen", chosen);
  rlhf::detail::require_output(fn, "drejected", drejected, "chosen", chosen);
  rlhf::detail::require_disjoint(fn, "drejected", drejected, "dchosen", dchosen);
  if (p.center_coef) rlhf::detail::require_finite_param(*p.center_coef, fn, "center_coef");
  rlhf::detail::require_finite(tag, fn, "chosen", chosen);
  rlhf::detail::require_finite(tag, fn, "rejected", rejected);
  if (!margin.null()) rlhf::detail::require_finite(tag, fn, "margin", margin);
  const index_t B = chosen.extent(0);
  const double inv = 1.0 / static_cast<double>(B);
  const double c = p.center_coef.value_or(0.0);
  const bool use_margin = !margin.null() && p.kind == pairwise_kind::sigmoid;
  // every value first: the outputs (which may alias the inputs' memory of another call) are written last
  double loss = 0, center = 0, correct = 0, msum = 0;
  for (index_t i = 0; i < B; ++i) {
    const double rc = static_cast<double>(chosen(i)), rr = static_cast<double>(rejected(i));
    const double d = rc - rr - (use_margin ? static_cast<double>(margin(i)) : 0.0);
    loss += math::dpo_sigmoid(d, 0.0).v;
    center += (rc + rr) * (rc + rr);
    correct += rc > rr ? 1.0 : 0.0;
    msum += rc - rr;
  }
  pairwise_result r{loss * inv + (p.center_coef ? c * center * inv : 0.0), correct * inv, msum * inv};
  rlhf::detail::require_finite_result(r.loss, fn, "chosen", "the loss overflows (scores too large)");
  rlhf::detail::require_finite_result(r.margin, fn, "chosen", "the mean margin overflows (scores too large)");
  if (dchosen.null() && drejected.null()) return r;
  std::vector<V> gc(static_cast<std::size_t>(B)), gr(static_cast<std::size_t>(B));
  for (index_t i = 0; i < B; ++i) {
    const double rc = static_cast<double>(chosen(i)), rr = static_cast<double>(rejected(i));
    const double d = rc - rr - (use_margin ? static_cast<double>(margin(i)) : 0.0);
    const double g = math::dpo_sigmoid(d, 0.0).d * inv;  // d loss_i / d d, over B: -s(-d) / B
    const double cg = p.center_coef ? 2.0 * c * (rc + rr) * inv : 0.0;
    gc[static_cast<std::size_t>(i)] = static_cast<V>(g + cg);
    gr[static_cast<std::size_t>(i)] = static_cast<V>(-g + cg);
    if (!std::isfinite(static_cast<double>(gc[static_cast<std::size_t>(i)])) ||
        !std::isfinite(static_cast<double>(gr[static_cast<std::size_t>(i)])))
      rlhf::detail::fail(error_kind::non_finite, fn, "chosen",
                         "pair " + std::to_string(i) + ": the gradient overflows (scores too large)");
  }
  for (index_t i = 0; i < B; ++i) {
    if (!dchosen.null()) dchosen(i) = gc[static_cast<std::size_t>(i)];
    if (!drejected.null()) drejected(i) = gr[static_cast<std::size_t>(i)];
  }
  return r;
}

}  // namespace rlhf::rm
