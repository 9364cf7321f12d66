// rlhf++ — the options read back: from text, JSON values and the command
// line (plain C++: core/fields.hpp).
//
// The options structs stay plain aggregates (train/options.hpp and the
// params of each objective); train/reflect.hpp lists their fields with
// RLHF_REFLECT and walks them (a dotted name per field, its JSON value);
// this header parses each leaf, prints it, and sets options by name. Leaves: floating point, integers, bool,
// std::string, enums with a to_string, std::optional of a leaf. The aggregation mode inside agg_params is not an
// option: it is the structure's (a type).
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

#include "../train/reflect.hpp"
#include "choices.hpp"
#include "json.hpp"

namespace rlhf::config {

namespace detail {

[[noreturn]] inline void bad_value(const std::string& key, std::string_view text, const std::string& expected) {
  rlhf::detail::fail(error_kind::param, "config", key,
                     "has a bad value '" + std::string(text) + "': expected " + expected);
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
    static_assert(named_enum<T>, "rlhf::config: an enum option must be declared with RLHF_NAMED_ENUM");
    if (const auto e = parse_enum<T>(t)) {
      out = *e;
      return;
    }
    bad_value(key, text, "one of " + enum_name_list<T>());
  } else if constexpr (std::is_floating_point_v<T>) {
    char* end = nullptr;
    errno = 0;
    const double v = t.empty() ? 0.0 : std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size()) bad_value(key, text, "a number (inf and -inf allowed)");
    if (std::isnan(v)) bad_value(key, text, "a number, not NaN");
    if (std::isinf(v) && errno == ERANGE)  // 1e400: out of range, not "inf"
      bad_value(key, text, "a number within the range of a double (write inf for infinity)");
    if (!std::isinf(v) && std::isinf(static_cast<T>(v)))
      bad_value(key, text, "a number within the range of the option");
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

namespace detail {
/// A JSON value must have the option's JSON type: a boolean for a bool, a
/// string for a string or an enum, a number for a number ("Infinity" /
/// "-Infinity" for an infinite double, a decimal string for an unsigned
/// integer above 2^63 - 1, as the writer does), null only for an optional.
template <class T>
void check_json_kind(const std::string& key, const json_item& it) {
  using K = json_item::kind;
  if constexpr (is_optional<T>::value) {
    if (it.type != K::null) check_json_kind<typename T::value_type>(key, it);
  } else {
    if (it.type == K::null) bad_value(key, "null", "a value (null is none; leave the key out for the default)");
    if constexpr (std::is_same_v<T, bool>) {
      if (it.type != K::boolean) bad_value(key, it.text, "true or false (a JSON boolean)");
    } else if constexpr (std::is_same_v<T, std::string> || std::is_enum_v<T>) {
      if (it.type != K::string) bad_value(key, it.text, "a JSON string");
    } else if constexpr (std::is_floating_point_v<T>) {
      const bool inf = it.type == K::string &&
                       (it.text == "Infinity" || it.text == "-Infinity" || it.text == "inf" || it.text == "-inf");
      if (it.type != K::number && !inf) bad_value(key, it.text, "a JSON number (or \"Infinity\", \"-Infinity\")");
    } else if constexpr (std::is_integral_v<T>) {
      const bool big = std::is_unsigned_v<T> && it.type == K::string;
      if (it.type != K::number && !big) bad_value(key, it.text, "a JSON integer");
    }
  }
}
}  // namespace detail

/// Sets the option `it.key` from a JSON value, its JSON type checked.
/// Returns false when `s` has no such option.
template <class S>
bool set_field_json(S& s, const json_item& it) {
  bool found = false;
  for_each_field(s, [&](const std::string& name, auto& v) {
    if (!found && name == it.key) {
      detail::check_json_kind<std::remove_cvref_t<decltype(v)>>(name, it);
      detail::parse_leaf(name, it.text, v);
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

/// The keys structure_to_record writes (compile-time: not overridable).
inline bool is_structure_key(std::string_view k) {
  return k == "algorithm" || k == "kl_estimator" || k == "kl_placement" || k == "advantage" || k == "aggregation" ||
         k == "backend" || k == "precision";
}

}  // namespace rlhf::config
