// rlhf++ — GPG group policy gradient advantages (Chu et al. 2025), verl
// compute_gpg_outcome_advantage.
//
//   alpha = B / max(#{b : s_b != 0}, 1)   (verl overwrites the alpha argument)
//   A_b = alpha (s_b - mean_g) / f_norm,  mean of a group of one = 0
#pragma once

#include "common.hpp"

namespace rlhf::adv {

struct gpg_params {
  double f_norm = 1.0;
};

namespace impl {
template <class T, class M, class I>
void gpg(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask, tensor_view<I, 1> index,
         const gpg_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::gpg";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  rlhf::detail::require_positive_param(p.f_norm, fn, "f_norm");
  auto s = detail::scores(fn, token_level_rewards);
  double nonzero = 0;
  for (double x : s) nonzero += x != 0 ? 1.0 : 0.0;
  const double alpha = static_cast<double>(s.size()) / std::max(nonzero, 1.0);
  std::vector<double> a(s.size());
  for (const auto& rows : detail::groups(index)) {
    const double mean = rows.size() > 1 ? detail::stats(s, rows).mean : 0.0;
    for (auto b : rows) a[b] = alpha * (s[b] - mean) / p.f_norm;
  }
  detail::broadcast(fn, a, response_mask, out);
}
}  // namespace impl

/// adv::gpg(tag, ...): the CPU call below, other backends by advantage_on (common.hpp).
struct gpg_fn : dispatch_on_tag<gpg_fn> {
  using dispatch_on_tag<gpg_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, const gpg_params& p, outputs<value_t<T>> out) const {
    impl::gpg(tag, token_level_rewards, response_mask, index, p, out);
  }
};
inline constexpr gpg_fn gpg{};

}  // namespace rlhf::adv
