// rlhf++ — REINFORCE-style estimators: REINFORCE++ (Hu 2025), its group
// baseline variant, and ReMax (Li et al. 2023). verl
// compute_reinforce_plus_plus_outcome_advantage,
// compute_reinforce_plus_plus_baseline_outcome_advantage,
// compute_remax_outcome_advantage.
//
//   REINFORCE++:   G_t = r_t + gamma G_{t+1} over valid tokens (a masked token
//                  drops its reward, stores 0 and carries G); A = whiten(G) * m
//   ++ baseline:   A = whiten((s_b - mean_g) * m) * m, mean of a group of one = 0
//   ReMax:         G_t = sum_{s >= t} r_s m_s;  A = G - baseline_b * m
#pragma once

#include "common.hpp"

namespace rlhf::adv {

struct reinforce_pp_params {
  double gamma = 1.0;
  whiten_params whitening = whiten_params::verl();
};

namespace detail {
inline void check_params(const reinforce_pp_params& p, const char* fn) {
  rlhf::detail::require_nonneg_param(p.gamma, fn, "gamma");
  rlhf::detail::require_param(p.gamma <= 1, fn, "gamma", "must be <= 1");
}
}  // namespace detail

namespace impl {
template <class T, class M>
void reinforce_pp(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  const reinforce_pp_params& p, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::reinforce_pp";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_params(p, fn);
  if (!(ops::mask_count(tag, response_mask) >= 2))
    rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has fewer than 2 valid tokens: cannot whiten");
  using V = value_t<T>;
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  std::vector<unsigned char> bad(static_cast<std::size_t>(B), 0);
  struct scan_state {
    double g = 0;
    V probe = 0;  // 0 while every return is finite
  };
  // (by value: the loop keeps the views' pointers and strides in registers)
  auto step = [rw = token_level_rewards, mk = response_mask, ret = out.returns, gamma = p.gamma](index_t b, index_t t,
                                                                                                 scan_state& s) {
    if (mk(b, t) != M(0)) {
      s.g = static_cast<double>(rw(b, t)) + gamma * s.g;
      const V gv = static_cast<V>(s.g);
      s.probe += gv - gv;
      ret(b, t) = gv;
    } else {
      ret(b, t) = V(0);
    }
  };
  // the scan is serial along T (one add chain per row), so two rows run
  // side by side to overlap their chains; rows in parallel over threads
  detail::scan_rows_paired<scan_state>(
      B, T_, step, [&](index_t b, const scan_state& s) { bad[static_cast<std::size_t>(b)] = s.probe == 0 ? 0 : 1; });
  for (index_t b = 0; b < B; ++b)
    if (bad[static_cast<std::size_t>(b)] != 0) detail::overflow(fn, b);
  // whiten(G) * m in one pass; the engine refuses a non-finite output
  detail::whitening(fn, [&] {
    ops::detail::whiten_into(tag.unchecked(), "ops::masked_whiten", tensor_view<const V, 2>(out.returns), response_mask,
                             p.whitening, out.advantages, true);
  });
}

}  // namespace impl

/// The function and the structural choice `rlhf::adv::reinforce_pp` (core/choices.hpp).
struct reinforce_pp_fn : estimator_tag<advantage_estimator::reinforce_pp>, dispatch_on_tag<reinforce_pp_fn> {
  using dispatch_on_tag<reinforce_pp_fn>::operator();
  template <class T, class M>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  const reinforce_pp_params& p, outputs<value_t<T>> out) const {
    impl::reinforce_pp(tag, token_level_rewards, response_mask, p, out);
  }
};
inline constexpr reinforce_pp_fn reinforce_pp{};

namespace impl {
template <class T, class M, class I>
void reinforce_pp_baseline(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                           tensor_view<I, 1> index, const whiten_params& w, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::reinforce_pp_baseline";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  if (!(ops::mask_count(tag, response_mask) >= 2))
    rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has fewer than 2 valid tokens: cannot whiten");
  auto s = detail::scores(fn, token_level_rewards);
  std::vector<double> a(s.size());
  for (const auto& rows : detail::groups(index)) {
    const double mean = rows.size() > 1 ? detail::stats(s, rows).mean : 0.0;
    for (auto b : rows) a[b] = s[b] - mean;
  }
  detail::whiten_row_values(tag, fn, a, response_mask, w, out);
}
}  // namespace impl

/// adv::reinforce_pp_baseline(tag, ...): the CPU call below, other backends by advantage_on (common.hpp).
struct reinforce_pp_baseline_fn : dispatch_on_tag<reinforce_pp_baseline_fn> {
  using dispatch_on_tag<reinforce_pp_baseline_fn>::operator();
  template <class T, class M, class I>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, tensor_view<M, 2> response_mask,
                  tensor_view<I, 1> index, const whiten_params& w, outputs<value_t<T>> out) const {
    impl::reinforce_pp_baseline(tag, token_level_rewards, response_mask, index, w, out);
  }
};
inline constexpr reinforce_pp_baseline_fn reinforce_pp_baseline{};

namespace impl {
template <class T, class M>
void remax(cpu_t tag, tensor_view<T, 2> token_level_rewards, in_view<T, 1> reward_baselines,
           tensor_view<M, 2> response_mask, outputs<value_t<T>> out) {
  constexpr const char* fn = "adv::remax";
  detail::check_rewards(tag, fn, token_level_rewards, response_mask, out);
  rlhf::detail::require_extent(fn, "reward_baselines", reward_baselines, 0, token_level_rewards.extent(0),
                               "one baseline per response");
  rlhf::detail::require_finite(tag, fn, "reward_baselines", reward_baselines);
  using V = value_t<T>;
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  for (index_t b = 0; b < B; ++b) {
    double g = 0;
    for (index_t t = T_; t-- > 0;) {
      const double m = static_cast<double>(response_mask(b, t));
      g += m != 0 ? static_cast<double>(token_level_rewards(b, t)) * m : 0.0;
      const V rv = static_cast<V>(g), av = static_cast<V>(g - static_cast<double>(reward_baselines(b)) * m);
      if (!std::isfinite(static_cast<double>(rv)) || !std::isfinite(static_cast<double>(av))) detail::overflow(fn, b);
      out.returns(b, t) = rv;
      out.advantages(b, t) = av;
    }
  }
}
}  // namespace impl

/// adv::remax(tag, ...): the CPU call below, other backends by advantage_on (common.hpp).
struct remax_fn : dispatch_on_tag<remax_fn> {
  using dispatch_on_tag<remax_fn>::operator();
  template <class T, class M>
  void operator()(cpu_t tag, tensor_view<T, 2> token_level_rewards, in_view<T, 1> reward_baselines,
                  tensor_view<M, 2> response_mask, outputs<value_t<T>> out) const {
    impl::remax(tag, token_level_rewards, reward_baselines, response_mask, out);
  }
};
inline constexpr remax_fn remax{};

}  // namespace rlhf::adv
