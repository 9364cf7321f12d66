// rlhf++ — generalized advantage estimation (Schulman et al. 2016), verl
// compute_gae_advantage_return.
//
//   delta_t = r_t + gamma V_{t+1} - V_t,   A_t = delta_t + gamma lam A_{t+1}
// computed backwards; at a masked position (multi-turn observation tokens)
// the running next value and advantage are carried through unchanged.
//   returns = A + V (unwhitened);  advantages = masked_whiten(A) if whiten.
#pragma once

#include "common.hpp"

namespace rlhf::adv {

struct gae_params {
  double gamma = 1.0;
  double lam = 1.0;
  bool whiten = true;  ///< verl whitens over the batch
  whiten_params whitening = whiten_params::verl();
};

namespace impl {
template <class T, class M>
void gae(cpu_t tag, tensor_view<T, 2> token_level_rewards, in_view<T, 2> values, tensor_view<M, 2> response_mask,
         const gae_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::gae";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  rlhf::detail::require_same_shape(fn, "values", values, "token_level_rewards", token_level_rewards);
  rlhf::detail::require_finite(tag, fn, "values", values);
  rlhf::detail::require_nonneg_param(p.gamma, fn, "gamma");
  rlhf::detail::require_nonneg_param(p.lam, fn, "lam");
  rlhf::detail::require_param(p.gamma <= 1 && p.lam <= 1, fn, p.gamma > 1 ? "gamma" : "lam", "must be <= 1");
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  if (p.whiten && !(ops::mask_count(tag, response_mask) >= 2))
    rlhf::detail::fail(error_kind::empty, fn, "response_mask",
                       "has fewer than 2 valid tokens: the advantages cannot be whitened");
  using V = value_t<T>;
  // rows are independent: the backward recurrence of each row (two rows
  // side by side, pairs of rows in parallel: detail::scan_rows_paired)
  std::vector<unsigned char> bad(static_cast<std::size_t>(B), 0);
  struct scan_state {
    double next_value = 0, last = 0;
    V probe = 0;  // 0 while every value is finite (x - x is NaN for +-Inf and NaN)
  };
  const double gl = p.gamma * p.lam;
  // (by value: the loop keeps the views' pointers and strides in registers)
  auto step = [rw = token_level_rewards, vs = values, mk = response_mask, adv = out.advantages, ret = out.returns,
               gamma = p.gamma, gl](index_t b, index_t t, scan_state& s) {
    const double v = static_cast<double>(vs(b, t));
    const double delta = static_cast<double>(rw(b, t)) + gamma * s.next_value - v;
    const double a = delta + gl * s.last;
    if (mk(b, t) != M(0)) {
      s.next_value = v;
      s.last = a;
    }
    const V av = static_cast<V>(s.last), rv = static_cast<V>(s.last + v);
    s.probe += (av - av) + (rv - rv);
    adv(b, t) = av;
    ret(b, t) = rv;
  };
  detail::scan_rows_paired<scan_state>(
      B, T_, step, [&](index_t b, const scan_state& s) { bad[static_cast<std::size_t>(b)] = s.probe == 0 ? 0 : 1; });
  for (index_t b = 0; b < B; ++b)
    if (bad[static_cast<std::size_t>(b)] != 0) detail::overflow(fn, b);
  if (p.whiten)
    detail::whitening(fn, [&] {
      ops::masked_whiten(tag.unchecked(), tensor_view<const V, 2>(out.advantages), response_mask, p.whitening,
                         out.advantages);
    });
}

/// Convenience overload: allocates the outputs.
template <class T, class M>
result<value_t<T>> gae(cpu_t tag, tensor_view<T, 2> token_level_rewards, in_view<T, 2> values,
                       tensor_view<M, 2> response_mask, const gae_params& p) {
  using V = value_t<T>;
  result<V> r{tensor<V, 2>(token_level_rewards.shape()), tensor<V, 2>(token_level_rewards.shape())};
  gae(tag, token_level_rewards, values, response_mask, p, outputs<V>{r.advantages.view(), r.returns.view()});
  return r;
}

}  // namespace impl

/// The function and the structural choice `rlhf::adv::gae` (core/choices.hpp).
struct gae_fn : estimator_tag<advantage_estimator::gae>, dispatch_on_tag<gae_fn> {
  using dispatch_on_tag<gae_fn>::operator();
  template <class T, class M>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, in_view<T, 2> values,
                  tensor_view<M, 2> response_mask, const gae_params& p, outputs<value_t<T>> out) const {
    impl::gae(tag, token_level_rewards, values, response_mask, p, out);
  }
  template <class T, class M>
  result<value_t<T>> operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, in_view<T, 2> values,
                                tensor_view<M, 2> response_mask, const gae_params& p) const {
    return impl::gae(tag, token_level_rewards, values, response_mask, p);
  }
};
inline constexpr gae_fn gae{};

}  // namespace rlhf::adv
