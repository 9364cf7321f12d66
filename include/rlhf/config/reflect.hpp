// rlhf++ — reflection of the numeric options (plain C++: config/fields.hpp).
//
// The options structs stay plain aggregates (train/options.hpp and the
// params of each objective); this header lists their fields with
// RLHF_REFLECT, and one generic walk gives every field a dotted
// name ("ppo.clip_low", "diag.window") and a value that prints, becomes JSON
// and parses back. Leaves: floating point, integers, bool, std::string,
// enums with a to_string, std::optional of a leaf. The aggregation mode
// inside agg_params is not an option: it is the structure's (a type).
//
// No Boost here: the trainers include this header, and <rlhf/rlhf.hpp> needs
// no Boost. Hana is used in config/experiment.hpp only.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../train/metrics.hpp"
#include "../train/options.hpp"
#include "../train/structure.hpp"
#include "choices.hpp"
#include "fields.hpp"
#include "json.hpp"

RLHF_REFLECT(rlhf::sampling, temperature, max_new_tokens);
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
RLHF_REFLECT(rlhf::train::rl_options, steps, prompts_per_step, group_size, sample, ppo_epochs, minibatch_size, ppo,
             value, entropy_coef, early_stop_kl, a2c, kl_coef, adaptive_kl, kl_target, kl_horizon, gamma, lam,
             whiten_advantages, grpo, ref, diag, metrics_path, progress, progress_every, checkpoint_path,
             checkpoint_every, seed);
RLHF_REFLECT(rlhf::train::dpo_options, steps, batch_size, loss, ref, metrics_path, progress, progress_every,
             checkpoint_path, checkpoint_every, seed);

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

[[noreturn]] inline void bad_value(const std::string& key, std::string_view text, const std::string& expected) {
  rlhf::detail::fail(error_kind::param, "config", key,
                     "has a bad value '" + std::string(text) + "': expected " + expected);
}

template <class E>
std::string enum_names() {
  std::string s;
  for (int i = 0; i < 64; ++i) {
    const std::string n = to_string(static_cast<E>(i));
    if (n == "?") break;
    s += (s.empty() ? "" : ", ") + n;
  }
  return s;
}

/// One leaf from its text (a command-line value or a JSON value's text).
template <class T>
void parse_leaf(const std::string& key, std::string_view text, T& out) {
  const std::string t(text);
  if constexpr (is_optional<T>::value) {
    if (t == "null" || t == "none" || t.empty()) {
      out.reset();
    } else {
      typename T::value_type v{};
      parse_leaf(key, text, v);
      out = v;
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    if (t == "true" || t == "1" || t == "yes" || t == "on")
      out = true;
    else if (t == "false" || t == "0" || t == "no" || t == "off")
      out = false;
    else
      bad_value(key, text, "true or false");
  } else if constexpr (std::is_same_v<T, std::string>) {
    out = t;
  } else if constexpr (std::is_enum_v<T>) {
    for (int i = 0; i < 64; ++i) {
      const std::string n = to_string(static_cast<T>(i));
      if (n == "?") break;
      if (n == t) {
        out = static_cast<T>(i);
        return;
      }
    }
    bad_value(key, text, "one of " + enum_names<T>());
  } else if constexpr (std::is_floating_point_v<T>) {
    char* end = nullptr;
    errno = 0;
    const double v = t.empty() ? 0.0 : std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size()) bad_value(key, text, "a number (inf and -inf allowed)");
    if (std::isnan(v)) bad_value(key, text, "a number, not NaN");
    out = static_cast<T>(v);
  } else if constexpr (std::is_integral_v<T>) {
    char* end = nullptr;
    errno = 0;
    if (t.empty()) bad_value(key, text, "an integer");
    if constexpr (std::is_signed_v<T>) {
      const long long v = std::strtoll(t.c_str(), &end, 10);
      if (end != t.c_str() + t.size() || errno == ERANGE || v < std::numeric_limits<T>::min() ||
          v > std::numeric_limits<T>::max())
        bad_value(key, text, "an integer");
      out = static_cast<T>(v);
    } else {
      const unsigned long long v = std::strtoull(t.c_str(), &end, 10);
      if (t[0] == '-' || end != t.c_str() + t.size() || errno == ERANGE || v > std::numeric_limits<T>::max())
        bad_value(key, text, "a non-negative integer");
      out = static_cast<T>(v);
    }
  } else {
    static_assert(sizeof(T) == 0, "rlhf::config: unsupported option type");
  }
}

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

/// One leaf as text (the printed form; parse_leaf reads it back).
template <class T>
std::string leaf_text(const T& v) {
  if constexpr (is_optional<T>::value) {
    return v ? leaf_text(*v) : std::string("null");
  } else if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v;
  } else if constexpr (std::is_enum_v<T>) {
    return to_string(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return train::record::shortest(static_cast<double>(v));
  } else {
    return std::to_string(v);
  }
}

/// Levenshtein distance, for "did you mean" in unknown-key errors.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

inline std::string did_you_mean(std::string_view key, const std::vector<std::string>& names) {
  std::string best;
  std::size_t d = std::max<std::size_t>(3, key.size() / 3) + 1;
  for (const auto& n : names) {
    const std::size_t e = edit_distance(key, n);
    if (e < d) {
      d = e;
      best = n;
    }
  }
  return best.empty() ? std::string() : " (did you mean '" + best + "'?)";
}

}  // namespace detail

/// Appends every option of `s` to a record (the JSON of a configuration).
template <class S>
void to_record(const S& s, train::record& r) {
  for_each_field(s, [&](const std::string& name, const auto& v) { detail::put_leaf(r, name, v); });
}

/// Sets the option `key` of `s` from text. Returns false when `s` has no
/// such option (the caller decides whether that is an error).
template <class S>
bool set_field(S& s, std::string_view key, std::string_view text) {
  bool found = false;
  for_each_field(s, [&](const std::string& name, auto& v) {
    if (!found && name == key) {
      detail::parse_leaf(name, text, v);
      found = true;
    }
  });
  return found;
}

/// Sets the option `key` or raises rlhf::error(param) naming the unknown key.
template <class S>
void set_field_or_fail(S& s, std::string_view key, std::string_view text) {
  if (!set_field(s, key, text))
    rlhf::detail::fail(error_kind::param, "config", std::string(key),
                       "is not an option of this experiment" + detail::did_you_mean(key, field_names<S>()));
}

/// One option per line, "name = value".
template <class S>
std::string to_text(const S& s) {
  std::string out;
  for_each_field(s, [&](const std::string& name, const auto& v) { out += name + " = " + detail::leaf_text(v) + "\n"; });
  return out;
}

// ---------------------------------------------------------------------------
// The structure (compile-time choices) as record fields. Works for
// rlhf::experiment and for train::rl_structure / train::dpo_structure.

template <class S>
void structure_to_record(train::record& r) {
  r.set("algorithm", to_string(S::algo));
  r.set("kl_estimator", to_string(S::kl));
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

/// The keys structure_to_record writes (compile-time: not overridable).
inline bool is_structure_key(std::string_view k) {
  return k == "algorithm" || k == "kl_estimator" || k == "kl_placement" || k == "advantage" || k == "aggregation" ||
         k == "backend" || k == "precision";
}

}  // namespace rlhf::config
