// rlhf++ — plain C++ reflection of option structs (no Boost).
//
//   RLHF_REFLECT(ns::type, field1, field2, ...)   at global scope
// lists the fields of an aggregate with their names, so one generic walk
// (config/reflect.hpp) prints, serializes and parses every option. Up to
// 64 fields per struct. Boost.Hana stays at the experiment level
// (config/experiment.hpp): the trainers need no Boost.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "pp.hpp"

namespace rlhf::config {

/// One field: its name and its member pointer.
template <class S, class M>
struct field {
  const char* name;
  M S::*ptr;
};

/// Specialized by RLHF_REFLECT: static constexpr auto list() -> std::tuple<field<S, M>...>.
template <class S>
struct fields;

template <class T>
concept reflected = requires {
  fields<std::remove_cvref_t<T>>::list();
};

/// The members of S that are deliberately not options (RLHF_REFLECT_OMITS).
template <class S>
struct omitted {
  static constexpr std::size_t count = 0;
};

namespace detail {
/// Converts to any member type (only in unevaluated brace-initialization).
struct any_member {
  template <class U>
  operator U() const;
};
template <class T, std::size_t... I>
constexpr bool brace_initializable(std::index_sequence<I...>) {
  return requires { T{(void(I), any_member{})...}; };
}
}  // namespace detail

/// The number of members of an aggregate: the most initializers T{...}
/// accepts (every member must be initializable from a converted value).
template <class T, std::size_t N = 0>
constexpr std::size_t aggregate_arity() {
  static_assert(std::is_aggregate_v<T>, "rlhf::config: a reflected options type must be an aggregate");
  if constexpr (N > 64 || !detail::brace_initializable<T>(std::make_index_sequence<N + 1>{}))
    return N;
  else
    return aggregate_arity<T, N + 1>();
}

}  // namespace rlhf::config

#define RLHF_PP_FIELD(T, f) \
  ::rlhf::config::field<T, decltype(T::f)> { #f, &T::f }

// RLHF_REFLECT(T, members...) lists the options of T; a member left out of
// the list is a compile error ("the list misses a member"), unless it is
// named by RLHF_REFLECT_OMITS(T, members...) before: a member that is not an
// option (the aggregation mode of agg_params is the structure's).
#define RLHF_REFLECT(T, ...)                                                                                  \
  template <>                                                                                                 \
  struct rlhf::config::fields<T> {                                                                            \
    static constexpr auto list() { return std::make_tuple(RLHF_PP_FOR_EACH(RLHF_PP_FIELD, T, __VA_ARGS__)); } \
  };                                                                                                          \
  static_assert(                                                                                              \
      ::rlhf::config::aggregate_arity<T>() ==                                                                 \
          std::tuple_size_v<decltype(::rlhf::config::fields<T>::list())> + ::rlhf::config::omitted<T>::count, \
      "RLHF_REFLECT(" #T ", ...): the list misses a member of " #T " (add it, or name it in RLHF_REFLECT_OMITS)")

#define RLHF_PP_MEMBER(T, f) &T::f
#define RLHF_REFLECT_OMITS(T, ...)                                                                      \
  template <>                                                                                           \
  struct rlhf::config::omitted<T> {                                                                     \
    static constexpr std::size_t count =                                                                \
        std::tuple_size_v<decltype(std::make_tuple(RLHF_PP_FOR_EACH(RLHF_PP_MEMBER, T, __VA_ARGS__)))>; \
  }
