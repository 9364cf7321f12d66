// rlhf++ — shared plumbing of the advantage estimators: argument checks,
// the scores of outcome rewards, groups of responses to one prompt.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "../core/choices.hpp"
#include "../ops/masked.hpp"

namespace rlhf::adv {

/// Advantages and returns, both [B, T]. They may be the same view.
/// (Space: device_space for the CUDA estimators, adv::dev_outputs.)
template <class T, class Space = host_space>
struct outputs {
  tensor_view<T, 2, Space> advantages{}, returns{};
};

template <class T>
struct result {
  tensor<T, 2> advantages, returns;
};

/// The one dispatch of every advantage estimator. `adv::gae`, `adv::opo`,
/// ... are function objects: the CPU call is each object's own operator()
/// (its parameters written out, so braced outputs convert), and any other
/// backend tag goes to `advantage_on(tag, <name>_fn, ...)`, found by
/// argument-dependent lookup (backend/cuda/advantage.cuh).
template <class Fn>
struct dispatch_on_tag {
  template <class Tag, class... A>
  requires(!std::is_same_v<std::remove_cvref_t<Tag>, cpu_t>) auto operator()(Tag tag, A&&... a) const
      -> decltype(advantage_on(tag, std::declval<const Fn&>(), static_cast<A&&>(a)...)) {
    return advantage_on(tag, static_cast<const Fn&>(*this), static_cast<A&&>(a)...);
  }
  /// Not a backend tag: one sentence.
  template <class Tag, class... A>
  requires(!backend<std::remove_cvref_t<Tag>>) void operator()(Tag&&, A&&...) const {
    static_assert(rlhf::detail::not_a_backend<Tag>,
                  "adv: the first argument must be a backend tag: rlhf::cpu, rlhf::cpu.unchecked(), or rlhf::cuda "
                  "(<rlhf/cuda.hpp>)");
  }
};

namespace detail {

template <class T, class M>
void check_rewards(cpu_t tag, const char* fn, const tensor_view<T, 2>& rewards, const tensor_view<M, 2>& mask,
                   const outputs<value_t<T>>& out) {
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "token_level_rewards", rewards);
  rlhf::detail::require_nonempty(fn, "token_level_rewards", rewards);
  rlhf::detail::require_same_shape(fn, "advantages", out.advantages, "token_level_rewards", rewards);
  rlhf::detail::require_same_shape(fn, "returns", out.returns, "token_level_rewards", rewards);
  // storage, and one address per element
  rlhf::detail::require_output(fn, "advantages", out.advantages, "token_level_rewards", rewards);
  rlhf::detail::require_output(fn, "returns", out.returns, "token_level_rewards", rewards);
  rlhf::detail::require_disjoint(fn, "returns", out.returns, "advantages", out.advantages);
  // the rewards' and the mask's NaN / Inf scan in one vectorized pass
  std::vector<double> count;
  using V = std::remove_const_t<value_t<T>>;
  cpu_engine::mask_pass(fn, mask, cpu_engine::inputs<V, 1>{tag.check_finite, {"token_level_rewards"}, {rewards}},
                        "response_mask", count);
}

template <class I, class T>
void check_index(const char* fn, const tensor_view<I, 1>& index, const tensor_view<T, 2>& rewards) {
  rlhf::detail::require_extent(fn, "index", index, 0, rewards.extent(0), "one group id per response");
}

/// Outcome score of each response: the sum of its token rewards over all
/// positions (verl sums without the mask).
template <class T>
std::vector<double> scores(const char* fn, const tensor_view<T, 2>& rewards) {
  std::vector<double> s(static_cast<std::size_t>(rewards.extent(0)), 0.0);
  for (index_t b = 0; b < rewards.extent(0); ++b) {
    for (index_t t = 0; t < rewards.extent(1); ++t) s[b] += static_cast<double>(rewards(b, t));
    if (!std::isfinite(s[b]))
      rlhf::detail::fail(error_kind::non_finite, fn, "token_level_rewards",
                         "row " + std::to_string(b) + ": the sum of its rewards overflows");
  }
  return s;
}

/// Finite rewards whose statistics (a group's mean or spread, a return)
/// overflow: an error naming the rewards, never a NaN / Inf advantage.
[[noreturn]] inline void overflow(const char* fn, index_t b) {
  rlhf::detail::fail(
      error_kind::non_finite, fn, "token_level_rewards",
      "row " + std::to_string(b) + ": the advantage overflows (rewards too large for the working precision)");
}

/// The whitening of an estimator, its overflow reported against the rewards.
template <class F>
void whitening(const char* fn, F&& f) {
  try {
    f();
  } catch (const rlhf::error& e) {
    if (e.kind() != error_kind::non_finite) throw;
    rlhf::detail::fail(error_kind::non_finite, fn, "token_level_rewards",
                       std::string("the whitening overflows (") + e.what() + ")");
  }
}

/// A backward scan along T of every row: step(b, t, state) for t = T-1
/// .. 0, then done(b, state). Each row's chain is serial, so rows run in
/// pairs (the two chains overlap in the core), pairs in parallel over
/// OpenMP threads; a row's arithmetic is the same as alone.
template <class State, class Step, class Done>
void scan_rows_paired(index_t B, index_t T, Step&& step, Done&& done) {
  cpu_loops::for_each_row((B + 1) / 2, B * T >= (index_t{1} << 15), [&](index_t pr) {
    const index_t b0 = 2 * pr, b1 = b0 + 1;
    State s0{}, s1{};
    if (b1 < B) {
      for (index_t t = T; t-- > 0;) {
        step(b0, t, s0);
        step(b1, t, s1);
      }
      done(b0, s0);
      done(b1, s1);
    } else {
      for (index_t t = T; t-- > 0;) step(b0, t, s0);
      done(b0, s0);
    }
  });
}

/// Rows of each group, groups in order of first appearance.
template <class I>
std::vector<std::vector<index_t>> groups(const tensor_view<I, 1>& index) {
  std::map<long long, std::size_t> slot;
  std::vector<std::vector<index_t>> g;
  for (index_t b = 0; b < index.extent(0); ++b) {
    const auto key = static_cast<long long>(index(b));
    auto it = slot.find(key);
    if (it == slot.end()) {
      it = slot.emplace(key, g.size()).first;
      g.emplace_back();
    }
    g[it->second].push_back(b);
  }
  return g;
}

struct group_stats {
  double mean, std;  // std: unbiased (torch.std); 0 for a group of one
};

/// Mean and unbiased std of the scores s[rows[0..n)] (every backend).
RLHF_HD inline group_stats group_mean_std(const double* s, const index_t* rows, index_t n) {
  double m = 0;
  for (index_t k = 0; k < n; ++k) m += s[rows[k]];
  m /= static_cast<double>(n);
  if (n < 2) return {m, 0.0};
  double v = 0;
  for (index_t k = 0; k < n; ++k) v += (s[rows[k]] - m) * (s[rows[k]] - m);
  return {m, sqrt(v / static_cast<double>(n - 1))};
}

inline group_stats stats(const std::vector<double>& s, const std::vector<index_t>& rows) {
  return group_mean_std(s.data(), rows.data(), static_cast<index_t>(rows.size()));
}

/// advantages[b, t] = returns[b, t] = a[b] * mask[b, t].
template <class V, class M>
void broadcast(const char* fn, const std::vector<double>& a, const tensor_view<M, 2>& mask, const outputs<V>& out) {
  // every value checked before anything is written (a weight-like mask can overflow a * m too)
  for (index_t b = 0; b < mask.extent(0); ++b) {
    const double ab = a[static_cast<std::size_t>(b)];
    bool ok = std::isfinite(static_cast<double>(static_cast<V>(ab)));
    for (index_t t = 0; t < mask.extent(1) && ok; ++t)
      ok = std::isfinite(static_cast<double>(static_cast<V>(ab * static_cast<double>(mask(b, t)))));
    if (!ok) overflow(fn, b);
  }
  cpu_loops::for_each_2d(mask.extent(0), mask.extent(1), [&](index_t b, index_t t) {
    const V v = static_cast<V>(a[b] * static_cast<double>(mask(b, t)));
    out.advantages(b, t) = v;
    out.returns(b, t) = v;
  });
}

/// advantages = returns = masked_whiten(a_b * mask) * mask from one value a_b
/// per row (the outcome estimators that whiten over the batch: REINFORCE++'s
/// baseline variant, GDPO); the whitening's overflow is reported against the
/// rewards, and every value is checked before anything is written.
template <class V, class M>
void whiten_row_values(cpu_t tag, const char* fn, const std::vector<double>& a, const tensor_view<M, 2>& mask,
                       const ops::whiten_params& w, const outputs<V>& out) {
  const index_t B = mask.extent(0), T_ = mask.extent(1);
  for (index_t b = 0; b < B; ++b)
    if (!std::isfinite(static_cast<double>(static_cast<V>(a[static_cast<std::size_t>(b)])))) overflow(fn, b);
  tensor<V, 2> tiled({B, T_});
  cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
    tiled(b, t) = static_cast<V>(a[static_cast<std::size_t>(b)] * static_cast<double>(mask(b, t)));
  });
  whitening(fn, [&] {
    ops::detail::whiten_into(tag.unchecked(), "ops::masked_whiten", tensor_view<const V, 2>(tiled.view()), mask, w,
                             out.advantages, true);
  });
  cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) { out.returns(b, t) = out.advantages(b, t); });
}

