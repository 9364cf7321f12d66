// rlhf++ — group-relative outcome advantages (GRPO, Shao et al. 2024;
// Dr. GRPO without the std; pass@k). verl compute_grpo_outcome_advantage,
// compute_grpo_passk_outcome_advantage.
//
//   s_b = sum_t r_bt (every position), groups by index (responses to one prompt)
//   GRPO:   A_b = (s_b - mean_g) / (std_g + eps)   or  s_b - mean_g  (norm_by_std = false);
//           an all-equal group gives 0 (also with eps = 0)
//           a group of one has mean 0 and std 1 (verl), so A_b = s_b / (1 + eps)
//   pass@k: the group's best response gets s_max - s_second (/ (std_g + eps)); others 0
// broadcast over T and multiplied by the mask; returns = advantages.
#pragma once

#include <algorithm>

#include "common.hpp"

namespace rlhf::adv {

struct grpo_params {
  double epsilon = 1e-6;    ///< verl 1e-6; TRL 1e-4; OpenRLHF 1e-9
  bool norm_by_std = true;  ///< false: Dr. GRPO

  static constexpr grpo_params verl(bool norm_by_std = true) { return {1e-6, norm_by_std}; }
  /// TRL GRPOTrainer scale_rewards="group" (true) or "none" (false). Groups
  /// of one follow verl here (TRL's nanstd gives NaN for them).
  static constexpr grpo_params trl(bool norm_by_std = true) { return {1e-4, norm_by_std}; }
  /// OpenRLHF advantage.estimator "group_norm" (true) / "dr_grpo" (false).
  static constexpr grpo_params openrlhf(bool norm_by_std = true) { return {1e-9, norm_by_std}; }
};

/// The advantage of one response from its group's mean and unbiased std
/// (every backend). A group of one has mean 0 and std 1; an all-equal group
/// has s - mean = 0 and std = 0: its advantage is 0 (the limit), also when
/// epsilon = 0.
RLHF_HD inline double grpo_value(double s, double mean, double std, double n, const grpo_params& p) {
  if (n < 2) {
    mean = 0.0;
    std = 1.0;
  }
  const double num = s - mean;
  if (!p.norm_by_std) return num;
  return num == 0 ? 0.0 : num / (std + p.epsilon);
}

namespace impl {
template <class T, class M, class I>
void grpo(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask, tensor_view<I, 1> index,
          const grpo_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::grpo";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  rlhf::detail::require_nonneg_param(p.epsilon, fn, "epsilon");
  auto s = detail::scores(fn, token_level_rewards);
  std::vector<double> a(s.size());
  for (const auto& rows : detail::groups(index)) {
    const auto st = detail::stats(s, rows);
    for (auto b : rows) a[b] = grpo_value(s[b], st.mean, st.std, static_cast<double>(rows.size()), p);
  }
  detail::broadcast(fn, a, response_mask, out);
}

}  // namespace impl

/// The function and the structural choice `rlhf::adv::grpo` (core/choices.hpp).
struct grpo_fn : estimator_tag<advantage_estimator::grpo>, dispatch_on_tag<grpo_fn> {
  using dispatch_on_tag<grpo_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, const grpo_params& p, outputs<value_t<T>> out) const {
    impl::grpo(tag, token_level_rewards, response_mask, index, p, out);
  }
};
inline constexpr grpo_fn grpo{};

/// pass@k: only the best response of each group is credited.
namespace impl {
template <class T, class M, class I>
void grpo_passk(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                tensor_view<I, 1> index, const grpo_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::grpo_passk";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  rlhf::detail::require_nonneg_param(p.epsilon, fn, "epsilon");
  auto s = detail::scores(fn, token_level_rewards);
  std::vector<double> a(s.size(), 0.0);
  for (const auto& rows : detail::groups(index)) {
    if (rows.size() < 2)
      rlhf::detail::fail(error_kind::empty, fn, "index",
                         "has a group of one response: pass@k needs at least 2 per group");
    auto sorted = rows;
    std::stable_sort(sorted.begin(), sorted.end(), [&](index_t x, index_t y) { return s[x] > s[y]; });
    const double gap = s[sorted[0]] - s[sorted[1]];
    const auto st = detail::stats(s, rows);
    a[sorted[0]] = p.norm_by_std && gap != 0 ? gap / (st.std + p.epsilon) : gap;  // a tie gives 0
  }
  detail::broadcast(fn, a, response_mask, out);
}
}  // namespace impl

/// adv::grpo_passk(tag, ...): the CPU call below, other backends by advantage_on (common.hpp).
struct grpo_passk_fn : dispatch_on_tag<grpo_passk_fn> {
  using dispatch_on_tag<grpo_passk_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, const grpo_params& p, outputs<value_t<T>> out) const {
    impl::grpo_passk(tag, token_level_rewards, response_mask, index, p, out);
  }
};
inline constexpr grpo_passk_fn grpo_passk{};

}  // namespace rlhf::adv
