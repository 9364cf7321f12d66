// rlhf++ — the compile-time structure of an RL run, as the trainers read it.
//
// A structure is any type with the static members below: train::rl_structure
// (plain enums), or rlhf::experiment (tag objects, config/experiment.hpp),
// which adds `backend` and `real_type`.
#pragma once

#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../concepts/batch.hpp"
#include "../core/choices.hpp"
#include "../core/backend.hpp"
#include "../kl/estimators.hpp"
#include "../ops/aggregate.hpp"

namespace rlhf::train {

using rlhf::advantage_estimator;
using rlhf::algorithm;
using rlhf::kl_placement;

/// The structural (compile-time) choices of a run. `Real` is the trainer's
/// working precision: the element type of its [B, T] buffers and objectives.
template <algorithm Algo = algorithm::ppo, kl_estimator KL = kl_estimator::k1,
          kl_placement Where = kl_placement::reward, advantage_estimator Adv = advantage_estimator::gae,
          agg_mode Agg = agg_mode::token_mean, class Real = double, kl_correction Corr = kl_correction::none>
struct rl_structure {
  static constexpr algorithm algo = Algo;
  static constexpr kl_estimator kl = KL;
  static constexpr kl_correction kl_corr = Corr;  ///< the KL in the loss's off-policy correction
  static constexpr kl_placement kl_where = Where;
  static constexpr advantage_estimator adv = Adv;
  static constexpr agg_mode agg = Agg;
  static constexpr bool needs_value = Adv == advantage_estimator::gae || Algo == algorithm::a2c;
  using real_type = Real;
};

/// Whether an advantage estimator normalises within groups of responses to
/// one prompt (group_size >= 2 needed).
constexpr bool group_relative(advantage_estimator a) {
  return a == advantage_estimator::grpo || a == advantage_estimator::rloo || a == advantage_estimator::maxrl ||
         a == advantage_estimator::loo_grpo || a == advantage_estimator::gdpo;
}

/// The structure's KL correction (none unless it declares kl_corr).
template <class S>
constexpr kl_correction kl_correction_of() {
  if constexpr (requires { S::kl_corr; })
    return S::kl_corr;
  else
    return kl_correction::none;
}

/// The structure's KL choice by name ("k3", "k3-is", "k4", "k3-on-policy").
template <class S>
std::string kl_name() {
  return kl_choice_name(S::kl, kl_correction_of<S>());
}

namespace detail {
/// The structure's backend tag (rlhf::experiment carries one; rlhf::cpu otherwise).
template <class S>
constexpr auto backend_of() {
  if constexpr (requires { S::backend; })
    return S::backend;
  else
    return cpu;
}

template <class S>
struct real_of {
  using type = double;
};
template <class S>
requires requires { typename S::real_type; }
struct real_of<S> {
  using type = typename S::real_type;
};
}  // namespace detail

/// The working precision of a structure (double unless it declares real_type).
template <class S>
using real_of_t = typename detail::real_of<S>::type;

/// "float" or "double" (the record's `precision`).
template <class W>
constexpr const char* precision_name() {
  if constexpr (std::is_same_v<W, float>)
    return "float";
  else if constexpr (std::is_same_v<W, double>)
    return "double";
  else
    return "other";
}

/// The structure as one word, e.g. "ppo/k1/reward/gae/token-mean/double"
/// (checkpoints name the structure they were written by).
template <class S>
std::string structure_name() {
  std::string s = std::string(to_string(S::algo)) + "/" + kl_name<S>();
  if constexpr (S::algo != algorithm::dpo)
    s += std::string("/") + to_string(S::kl_where) + "/" + to_string(S::adv) + "/" + to_string(S::agg);
  return s + "/" + precision_name<real_of_t<S>>();
}

namespace detail {
/// A permutation of 0..n-1 from the trainer's engine (Fisher-Yates).
inline void permutation(index_t n, rng_t& g, std::vector<index_t>& v) {
  v.resize(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  for (index_t i = n - 1; i > 0; --i)
    std::swap(v[static_cast<std::size_t>(i)], v[g() % static_cast<std::uint64_t>(i + 1)]);
}
inline std::vector<index_t> permutation(index_t n, rng_t& g) {
  std::vector<index_t> v;
  permutation(n, g, v);
  return v;
}
}  // namespace detail

}  // namespace rlhf::train
