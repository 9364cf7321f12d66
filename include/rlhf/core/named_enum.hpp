// rlhf++ — enums whose names are written once.
//
//   RLHF_NAMED_ENUM(kl_placement, (reward, "reward"), (loss, "loss"));
//
// at namespace scope declares `enum class kl_placement { reward, loss }`,
// `to_string(kl_placement)` ("?" for a value outside the list) and
// `enum_size(kl_placement)` (found by argument-dependent lookup), from one
// list: an enumerator cannot be added without its name. The configuration
// reads and lists the values through rlhf::enum_values<E>() and
// rlhf::parse_enum<E>(text), so no parse table is kept by hand either.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "pp.hpp"

#define RLHF_NAMED_ENUM_ID(E, p) RLHF_NAMED_ENUM_FIRST p
#define RLHF_NAMED_ENUM_TEXT(E, p) RLHF_NAMED_ENUM_SECOND p
#define RLHF_NAMED_ENUM_FIRST(id, text) id
#define RLHF_NAMED_ENUM_SECOND(id, text) text

#define RLHF_NAMED_ENUM(E, ...)                                                                                     \
  enum class E { RLHF_PP_FOR_EACH(RLHF_NAMED_ENUM_ID, E, __VA_ARGS__) };                                            \
  inline constexpr const char* rlhf_enum_names_of_##E[] = {RLHF_PP_FOR_EACH(RLHF_NAMED_ENUM_TEXT, E, __VA_ARGS__)}; \
  [[nodiscard]] constexpr std::size_t enum_size(E) noexcept {                                                       \
    return sizeof(rlhf_enum_names_of_##E) / sizeof(rlhf_enum_names_of_##E[0]);                                      \
  }                                                                                                                 \
  [[nodiscard]] constexpr const char* to_string(E v) noexcept {                                                     \
    const auto i = static_cast<std::size_t>(v);                                                                     \
    return i < enum_size(v) ? rlhf_enum_names_of_##E[i] : "?";                                                      \
  }                                                                                                                 \
  static_assert(true, "RLHF_NAMED_ENUM ends with a semicolon")

namespace rlhf {

/// An enum declared by RLHF_NAMED_ENUM.
template <class E>
concept named_enum = std::is_enum_v<E> && requires(E e) {
  { enum_size(e) } -> std::convertible_to<std::size_t>;
  { to_string(e) } -> std::convertible_to<const char*>;
};

/// Every value of a named enum, in declaration order.
template <named_enum E>
constexpr auto enum_values() noexcept {
  std::array<E, enum_size(E{})> out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<E>(i);
  return out;
}

/// The value named `text`, or nothing.
template <named_enum E>
constexpr std::optional<E> parse_enum(std::string_view text) noexcept {
  for (E e : enum_values<E>())
    if (text == to_string(e)) return e;
  return std::nullopt;
}

/// "a, b, c": the names of a named enum, for error messages.
template <named_enum E>
std::string enum_name_list() {
  std::string s;
  for (E e : enum_values<E>()) s += (s.empty() ? "" : ", ") + std::string(to_string(e));
  return s;
}

}  // namespace rlhf
