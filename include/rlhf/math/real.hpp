// rlhf++ — the number type of the per-token rules.
//
// A rule is written once over a "real" R: `double` on CUDA (one thread, one
// token) and in scalar code; on the CPU engine a vector of lanes (W tokens
// of a row at a time, in SIMD registers): doubles for double data, floats
// for float data (the arithmetic torch does on float tensors; the engine
// still sums in double). The rules use only what
// both have: + - * /, comparisons (a bool, or a lane mask), `sel(c, a, b)`
// (c ? a : b, lane-wise), `lit<R>(x)` (a constant in every lane) and the
// functions of real_ops<R> (exp, and loads from memory). real_ops<double> is
// here; backend/cpu/simd.hpp specializes it for its vector types, so math/
// includes nothing above core/.
#pragma once

#include <cmath>
#include <utility>

#include "../core/config.hpp"

#if defined(__CUDACC__)
#  define RLHF_HD_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#  define RLHF_HD_INLINE inline __attribute__((always_inline))
#else
#  define RLHF_HD_INLINE inline
#endif

// The rules over vectors and the helpers of backend/cpu/simd.hpp are always
// inlined into ISA-specific functions, so the vector-ABI note GCC emits for
// their signatures (-Wpsabi) does not apply.
// GCC instantiates templates at the end of a translation unit, after any
// push/pop, so the note is silenced for the rest of the unit: it only ever
// concerns calls between functions compiled for different vector ISAs.
#if defined(__clang__)
#  pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#  pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace rlhf::math {

/// The operations of a real type (specialized per type).
template <class R>
struct real_ops;

template <>
struct real_ops<double> {
  using scalar = double;
  static RLHF_HD_INLINE double exp(double x) { return std::exp(x); }
  static RLHF_HD_INLINE double log(double x) { return std::log(x); }
};

/// How a rule reads its inputs: a lane type L names the real R it computes
/// with and how R is loaded from memory. `double`: one element (CUDA, and
/// scalar code); backend/cpu/simd.hpp adds simd::lanes<E, W>, W contiguous
/// elements of a row as a vector of E. A rule is a template on L and starts
/// with `using R = math::real_t<L>;`.
template <class L>
struct lane_traits {
  using real = L;
  template <class T>
  static RLHF_HD_INLINE L load(const T* p) {
    return static_cast<L>(*p);
  }
};
template <class L>
using real_t = typename lane_traits<L>::real;

/// The type of one lane of R (double, or float for float lanes). Parameters
/// enter a rule as scalar_of<R>(x): in a float rule, a constant is rounded
/// to float as torch rounds a Python scalar against a float tensor.
template <class R>
using scalar_of = typename real_ops<R>::scalar;

/// What a comparison of two R gives: bool, or a lane mask.
template <class R>
using mask_of = decltype(std::declval<R>() < std::declval<R>());

/// c ? a : b, per lane.
template <class R, class C>
RLHF_HD_INLINE R sel(const C& c, const R& a, const R& b) {
  return c ? a : b;
}

/// x in every lane (x - 0 keeps the sign of a zero).
template <class R>
RLHF_HD_INLINE R lit(double x) {
  return static_cast<scalar_of<R>>(x) - R{};
}

template <class R>
RLHF_HD_INLINE R rexp(const R& x) {
  return real_ops<R>::exp(x);
}
template <class R>
RLHF_HD_INLINE R rlog(const R& x) {
  return real_ops<R>::log(x);
}
template <class R>
RLHF_HD_INLINE R rabs(const R& x) {
  return sel(x < R{}, -x, x);
}
/// 1 where c holds, else 0.
template <class R, class C>
RLHF_HD_INLINE R indicator(const C& c) {
  return sel(c, lit<R>(1.0), R{});
}

}  // namespace rlhf::math
