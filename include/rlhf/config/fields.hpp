// rlhf++ — plain C++ reflection of option structs (no Boost).
//
//   RLHF_REFLECT(ns::type, field1, field2, ...)   at global scope
// lists the fields of an aggregate with their names, so one generic walk
// (config/reflect.hpp) prints, serializes and parses every option. Up to
// 64 fields per struct. Boost.Hana stays at the experiment level
// (config/experiment.hpp): the trainers need no Boost.
#pragma once

#include <tuple>
#include <type_traits>

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

}  // namespace rlhf::config

// A bounded preprocessor loop (C++20 __VA_OPT__): up to 4^4 = 256 rescans.
#define RLHF_PP_PARENS ()
#define RLHF_PP_EXPAND(...) RLHF_PP_EXPAND3(RLHF_PP_EXPAND3(RLHF_PP_EXPAND3(RLHF_PP_EXPAND3(__VA_ARGS__))))
#define RLHF_PP_EXPAND3(...) RLHF_PP_EXPAND2(RLHF_PP_EXPAND2(RLHF_PP_EXPAND2(RLHF_PP_EXPAND2(__VA_ARGS__))))
#define RLHF_PP_EXPAND2(...) RLHF_PP_EXPAND1(RLHF_PP_EXPAND1(RLHF_PP_EXPAND1(RLHF_PP_EXPAND1(__VA_ARGS__))))
#define RLHF_PP_EXPAND1(...) __VA_ARGS__
#define RLHF_PP_FOR_EACH(m, T, ...) __VA_OPT__(RLHF_PP_EXPAND(RLHF_PP_FOR_EACH_1(m, T, __VA_ARGS__)))
#define RLHF_PP_FOR_EACH_1(m, T, a, ...) m(T, a) __VA_OPT__(, RLHF_PP_FOR_EACH_AGAIN RLHF_PP_PARENS(m, T, __VA_ARGS__))
#define RLHF_PP_FOR_EACH_AGAIN() RLHF_PP_FOR_EACH_1
#define RLHF_PP_FIELD(T, f) \
  ::rlhf::config::field<T, decltype(T::f)> { #f, &T::f }

#define RLHF_REFLECT(T, ...)                                                                                  \
  template <>                                                                                                 \
  struct rlhf::config::fields<T> {                                                                            \
    static constexpr auto list() { return std::make_tuple(RLHF_PP_FOR_EACH(RLHF_PP_FIELD, T, __VA_ARGS__)); } \
  }
