// rlhf++ — the group estimators the stacks added since GRPO:
//
//   GDPO (verl #5503; Liu et al. 2026, "group reward-decoupled
//   normalisation"): each reward component k normalised in its group
//   (GRPO), A = sum_k w_k A_k, then whitened over the batch's valid tokens:
//   advantages = masked_whiten(A) * mask.
//   MaxRL (SkyRL #1126; Tajwar et al. 2026, arXiv 2602.02710): s = sum_t r
//   (every position), (s - mean_g) / (mean_g + eps) for groups of two or
//   more, s for a group of one; times the mask.
//   Leave-one-out GRPO (NeMo-RL GRPOAdvantageEstimator): baseline b_i and
//   second moment q_i of the group without sample i (or with it),
//   std_i = sqrt((q_i - b_i^2) n / (n - 1)), A_i = r_i - b_i, divided by
//   (std_i + 1e-6) where std_i > 0; constant over the row, not masked.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "common.hpp"
#include "grpo.hpp"

namespace rlhf::adv {

// ---------------------------------------------------------------------------
// MaxRL

struct maxrl_params {
  double epsilon = 1e-6;  ///< SkyRL 1e-6
};

namespace impl {
template <class T, class M, class I>
void maxrl(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask, tensor_view<I, 1> index,
           const maxrl_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::maxrl";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  rlhf::detail::require_nonneg_param(p.epsilon, fn, "epsilon");
  auto s = detail::scores(fn, token_level_rewards);
  std::vector<double> a(s.size());
  for (const auto& rows : detail::groups(index)) {
    if (rows.size() < 2) {
      a[static_cast<std::size_t>(rows[0])] = s[static_cast<std::size_t>(rows[0])];
      continue;
    }
    const double mu = detail::stats(s, rows).mean;
    // no guard for mean <= 0 (SkyRL): a mean of -epsilon overflows, reported by broadcast
    for (auto b : rows) a[static_cast<std::size_t>(b)] = (s[static_cast<std::size_t>(b)] - mu) / (mu + p.epsilon);
  }
  detail::broadcast(fn, a, response_mask, out);
}
}  // namespace impl

/// adv::maxrl(cpu, token_level_rewards, response_mask, index, params, outputs); also the
/// structural choice `rlhf::adv::maxrl` (core/choices.hpp).
struct maxrl_fn : estimator_tag<advantage_estimator::maxrl>, dispatch_on_tag<maxrl_fn> {
  using dispatch_on_tag<maxrl_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, const maxrl_params& p, outputs<value_t<T>> out) const {
    impl::maxrl(tag, token_level_rewards, response_mask, index, p, out);
  }
};
inline constexpr maxrl_fn maxrl{};

// ---------------------------------------------------------------------------
// GDPO

struct gdpo_params {
  grpo_params grpo = grpo_params::verl();  ///< each component's group normalisation
  std::vector<double> weights;             ///< w_k (empty: all 1); rounded to float32 as verl's tensor
  ops::whiten_params whitening = ops::whiten_params::verl();
};

namespace impl {
/// `components` [K, B] (optional): component k's score per response; null:
/// the one component is the row sum of the token rewards (verl's fallback,
/// in double). With components, each one's group statistics are float32, as
/// verl computes them on np.float32 matrices.
template <class T, class M, class I>
void gdpo(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask, tensor_view<I, 1> index,
          in_view<T, 2> components, const gdpo_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::gdpo";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  rlhf::detail::require_nonneg_param(p.grpo.epsilon, fn, "epsilon");
  const index_t B = token_level_rewards.extent(0);
  if (!components.null()) {
    rlhf::detail::require_extent(fn, "reward_components", components, 1, B, "one score per response");
    rlhf::detail::require_nonempty(fn, "reward_components", components);
    rlhf::detail::require_finite(tag, fn, "reward_components", components);
  }
  const index_t K = components.null() ? 1 : components.extent(0);
  rlhf::detail::require_param(p.weights.empty() || static_cast<index_t>(p.weights.size()) == K, fn,
                              "gdpo_reward_weights", "must hold one weight per reward component");
  for (double w : p.weights) rlhf::detail::require_finite_param(w, fn, "gdpo_reward_weights");
  if (!(ops::mask_count(tag, response_mask) >= 2))
    rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has fewer than 2 valid tokens: cannot whiten");
  const auto g = detail::groups(index);
  std::vector<double> a(static_cast<std::size_t>(B), 0.0);  // sum_k w_k A_k (per row, before the mask)
  if (components.null()) {
    auto s = detail::scores(fn, token_level_rewards);
    for (const auto& rows : g) {
      const auto st = detail::stats(s, rows);
      for (auto b : rows)
        a[static_cast<std::size_t>(b)] = grpo_value(s[b], st.mean, st.std, static_cast<double>(rows.size()), p.grpo);
    }
  } else {
    const float eps = static_cast<float>(p.grpo.epsilon);
    for (index_t k = 0; k < K; ++k) {
      const float w = p.weights.empty() ? 1.0f : static_cast<float>(p.weights[static_cast<std::size_t>(k)]);
      std::vector<double> s(static_cast<std::size_t>(B));
      for (index_t b = 0; b < B; ++b) s[static_cast<std::size_t>(b)] = static_cast<float>(components(k, b));
      for (const auto& rows : g) {
        // float32 mean and unbiased std (a group of one: mean 0, std 1)
        float mean = 0.0f, sd = 1.0f;
        if (rows.size() > 1) {
          const auto st = detail::stats(s, rows);
          mean = static_cast<float>(st.mean);
          sd = static_cast<float>(st.std);
        }
        for (auto b : rows) {
          const float num = static_cast<float>(s[static_cast<std::size_t>(b)]) - mean;
          const float ak = p.grpo.norm_by_std ? num / (sd + eps) : num;
          a[static_cast<std::size_t>(b)] =
              static_cast<double>(static_cast<float>(a[static_cast<std::size_t>(b)]) + w * ak);
        }
      }
    }
  }
  detail::whiten_row_values(tag, fn, a, response_mask, p.whitening, out);
}
}  // namespace impl

