// rlhf++ — REINFORCE leave-one-out (Ahmadian et al. 2024), verl
// compute_rloo_outcome_advantage / compute_rloo_vectorized_outcome_advantage.
//
//   A_b = s_b n/(n-1) - mean_g n/(n-1)   (= s_b - mean of the others), n = group size
// A group of one keeps its raw score (loop version) or gets 0 (vectorized
// version): singleton_keeps_score selects which.
#pragma once

#include "common.hpp"

namespace rlhf::adv {

struct rloo_params {
  bool singleton_keeps_score = true;  ///< verl "rloo": true; "rloo_vectorized": false
};

/// The leave-one-out advantage of one response (every backend).
RLHF_HD inline double rloo_value(double s, double mean, double n, const rloo_params& p) {
  if (n < 2) return p.singleton_keeps_score ? s : 0.0;
  return s * n / (n - 1) - mean * n / (n - 1);
}

namespace impl {
template <class T, class M, class I>
void rloo(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask, tensor_view<I, 1> index,
          const rloo_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::rloo";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  auto s = detail::scores(fn, token_level_rewards);
  std::vector<double> a(s.size());
  for (const auto& rows : detail::groups(index)) {
    const double n = static_cast<double>(rows.size());
    const auto st = detail::stats(s, rows);
    for (auto b : rows) a[b] = rloo_value(s[b], st.mean, n, p);
  }
  detail::broadcast(fn, a, response_mask, out);
}

}  // namespace impl

/// The function and the structural choice `rlhf::adv::rloo` (core/choices.hpp).
struct rloo_fn : estimator_tag<advantage_estimator::rloo>, dispatch_on_tag<rloo_fn> {
  using dispatch_on_tag<rloo_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, const rloo_params& p, outputs<value_t<T>> out) const {
    impl::rloo(tag, token_level_rewards, response_mask, index, p, out);
  }
};
inline constexpr rloo_fn rloo{};

}  // namespace rlhf::adv
