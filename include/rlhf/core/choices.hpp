// rlhf++ — the structural choices of a run, as tag objects.
//
// Each choice is a constexpr object of its own empty type, so it can be a
// template argument (`rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k3, ...>`)
// and selects code paths with no run-time cost. Every tag type names its
// category (`choice_category`), its enum value (`value`) and a name.
//
//   category      tags
//   algorithm     rlhf::algo::ppo, algo::a2c, algo::dpo
//   KL estimator  rlhf::kl::k1, kl::k2, kl::k3, kl::abs; in the loss also the
//                 IS-corrected kl::k3_is, kl::k4, kl::k3_on_policy (kl/is.hpp)
//   KL placement  rlhf::kl_in_reward, rlhf::kl_in_loss
//   advantage     rlhf::adv::gae, adv::grpo, adv::rloo, adv::reinforce_pp, adv::maxrl,
//                 adv::loo_grpo, adv::gdpo
//                 (these are also the advantage functions: advantage/*.hpp)
//   aggregation   rlhf::agg::token_mean, agg::token_sum, agg::seq_mean_token_sum,
//                 agg::seq_mean_token_mean, agg::seq_mean_token_sum_norm
//   backend       rlhf::cpu (rlhf::cpu.unchecked()), rlhf::cuda (<rlhf/cuda.hpp>, nvcc)
//   precision     rlhf::fp64 (default), rlhf::fp32: the trainer's working
//                 precision (its [B, T] buffers and objectives)
//
// Plain types only, on core/ alone: no Boost.Hana here (config/experiment.hpp
// adds it), and the advantage estimators can derive from adv::estimator_tag
// without an include running up to config/.
#pragma once

#include <string>
#include <type_traits>

#include "backend.hpp"
#include "vocabulary.hpp"

namespace rlhf {

/// The categories of structural choices.
namespace choice {
struct algorithm {};
struct kl_estimator {};
struct kl_placement {};
struct advantage {};
struct aggregation {};
struct backend {};
struct precision {};

/// The category of a tag type (void: not a choice).
template <class T>
struct category_of {
  using type = void;
};
template <class T>
requires requires { typename T::choice_category; }
struct category_of<T> {
  using type = typename T::choice_category;
};
/// Backend tags (rlhf::cpu, rlhf::cuda: they declare `backend_tag`).
template <class T>
requires requires { typename T::backend_tag; }
struct category_of<T> {
  using type = backend;
};
template <class T>
using category_t = typename category_of<std::remove_cvref_t<T>>::type;
template <class T>
inline constexpr bool is_choice_v = !std::is_void_v<category_t<T>>;
}  // namespace choice

namespace algo {
template <algorithm A>
struct tag {
  using choice_category = choice::algorithm;
  static constexpr algorithm value = A;
};
inline constexpr tag<algorithm::ppo> ppo{};
inline constexpr tag<algorithm::a2c> a2c{};
inline constexpr tag<algorithm::dpo> dpo{};
}  // namespace algo

namespace kl {
template <kl_estimator E>
struct estimator_tag {
  using choice_category = choice::kl_estimator;
  static constexpr kl_estimator value = E;
};
inline constexpr estimator_tag<kl_estimator::k1> k1{};
inline constexpr estimator_tag<kl_estimator::k2> k2{};
inline constexpr estimator_tag<kl_estimator::k3> k3{};
inline constexpr estimator_tag<kl_estimator::abs> abs{};
/// An estimator with its off-policy correction (a KL in the loss only).
template <kl_estimator E, kl_correction C>
struct corrected_tag {
  using choice_category = choice::kl_estimator;
  static constexpr kl_estimator value = E;
  static constexpr kl_correction correction = C;
};
/// k3 * pi / pi_old (TRL use_bias_correction_kl, slime use_unbiased_kl)
inline constexpr corrected_tag<kl_estimator::k3, kl_correction::ratio> k3_is{};
/// k4 = pi / pi_old * k1 (open-instruct estimate_kl 3)
inline constexpr corrected_tag<kl_estimator::k1, kl_correction::ratio> k4{};
/// k3 * exp(logp - sg(logp)): the on-policy approximation (TRL without old log-probs)
inline constexpr corrected_tag<kl_estimator::k3, kl_correction::on_policy> k3_on_policy{};
}  // namespace kl

template <kl_placement P>
struct kl_placement_tag {
  using choice_category = choice::kl_placement;
  static constexpr kl_placement value = P;
};
inline constexpr kl_placement_tag<kl_placement::reward> kl_in_reward{};
inline constexpr kl_placement_tag<kl_placement::loss> kl_in_loss{};

namespace agg {
template <agg_mode M>
struct tag {
  using choice_category = choice::aggregation;
  static constexpr agg_mode value = M;
};
inline constexpr tag<agg_mode::token_mean> token_mean{};
inline constexpr tag<agg_mode::token_sum> token_sum{};
inline constexpr tag<agg_mode::seq_mean_token_sum> seq_mean_token_sum{};
inline constexpr tag<agg_mode::seq_mean_token_mean> seq_mean_token_mean{};
inline constexpr tag<agg_mode::seq_mean_token_sum_norm> seq_mean_token_sum_norm{};
}  // namespace agg

/// The trainer's working precision.
template <class T>
struct precision_tag {
  using choice_category = choice::precision;
  using type = T;
};
inline constexpr precision_tag<float> fp32{};
inline constexpr precision_tag<double> fp64{};

/// The KL choice's name: the estimator's ("k3"), "k4" for k1 times the
/// ratio, "<k>-is" for another estimator times the ratio, "<k>-on-policy".
inline std::string kl_choice_name(kl_estimator e, kl_correction c) {
  if (c == kl_correction::none) return to_string(e);
  if (c == kl_correction::ratio) return e == kl_estimator::k1 ? "k4" : std::string(to_string(e)) + "-is";
  return std::string(to_string(e)) + "-on-policy";
}

namespace kl {
/// The off-policy correction of a KL choice's tag (none for k1/k2/k3/abs).
template <class Tag>
constexpr kl_correction correction_of() {
  if constexpr (requires { Tag::correction; })
    return Tag::correction;
  else
    return kl_correction::none;
}
}  // namespace kl

namespace adv {
/// Base of the advantage functions' types (adv::gae, ...): each is both the
/// function and the structural choice.
template <advantage_estimator A>
struct estimator_tag {
  using choice_category = choice::advantage;
  static constexpr advantage_estimator value = A;
};
}  // namespace adv

}  // namespace rlhf
