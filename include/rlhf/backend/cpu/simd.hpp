// rlhf++ — portable SIMD for the CPU kernels, without forcing flags on users.
//
// Kernels are written once with GCC/Clang vector extensions
// (vec<T, W>: W lanes of T) and instantiated inside functions compiled for
// a target ISA with __attribute__((target(...))): AVX-512, AVX2+FMA, and the
// baseline (SSE2 on x86-64, whatever the consumer compiles for elsewhere).
// The ISA is chosen once at run time (cpu_isa()), so a consumer compiling
// with plain -O2 gets AVX-512 code on an AVX-512 machine; no -march=native
// or -ffast-math is needed or imposed.
//
// vexp() is a Cody-Waite reduced polynomial exp (float: degree 5, 3.3e-7
// relative; double: degree 11, ~1e-14 relative), branch-free, so the
// compiler keeps it in vector registers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../../core/config.hpp"
#include "../../math/real.hpp"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define RLHF_X86_DISPATCH 1
// fp-contract=fast lets the kernels use FMA whatever the consumer's -std
// (ISO modes turn contraction off); it changes rounding only, never results
// beyond an ulp, and applies to these functions alone.
#  if defined(__clang__)
#    define RLHF_KERNEL_OPT
#  else
#    define RLHF_KERNEL_OPT , optimize("fp-contract=fast")
#  endif
#  define RLHF_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma,avx2") RLHF_KERNEL_OPT))
#  define RLHF_TARGET_AVX2 __attribute__((target("avx2,fma") RLHF_KERNEL_OPT))
#else
#  define RLHF_X86_DISPATCH 0
#  define RLHF_TARGET_AVX512
#  define RLHF_TARGET_AVX2
#endif

#if defined(__GNUC__)
#  define RLHF_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#  define RLHF_ALWAYS_INLINE inline
#endif

namespace rlhf::simd {

enum class isa { baseline = 0, avx2 = 1, avx512 = 2 };

/// The best ISA this CPU runs (detected once).
inline isa cpu_isa() {
#if RLHF_X86_DISPATCH
  static const isa level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      return isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return isa::avx2;
    return isa::baseline;
  }();
  return level;
#else
  return isa::baseline;
#endif
}

template <class T, int W>
struct vec_traits;
template <int W>
struct vec_traits<float, W> {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
  typedef std::int32_t itype __attribute__((vector_size(W * sizeof(std::int32_t))));
};
template <int W>
struct vec_traits<double, W> {
  typedef double type __attribute__((vector_size(W * sizeof(double))));
  typedef std::int64_t itype __attribute__((vector_size(W * sizeof(std::int64_t))));
};
template <class T, int W>
using vec = typename vec_traits<T, W>::type;
template <class T, int W>
using ivec = typename vec_traits<T, W>::itype;

template <class T, int W>
RLHF_ALWAYS_INLINE vec<T, W> splat(T x) {
  return x - vec<T, W>{};  // broadcast
}

