// rlhf++ — a bounded preprocessor loop (C++20 __VA_OPT__), for the lists
// written once and expanded twice: reflected fields (config/fields.hpp) and
// named enums (core/named_enum.hpp).
//
//   RLHF_PP_FOR_EACH(m, T, a, b, c)  ->  m(T, a), m(T, b), m(T, c)
//
// Up to 4^4 = 256 rescans (enough for 64 items).
#pragma once

#define RLHF_PP_PARENS ()
#define RLHF_PP_EXPAND(...) RLHF_PP_EXPAND3(RLHF_PP_EXPAND3(RLHF_PP_EXPAND3(RLHF_PP_EXPAND3(__VA_ARGS__))))
#define RLHF_PP_EXPAND3(...) RLHF_PP_EXPAND2(RLHF_PP_EXPAND2(RLHF_PP_EXPAND2(RLHF_PP_EXPAND2(__VA_ARGS__))))
#define RLHF_PP_EXPAND2(...) RLHF_PP_EXPAND1(RLHF_PP_EXPAND1(RLHF_PP_EXPAND1(RLHF_PP_EXPAND1(__VA_ARGS__))))
#define RLHF_PP_EXPAND1(...) __VA_ARGS__
#define RLHF_PP_FOR_EACH(m, T, ...) __VA_OPT__(RLHF_PP_EXPAND(RLHF_PP_FOR_EACH_1(m, T, __VA_ARGS__)))
#define RLHF_PP_FOR_EACH_1(m, T, a, ...) m(T, a) __VA_OPT__(, RLHF_PP_FOR_EACH_AGAIN RLHF_PP_PARENS(m, T, __VA_ARGS__))
#define RLHF_PP_FOR_EACH_AGAIN() RLHF_PP_FOR_EACH_1