/// The fraction of groups whose scores are all equal (both backends).
inline double zero_variance_of(const std::vector<double>& s, const std::vector<std::vector<index_t>>& g) {
  double zero = 0;
  for (const auto& rows : g) {
    double lo = INFINITY, hi = -INFINITY;
    for (auto r : rows) {
      lo = std::fmin(lo, s[static_cast<std::size_t>(r)]);
      hi = std::fmax(hi, s[static_cast<std::size_t>(r)]);
    }
    if (hi - lo == 0) zero += 1;
  }
  return zero / static_cast<double>(g.size());
}

}  // namespace detail

/// Fraction of the groups (responses sharing an index) whose outcome scores
/// (token rewards summed per row) are all equal: their group-relative
/// advantages are zero, they carry no signal (DAPO's dynamic sampling).
/// Groups of one response count as having no variance.
template <class T, class I>
double zero_variance_fraction(cpu_t tag, tensor_view<T, 2> rewards, tensor_view<I, 1> index) {
  constexpr const char* fn = "adv::zero_variance_fraction";
  rlhf::detail::require_nonempty(fn, "token_level_rewards", rewards);
  rlhf::detail::require_finite(tag, fn, "token_level_rewards", rewards);
  detail::check_index(fn, index, rewards);
  return detail::zero_variance_of(detail::scores(fn, rewards), detail::groups(index));
}

}  // namespace rlhf::adv