template <class T, int W>
RLHF_ALWAYS_INLINE vec<T, W> load(const T* p) {
  vec<T, W> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T, int W>
RLHF_ALWAYS_INLINE void store(T* p, const vec<T, W>& v) {
  std::memcpy(p, &v, sizeof v);
}

template <class T, int W>
RLHF_ALWAYS_INLINE vec<T, W> vmax(const vec<T, W>& a, const vec<T, W>& b) {
  return a > b ? a : b;
}

template <class T, int W>
RLHF_ALWAYS_INLINE T hsum(const vec<T, W>& v) {
  T s = 0;
  for (int i = 0; i < W; ++i) s += v[i];
  return s;
}

template <class T, int W>
RLHF_ALWAYS_INLINE T hmax(const vec<T, W>& v) {
  T m = v[0];
  for (int i = 1; i < W; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

/// exp(x), element-wise; results below the smallest normal number are
/// exactly 0 (a masked vocabulary entry contributes nothing), no NaN for
/// finite x. Also instantiated with W = 1 for scalar tails, so a row's
/// every element goes through the same formula.
template <class T, int W, bool NonPositive = false>
RLHF_ALWAYS_INLINE vec<T, W> vexp(const vec<T, W>& x_in) {
  using V = vec<T, W>;
  using I = ivec<T, W>;
  V x = x_in;
  // clamps written as max/min patterns (one vmaxps/vminps each); the upper
  // one is skipped when the caller guarantees x <= 0 (shifted logits)
  if constexpr (sizeof(T) == 4) {
    x = x > splat<T, W>(-88.7f) ? x : splat<T, W>(-88.7f);
    if constexpr (!NonPositive) x = x < splat<T, W>(88.3f) ? x : splat<T, W>(88.3f);
    const V magic = splat<T, W>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    const V t = x * splat<T, W>(1.44269504088896341f) + magic;
    const V n = t - magic;
    // one-step reduction: float(ln2) is off by 1.9e-9, so r errs by at most
    // 2.4e-7 at the bottom of the range (n = -126), where exp(x) ~ 1e-38
    const V r = x - n * splat<T, W>(0.693147180559945309f);
    // degree-5 fit of exp on |r| <= ln2/2, max relative error 3.3e-7
    V p = splat<T, W>(0.008398224896629879f);
    p = p * r + splat<T, W>(0.04188243237705982f);
    p = p * r + splat<T, W>(0.16666323139687975f);
    p = p * r + splat<T, W>(0.4999927619315729f);
    p = p * r + splat<T, W>(1.0f);
    p = p * r + splat<T, W>(1.0f);
    I ti;
    std::memcpy(&ti, &t, sizeof ti);
    I mi;
    std::memcpy(&mi, &magic, sizeof mi);
    I ni = ti - mi;
    ni = ni > -127 ? ni : -127 + I{};  // below 2^-126: the scale is exactly 0
    const I bits = (ni + 127) << 23;   // 2^n
    V scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
  } else {
    x = x > splat<T, W>(-745.2) ? x : splat<T, W>(-745.2);
    if constexpr (!NonPositive) x = x < splat<T, W>(709.0) ? x : splat<T, W>(709.0);
    const V magic = splat<T, W>(6755399441055744.0);  // 1.5 * 2^52
    const V t = x * splat<T, W>(1.4426950408889634) + magic;
    const V n = t - magic;
    V r = x - n * splat<T, W>(0.693145751953125);
    r = r - n * splat<T, W>(1.4286068203094172321e-6);
    // Taylor to degree 11 on |r| <= ln2/2: truncation up to 6e-15 relative (the
    // logits kernels sum these; vexp_full, below, goes to degree 13)
    V p = splat<T, W>(1.0 / 39916800.0);
    p = p * r + splat<T, W>(1.0 / 3628800.0);
    p = p * r + splat<T, W>(1.0 / 362880.0);
    p = p * r + splat<T, W>(1.0 / 40320.0);
    p = p * r + splat<T, W>(1.0 / 5040.0);
    p = p * r + splat<T, W>(1.0 / 720.0);
    p = p * r + splat<T, W>(1.0 / 120.0);
    p = p * r + splat<T, W>(1.0 / 24.0);
    p = p * r + splat<T, W>(1.0 / 6.0);
    p = p * r + splat<T, W>(0.5);
    p = p * r + splat<T, W>(1.0);
    p = p * r + splat<T, W>(1.0);
    I ti;
    std::memcpy(&ti, &t, sizeof ti);
    I mi;
    std::memcpy(&mi, &magic, sizeof mi);
    I ni = ti - mi;
    ni = ni > -1023 ? ni : -1023 + I{};  // below 2^-1022: the scale is exactly 0
    const I bits = (ni + 1023) << 52;
    V scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
  }
}

/// Scalar exp through the same formula.
template <class T, bool NonPositive = false>
RLHF_ALWAYS_INLINE T sexp(T x) {
  vec<T, 1> v{};  // (not vec<T, 1>{x}: nvcc's front end rejects that form)
  v[0] = x;
  return vexp<T, 1, NonPositive>(v)[0];
}

/// exp(x) over the whole range, as the per-token rules need it: +inf above
/// the overflow threshold, gradual underflow below the normal range, NaN
/// kept (vexp above clamps, for the logits kernels' shifted inputs). The
/// scale 2^n is applied in two halves so n may pass the exponent's range.
/// double: Cody-Waite reduction in two steps, Taylor to degree 13 (within
/// 4 ulp); float: the same to degree 7 (within 3 ulp). Both by Estrin's scheme:
/// a rule waits for one exp per token, so the chain's depth is what counts.
template <class T, int W>
RLHF_ALWAYS_INLINE vec<T, W> vexp_full(const vec<T, W>& x_in) {
  using V = vec<T, W>;
  using I = ivec<T, W>;
  constexpr bool dbl = sizeof(T) == 8;
  const V lo_x = splat<T, W>(dbl ? T(-746.0) : T(-104.0)), hi_x = splat<T, W>(dbl ? T(710.0) : T(89.0));
  V x = x_in > lo_x ? x_in : lo_x;
  x = x < hi_x ? x : hi_x;
  const V magic = splat<T, W>(dbl ? T(6755399441055744.0) : T(12582912.0));  // 1.5 * 2^52, 1.5 * 2^23
  const V t = x * splat<T, W>(T(1.4426950408889634)) + magic;
  const V n = t - magic;
  V r = x - n * splat<T, W>(dbl ? T(0.693145751953125) : T(0.693359375));
  r = r - n * splat<T, W>(dbl ? T(1.4286068203094172321e-6) : T(-2.12194440e-4));
  const V r2 = r * r, r4 = r2 * r2;
  const V a0 = splat<T, W>(T(1)) + r;
  const V a1 = splat<T, W>(T(0.5)) + r * splat<T, W>(T(1.0 / 6.0));
  const V a2 = splat<T, W>(T(1.0 / 24.0)) + r * splat<T, W>(T(1.0 / 120.0));
  const V a3 = splat<T, W>(T(1.0 / 720.0)) + r * splat<T, W>(T(1.0 / 5040.0));
  V p = (a0 + r2 * a1) + r4 * (a2 + r2 * a3);
  if constexpr (dbl) {
    const V r8 = r4 * r4;
    const V a4 = splat<T, W>(T(1.0 / 40320.0)) + r * splat<T, W>(T(1.0 / 362880.0));
    const V a5 = splat<T, W>(T(1.0 / 3628800.0)) + r * splat<T, W>(T(1.0 / 39916800.0));
    const V a6 = splat<T, W>(T(1.0 / 479001600.0)) + r * splat<T, W>(T(1.0 / 6227020800.0));
    p = p + r8 * ((a4 + r2 * a5) + r4 * a6);
  }
  I ti;
  std::memcpy(&ti, &t, sizeof ti);
  I mi;
  std::memcpy(&mi, &magic, sizeof mi);
  const I ni = ti - mi;
  const I h = ni >> 1;
  constexpr int bias = dbl ? 1023 : 127, mant = dbl ? 52 : 23;
  const I b1 = (h + bias) << mant, b2 = (ni - h + bias) << mant;
  V s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  const V e = (p * s1) * s2;
  return x_in != x_in ? x_in : e;
}

/// log(x) for normal x > 0, element-wise: x = 2^e f with f in [sqrt(1/2),
/// sqrt(2)), log x = e ln 2 + 2 atanh(r), r = (f - 1) / (f + 1) (|r| <=
/// 0.1716), the odd series of atanh to r^21 (double); float: log(1 + x)
/// for x = f - 1 by a degree-8 polynomial (Cephes' logf coefficients), no
/// division. Within 4 ulp (measured: 3.4 double). Zero, subnormals, Inf and NaN are the caller's to keep out (clamp
/// to the smallest normal first). Also instantiated with W = 1.
template <class T, int W>
RLHF_ALWAYS_INLINE vec<T, W> vlog(const vec<T, W>& x) {
  using V = vec<T, W>;
  using I = ivec<T, W>;
  constexpr bool dbl = sizeof(T) == 8;
  constexpr int mant = dbl ? 52 : 23, bias = dbl ? 1023 : 127;
  I bits;
  std::memcpy(&bits, &x, sizeof bits);
  using S = std::remove_reference_t<decltype(bits[0])>;
  const I mant_mask = I{} + ((S(1) << mant) - 1);
  const I one_bits = I{} + (S(bias) << mant);
  I e = (bits >> mant) - S(bias);
  const I fb = (bits & mant_mask) | one_bits;
  V f;
  std::memcpy(&f, &fb, sizeof f);  // f in [1, 2)
  const auto big = f > splat<T, W>(T(1.4142135623730951));
  f = big ? f * splat<T, W>(T(0.5)) : f;
  e = e + (big ? I{} + S(1) : I{});  // a true lane compares as -1: add 1 where f was halved
  V ev{};
  for (int i = 0; i < W; ++i) ev[i] = static_cast<T>(e[i]);
  if constexpr (dbl) {
    const V r = (f - splat<T, W>(T(1))) / (f + splat<T, W>(T(1)));
    const V r2 = r * r;
    V q;
    const V r4 = r2 * r2, r8 = r4 * r4;
    const V b0 = splat<T, W>(T(1)) + r2 * splat<T, W>(T(1.0 / 3)),
            b1 = splat<T, W>(T(1.0 / 5)) + r2 * splat<T, W>(T(1.0 / 7));
    const V b2 = splat<T, W>(T(1.0 / 9)) + r2 * splat<T, W>(T(1.0 / 11)),
            b3 = splat<T, W>(T(1.0 / 13)) + r2 * splat<T, W>(T(1.0 / 15));
    const V b4 = splat<T, W>(T(1.0 / 17)) + r2 * splat<T, W>(T(1.0 / 19)), b5 = splat<T, W>(T(1.0 / 21));
    q = (b0 + r4 * b1) + r8 * (b2 + r4 * b3) + (r8 * r8) * (b4 + r4 * b5);
    return ev * splat<T, W>(T(0.6931471805599453)) + splat<T, W>(T(2)) * r * q;
  } else {
    // float: no division; log(1 + x) = x - x^2 / 2 + x^3 P(x), x = f - 1 in
    // [-0.293, 0.414], P the degree-8 minimax polynomial of Cephes' logf
    const V x1 = f - splat<T, W>(T(1));
    const V z = x1 * x1, z2 = z * z;
    const V p0 = splat<T, W>(T(3.3333331174E-1)) + x1 * splat<T, W>(T(-2.4999993993E-1));
    const V p1 = splat<T, W>(T(2.0000714765E-1)) + x1 * splat<T, W>(T(-1.6668057665E-1));
    const V p2 = splat<T, W>(T(1.4249322787E-1)) + x1 * splat<T, W>(T(-1.2420140846E-1));
    const V p3 = splat<T, W>(T(1.1676998740E-1)) + x1 * splat<T, W>(T(-1.1514610310E-1));
    const V pp = (p0 + z * p1) + z2 * (p2 + z * p3) + (z2 * z2) * splat<T, W>(T(7.0376836292E-2));
    const V l = x1 * z * pp - splat<T, W>(T(0.5)) * z + x1;
    return ev * splat<T, W>(T(0.6931471805599453)) + l;
  }
}

/// The per-token rules' operations on W lanes of T (math/real.hpp).
template <class T, int W>
struct lanes_ops {
  using scalar = T;
  using V = vec<T, W>;
  static RLHF_ALWAYS_INLINE V exp(const V& x) { return vexp_full<T, W>(x); }
  static RLHF_ALWAYS_INLINE V log(const V& x) {
    V r{};
    for (int i = 0; i < W; ++i) r[i] = std::log(x[i]);
    return r;
  }
};

/// A lane type (math/real.hpp): W contiguous elements of a row, read as a
/// vector of E (float data as float, anything else as E by conversion).
template <class E, int W>
struct lanes {};

template <class E, int W, class U>
RLHF_ALWAYS_INLINE vec<E, W> load_as(const U* p) {
  if constexpr (std::is_same_v<U, E>) {
    return simd::load<E, W>(p);
  } else if constexpr (std::is_same_v<U, float> && std::is_same_v<E, double>) {
    return __builtin_convertvector(simd::load<float, W>(p), vec<E, W>);
  } else {
    vec<E, W> v{};
    for (int i = 0; i < W; ++i) v[i] = static_cast<E>(p[i]);
    return v;
  }
}

/// The lanes of v stored as U at p[0], p[1], ...
template <class U, class T, int W>
RLHF_ALWAYS_INLINE void store_as(U* p, const vec<T, W>& v) {
  if constexpr (std::is_same_v<U, T>) {
    simd::store<T, W>(p, v);
  } else if constexpr (std::is_same_v<U, float> && std::is_same_v<T, double>) {
    simd::store<float, W>(p, __builtin_convertvector(v, vec<float, W>));
  } else {
    for (int i = 0; i < W; ++i) p[i] = static_cast<U>(v[i]);
  }
}

/// Lanes Off .. Off + W - 1 of x (W <= 8): a shuffle, register to register
/// (a memcpy of each half went through the stack). nvcc's front end has no
/// __builtin_shufflevector: there the copy.
template <int W, int Off, class T, class V>
RLHF_ALWAYS_INLINE vec<T, W> half(const V& x) {
#if defined(__CUDACC__)
  vec<T, W> h;
  std::memcpy(&h, reinterpret_cast<const char*>(&x) + Off * sizeof(T), sizeof h);
  return h;
#else
  static_assert(W == 1 || W == 2 || W == 4 || W == 8);
  if constexpr (W == 1) {
    return vec<T, 1>{x[Off]};
  } else if constexpr (W == 2) {
    return __builtin_shufflevector(x, x, Off, Off + 1);
  } else if constexpr (W == 4) {
    return __builtin_shufflevector(x, x, Off, Off + 1, Off + 2, Off + 3);
  } else {
    return __builtin_shufflevector(x, x, Off, Off + 1, Off + 2, Off + 3, Off + 4, Off + 5, Off + 6, Off + 7);
  }
#endif
}

/// acc += x, in double: x's lanes folded onto acc's (a float vector of 2W
/// lanes adds its halves, low then high).
template <int W, class T, int X>
RLHF_ALWAYS_INLINE void add_wide(vec<double, W>& acc, const vec<T, X>& x) {
  if constexpr (std::is_same_v<T, double>) {
    static_assert(X == W);
    acc += x;
  } else {
    static_assert(X == 2 * W || (W == 1 && X == 1));
    if constexpr (X == W) {
      acc += __builtin_convertvector(x, vec<double, W>);
    } else {
      acc += __builtin_convertvector((half<W, 0, T>(x)), vec<double, W>);
      acc += __builtin_convertvector((half<W, W, T>(x)), vec<double, W>);
    }
  }
}

}  // namespace rlhf::simd

namespace rlhf::math {
template <class E, int W>
struct lane_traits<simd::lanes<E, W>> {
  using real = simd::vec<E, W>;
  template <class T>
  static RLHF_ALWAYS_INLINE real load(const T* p) {
    return simd::load_as<E, W>(p);
  }
};
template <>
struct real_ops<simd::vec<double, 1>> : simd::lanes_ops<double, 1> {};
template <>
struct real_ops<simd::vec<double, 2>> : simd::lanes_ops<double, 2> {};
template <>
struct real_ops<simd::vec<double, 4>> : simd::lanes_ops<double, 4> {};
template <>
struct real_ops<simd::vec<double, 8>> : simd::lanes_ops<double, 8> {};
template <>
struct real_ops<simd::vec<float, 1>> : simd::lanes_ops<float, 1> {};
template <>
struct real_ops<simd::vec<float, 4>> : simd::lanes_ops<float, 4> {};
template <>
struct real_ops<simd::vec<float, 8>> : simd::lanes_ops<float, 8> {};
template <>
struct real_ops<simd::vec<float, 16>> : simd::lanes_ops<float, 16> {};
}  // namespace rlhf::math
