// rlhf++ — the options of the trainers, reflected: every option has a
// dotted name ("ppo.clip_low", "diag.window") and a value that becomes a
// JSON record field (the metrics file's config record). The lists are
// checked against the structs when compiled (core/fields.hpp). Reading
// options back from text, JSON and the command line is config/reflect.hpp's.
//
// In train/ because the trainers write their configuration record
// (rl_trainer::config()); config/ sits above and includes this header, so no
// include runs from train/ up to config/.
#pragma once

#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../core/fields.hpp"
#include "metrics.hpp"
#include "structure.hpp"
#include "options.hpp"
#include "structure.hpp"

RLHF_REFLECT(rlhf::sampling, temperature, max_new_tokens);
RLHF_REFLECT_OMITS(rlhf::agg_params, mode);  // the structure's (a type), not an option
RLHF_REFLECT(rlhf::agg_params, dp_size, batch_num_tokens, global_batch_size, loss_scale_factor, row_eps);
RLHF_REFLECT(rlhf::ppo::policy_params, clip_low, clip_high, dual_clip, log_ratio_clamp, kl_stat_clamped, stat_eps,
             clipfrac, approx_kl, agg);
RLHF_REFLECT(rlhf::ppo::value_params, clip, style, scale, stat_eps, agg);
RLHF_REFLECT(rlhf::a2c::params, ent_coef, vf_coef, normalize_advantage, adv_eps, value_scale);
RLHF_REFLECT(rlhf::adv::grpo_params, epsilon, norm_by_std);
RLHF_REFLECT(rlhf::dpo::params, type, beta, label_smoothing, score, alpha, exp_cap, reference_free, smooth_sigmoid,
             length_normalize, scores_in_pair_losses, exo_zero_smoothing, discopop_tau);
RLHF_REFLECT(rlhf::train::reference_policy, kind, every, alpha);
RLHF_REFLECT(rlhf::train::diagnostic_params, window, kl_alarm, entropy_floor, entropy_fraction, clipfrac_alarm,
             approx_kl_alarm, stagnation_std, stagnation_zero_groups, value_growth, value_warmup);
RLHF_REFLECT(rlhf::train::rollout_correction, rejection, rejection_threshold, weights, weights_upper, weights_lower,
             weights_batch_normalize);
RLHF_REFLECT(rlhf::train::rl_options, steps, prompts_per_step, group_size, sample, ppo_epochs, minibatch_size, ppo,
             value, entropy_coef, early_stop_kl, a2c, kl_coef, adaptive_kl, kl_target, kl_horizon, gamma, lam,
             whiten_advantages, grpo, rollout_corr, ref, diag, metrics_path, progress, progress_every, checkpoint_path,
             checkpoint_every, seed, rollback);
RLHF_REFLECT(rlhf::pref::kto_params, type, beta, desirable_weight, undesirable_weight);
RLHF_REFLECT(rlhf::pref::cpo_params, type, beta, label_smoothing, simpo_gamma, alpha);
RLHF_REFLECT(rlhf::train::dpo_options, steps, batch_size, loss, objective, kto, cpo, cpo_alpha, orpo_beta, ref,
             metrics_path, progress, progress_every, checkpoint_path, checkpoint_every, seed, rollback);

namespace rlhf::config {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

/// Calls f(name, member&) for every leaf of a reflected struct, depth first,
/// names joined with '.'.
template <class S, class F>
void for_each_field(S& s, F&& f, const std::string& prefix = "") {
  static_assert(reflected<S>, "rlhf::config: this type is not reflected (RLHF_REFLECT, config/fields.hpp)");
  std::apply(
      [&](auto... fl) {
        auto one = [&](auto fd) {
          const std::string name = prefix + fd.name;
          auto& member = s.*(fd.ptr);
          if constexpr (reflected<decltype(member)>)
            for_each_field(member, f, name + ".");
          else
            f(name, member);
        };
        (one(fl), ...);
      },
      fields<std::remove_const_t<S>>::list());
}

/// Every leaf name of an options type, in declaration order.
template <class S>
std::vector<std::string> field_names() {
  std::vector<std::string> out;
  const S s{};
  for_each_field(s, [&](const std::string& name, const auto&) { out.push_back(name); });
  return out;
}
namespace detail {

/// One leaf into a record (JSON), exactly: doubles with 17 digits.
template <class T>
void put_leaf(train::record& r, const std::string& key, const T& v) {
  if constexpr (is_optional<T>::value) {
    if (v)
      put_leaf(r, key, *v);
    else
      r.set(key, std::nullopt);
  } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
    r.set(key, v);
  } else if constexpr (std::is_enum_v<T>) {
    r.set(key, to_string(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    r.set(key, static_cast<double>(v));
  } else if constexpr (std::is_unsigned_v<T>) {
    // a seed above 2^63 - 1 is written as its decimal string
    if (static_cast<unsigned long long>(v) > static_cast<unsigned long long>(std::numeric_limits<long long>::max()))
      r.set(key, std::to_string(v));
    else
      r.set(key, static_cast<long long>(v));
  } else {
    r.set(key, static_cast<long long>(v));
  }
}

}  // namespace detail

/// Appends every option of `s` to a record (the JSON of a configuration).
template <class S>
void to_record(const S& s, train::record& r) {
  for_each_field(s, [&](const std::string& name, const auto& v) { detail::put_leaf(r, name, v); });
}
// ---------------------------------------------------------------------------
// The structure (compile-time choices) as record fields. Works for
// rlhf::experiment and for train::rl_structure / train::dpo_structure.

template <class S>
void structure_to_record(train::record& r) {
  r.set("algorithm", to_string(S::algo));
  r.set("kl_estimator", train::kl_name<S>());
  if constexpr (S::algo != algorithm::dpo) {
    r.set("kl_placement", to_string(S::kl_where));
    r.set("advantage", to_string(S::adv));
    r.set("aggregation", to_string(S::agg));
  }
  if constexpr (requires { S::backend; })
    r.set("backend", rlhf::backend_name<std::remove_cv_t<decltype(S::backend)>>());
  else
    r.set("backend", "cpu");
  r.set("precision", train::precision_name<train::real_of_t<S>>());
}

/// The configuration record of a run (the metrics file's first line): the
/// structure S, then every option.
template <class S, class O>
train::record config_record(const O& options) {
  train::record r;
  r.set("record", "config");
  structure_to_record<S>(r);
  to_record(options, r);
  return r;
}
}  // namespace rlhf::config