/// adv::gdpo(cpu, token_level_rewards, response_mask, index, components, params, outputs);
/// also the structural choice `rlhf::adv::gdpo` (the components from a
/// ComponentRewardModel, else the token rewards' row sums).
struct gdpo_fn : estimator_tag<advantage_estimator::gdpo>, dispatch_on_tag<gdpo_fn> {
  using dispatch_on_tag<gdpo_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, in_view<T, 2> components, const gdpo_params& p,
                  outputs<value_t<T>> out) const {
    impl::gdpo(tag, token_level_rewards, response_mask, index, components, p, out);
  }
};
inline constexpr gdpo_fn gdpo{};

// ---------------------------------------------------------------------------
// Leave-one-out GRPO with std normalisation (NeMo-RL)

struct loo_grpo_params {
  bool leave_one_out = true;  ///< NeMo-RL use_leave_one_out_baseline
  bool normalize = true;      ///< NeMo-RL normalize_rewards
  double epsilon = 1e-6;

  static constexpr loo_grpo_params nemo_rl(bool leave_one_out = true, bool normalize = true) {
    return {leave_one_out, normalize, 1e-6};
  }
};

namespace impl {
/// NeMo-RL's advantage of each response from its group (responses sharing an
/// index): constant over the row of `advantages` [B, any T], not masked.
template <class T, class I>
void loo_grpo(cpu_t tag, tensor_view<T, 1> rewards, tensor_view<I, 1> index, const loo_grpo_params& p,
              out_view<T, 2> advantages) {
  constexpr const char* fn = "adv::loo_grpo";
  rlhf::detail::require_nonempty(fn, "rewards", rewards);
  rlhf::detail::require_extent(fn, "index", index, 0, rewards.extent(0), "one group id per response");
  rlhf::detail::require_extent(fn, "advantages", advantages, 0, rewards.extent(0), "one row per response");
  rlhf::detail::require_nonneg_param(p.epsilon, fn, "epsilon");
  rlhf::detail::require_finite(tag, fn, "rewards", rewards);
  const index_t B = rewards.extent(0);
  std::vector<double> a(static_cast<std::size_t>(B), 0.0);
  for (const auto& rows : detail::groups(index)) {
    const index_t k = static_cast<index_t>(rows.size());
    if (k < 2) continue;  // the baseline is the reward itself: 0
    const index_t n = p.leave_one_out ? k - 1 : k;
    // n / (n - 1) in float32 (the count is a float tensor); 1 / 0 = inf
    const float nf = static_cast<float>(n), nm = static_cast<float>(n - 1);
    const double f = static_cast<double>(nm == 0.0f ? std::numeric_limits<float>::infinity() : nf / nm);
    for (auto i : rows) {
      double s = 0, q = 0;
      for (auto j : rows) {
        if (p.leave_one_out && j == i) continue;
        const double r = static_cast<double>(rewards(j));
        s += r;
        q += r * r;
      }
      const double bl = s / static_cast<double>(n), m2 = q / static_cast<double>(n);
      double sd = std::sqrt((m2 - bl * bl) * f);
      if (std::isnan(sd)) sd = 0.0;  // nan_to_num: NaN -> 0, +inf -> the largest double
      if (std::isinf(sd)) sd = std::numeric_limits<double>::max();
      double v = static_cast<double>(rewards(i)) - bl;
      if (p.normalize && sd > 0) v = v / (sd + p.epsilon);
      a[static_cast<std::size_t>(i)] = v;
    }
  }
  using V = value_t<T>;
  for (index_t b = 0; b < B; ++b)
    if (!std::isfinite(static_cast<double>(static_cast<V>(a[static_cast<std::size_t>(b)])))) detail::overflow(fn, b);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < advantages.extent(1); ++t)
      advantages(b, t) = static_cast<V>(a[static_cast<std::size_t>(b)]);
}
}  // namespace impl

/// adv::loo_grpo(cpu, rewards [B], index [B], params, advantages [B, T]); also
/// the structural choice `rlhf::adv::loo_grpo` (the rewards: the token
/// rewards' masked row sums).
struct loo_grpo_fn : estimator_tag<advantage_estimator::loo_grpo>, dispatch_on_tag<loo_grpo_fn> {
  using dispatch_on_tag<loo_grpo_fn>::operator();
  template <class T, class I>
  void operator()(cpu_t tag, tensor_view<T, 1> rewards, tensor_view<I, 1> index, const loo_grpo_params& p,
                  out_view<T, 2> advantages) const {
    impl::loo_grpo(tag, rewards, index, p, advantages);
  }
};
inline constexpr loo_grpo_fn loo_grpo{};

}  // namespace rlhf::adv
