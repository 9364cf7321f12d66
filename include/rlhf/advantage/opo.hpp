// rlhf++ — OPO: on-policy optimal baseline (Hao et al. 2025), verl
// compute_opo_outcome_advantage.
//
//   baseline_g = sum_b len_b s_b / sum_b len_b  (len = valid tokens); a group of one: 0
//   A_b = s_b - baseline_g, broadcast over T times the mask; returns = advantages.
#pragma once

#include "common.hpp"

namespace rlhf::adv {

namespace impl {
template <class T, class M, class I>
void opo(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask, tensor_view<I, 1> index,
         outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::opo";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  auto s = detail::scores(fn, token_level_rewards);
  std::vector<double> len(s.size(), 0.0), a(s.size());
  for (index_t b = 0; b < response_mask.extent(0); ++b)
    for (index_t t = 0; t < response_mask.extent(1); ++t) len[b] += static_cast<double>(response_mask(b, t));
  for (const auto& rows : detail::groups(index)) {
    double num = 0, den = 0;
    for (auto b : rows) {
      num += len[b] * s[b];
      den += len[b];
    }
    double base = 0;
    if (rows.size() > 1) {
      if (!(den > 0))
        rlhf::detail::fail(
            error_kind::empty, fn, "response_mask",
            "has a group whose responses have no valid token: the length-weighted baseline is undefined");
      base = num / den;
    }
    for (auto b : rows) a[b] = s[b] - base;
  }
  detail::broadcast(fn, a, response_mask, out);
}
}  // namespace impl

/// adv::opo(tag, ...): the CPU call below, other backends by advantage_on (common.hpp).
struct opo_fn : dispatch_on_tag<opo_fn> {
  using dispatch_on_tag<opo_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, outputs<value_t<T>> out) const {
    impl::opo(tag, token_level_rewards, response_mask, index, out);
  }
};
inline constexpr opo_fn opo{};

}  // namespace rlhf::adv
