// rlhf++ — the CPU kernels of the logits path: log-probabilities, entropy
// and their gradient from [N, V] logits, a row at a time, at memory speed.
//
// Per row z (u = z / tau - m, m = max z / tau):
//   pass 1  m = max(z) / tau                           reads the row (from memory)
//   pass 2  e_k = exp(u_k); S = sum e; Su = sum e u     reads the row again (from cache);
//           e is written into the output row (cache-resident) when a gradient follows
//   stats   lse = m + log S, logp = z_label / tau - lse, H = log S - Su / S
//   grad    (g, h) = dL/dlogp, dL/dH from the caller (upstream gradients, or the
//           token objective's derivatives: "gradient in forward")
//   pass 3  dz_k = e_k (A + B u_k) + [k = label] g / tau   reads e and z from cache,
//           writes the output row; A = -(g + h (H - log S)) / (S tau), B = -h / (S tau)
// One exp per element; memory traffic = one read of the logits and one write
// of dlogits. In place (dlogits == logits) pass 2 cannot keep e, so pass 3
// recomputes it (two exps per element, zero extra memory). No softmax is
// stored; extra memory is O(1) per row.
// Rows run in parallel with OpenMP when the consumer enables it.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "simd.hpp"

#if defined(_OPENMP)
#  include <omp.h>
#endif

namespace rlhf::cpu_kernels {

using simd::vec;

template <class T>
struct logits_args {
  const T* logits = nullptr;  ///< [N, V], rows contiguous
  index_t rows = 0, V = 0, row_stride = 0;
  const void* labels = nullptr;  ///< [N] integers, or null (entropy only)
  int label_bytes = 4;           ///< 4 or 8
  index_t label_stride = 1;
  T* dlogits = nullptr;  ///< [N, V] or null (forward only); may equal logits
  index_t drow_stride = 0;
  T* logp = nullptr;  ///< [N] outputs, each optional (stride below)
  T* entropy = nullptr;
  T* lse = nullptr;
  index_t out_stride = 1;
  double inv_tau = 1.0;
  bool parallel = true;
  unsigned char* row_bad = nullptr;     ///< [N] (set by run_logits): the row's results overflow
  index_t l2_bytes = index_t{1} << 20;  ///< per-core L2 (the row and its e must fit to keep e)
};

struct row_grad {
  double g = 0, h = 0;  ///< dL/dlogp, dL/dH of the row
};

inline index_t label_at(const void* labels, int bytes, index_t stride, index_t i) {
  if (labels == nullptr) return -1;
  return bytes == 8 ? static_cast<index_t>(static_cast<const std::int64_t*>(labels)[i * stride])
                    : static_cast<index_t>(static_cast<const std::int32_t*>(labels)[i * stride]);
}

/// Blocks of a row: small enough to stay in L1 between the block's max and
/// its exp sweep, at most max_blocks per row.
inline constexpr index_t max_blocks = 512;
inline index_t block_size(index_t V, int W) {
  index_t b = 2048;
  while ((V + b - 1) / b > max_blocks) b *= 2;
  return b - b % W;
}

template <class T, int W>
RLHF_ALWAYS_INLINE T block_max(const T* z, index_t n) {
  using V_ = vec<T, W>;
  index_t k = 0;
  T m = -INFINITY;
  if (n >= 4 * W) {
    V_ m0 = simd::load<T, W>(z), m1 = m0, m2 = m0, m3 = m0;
    for (; k + 4 * W <= n; k += 4 * W) {
      m0 = simd::vmax<T, W>(m0, simd::load<T, W>(z + k));
      m1 = simd::vmax<T, W>(m1, simd::load<T, W>(z + k + W));
      m2 = simd::vmax<T, W>(m2, simd::load<T, W>(z + k + 2 * W));
      m3 = simd::vmax<T, W>(m3, simd::load<T, W>(z + k + 3 * W));
    }
    m = simd::hmax<T, W>(simd::vmax<T, W>(simd::vmax<T, W>(m0, m1), simd::vmax<T, W>(m2, m3)));
  }
  for (; k < n; ++k) m = z[k] > m ? z[k] : m;
  return m;
}

/// The shifted logits' floor: exp of anything below is exactly 0 in float
/// and double, so clamping there changes no result, and e * x stays 0
/// (never 0 * -Inf = NaN) when z / tau - m overflows to -Inf.
template <class T>
inline constexpr T shift_floor = T(-1e4);

/// e_k = exp(z_k tau^-1 - m) over one block, summed; e stored when e_out.
/// `ahead` points at the next block: its lines are prefetched while this
/// block's exps are computed, so memory and arithmetic overlap (prefetches
/// past the end of the data are harmless).
template <class T, int W, bool Unit, bool WithSu = true>
RLHF_ALWAYS_INLINE void block_exp_sums(const T* z, index_t n, T inv_tau, T m, T* e_out, double& S, double& Su,
                                       const T* ahead = nullptr) {
  using V_ = vec<T, W>;
  const V_ vt = simd::splat<T, W>(inv_tau), vm = simd::splat<T, W>(m), lo = simd::splat<T, W>(shift_floor<T>);
  V_ s0{}, s1{}, u0{}, u1{};
  index_t k = 0;
  for (; k + 2 * W <= n; k += 2 * W) {
#if defined(__GNUC__)
    if (ahead) {
      __builtin_prefetch(ahead + k, 0, 3);
      if constexpr (2 * W * sizeof(T) > 64) __builtin_prefetch(ahead + k + 64 / sizeof(T), 0, 3);
    }
#endif
    // at temperature 1 the shift is a subtraction (the add pipes), not an FMA
    const V_ x0 = simd::vmax<T, W>(Unit ? simd::load<T, W>(z + k) - vm : simd::load<T, W>(z + k) * vt - vm, lo);
    const V_ x1 = simd::vmax<T, W>(Unit ? simd::load<T, W>(z + k + W) - vm : simd::load<T, W>(z + k + W) * vt - vm, lo);
    const V_ e0 = simd::vexp<T, W, true>(x0), e1 = simd::vexp<T, W, true>(x1);
    if (e_out) {
      simd::store<T, W>(e_out + k, e0);
      simd::store<T, W>(e_out + k + W, e1);
    }
    s0 += e0;
    s1 += e1;
    if constexpr (WithSu) {
      u0 += e0 * x0;
      u1 += e1 * x1;
    }
  }
  double s = static_cast<double>(simd::hsum<T, W>(s0 + s1)), su = static_cast<double>(simd::hsum<T, W>(u0 + u1));
  for (; k < n; ++k) {
    const T x0 = z[k] * inv_tau - m;
    const T x = x0 > shift_floor<T> ? x0 : shift_floor<T>;
    const T e = simd::sexp<T, true>(x);
    if (e_out) e_out[k] = e;
    s += static_cast<double>(e);
    su += static_cast<double>(e) * static_cast<double>(x);
  }
  S = s;
  Su = su;
}

struct row_sums {
  double m, S, Su;  ///< final max (of z / tau), sum exp(u), sum exp(u) u with u = z / tau - m
};

/// One streaming pass over a row: per block, its max then its exps (the
/// block is in L1 for the second sweep), with the running sums rescaled
/// when the max grows (online log-sum-exp). The e of block b, when stored,
/// are relative to block_m[b]. Without `WithSu`, Su is 0 (the log-sum-exp alone).
template <class T, int W, bool WithSu = true>
RLHF_ALWAYS_INLINE row_sums row_online(const T* z, index_t V, T inv_tau, T* e_out, T* block_m, index_t bs) {
  double m = -INFINITY, S = 0, Su = 0;
  for (index_t b0 = 0, blk = 0; b0 < V; b0 += bs, ++blk) {
    const index_t n = V - b0 < bs ? V - b0 : bs;
    const double bm = static_cast<double>(block_max<T, W>(z + b0, n) * inv_tau);
    if (bm > m) {
      if (S > 0) {
        const double d = m - bm, c = std::exp(d);
        Su = c * (Su + d * S);
        S *= c;
      }
      m = bm;
    }
    double s, su;
    const T* ahead = z + b0 + bs;
    if (inv_tau == T(1))
      block_exp_sums<T, W, true, WithSu>(z + b0, n, inv_tau, static_cast<T>(m), e_out ? e_out + b0 : nullptr, s, su,
                                         ahead);
    else
      block_exp_sums<T, W, false, WithSu>(z + b0, n, inv_tau, static_cast<T>(m), e_out ? e_out + b0 : nullptr, s, su,
                                          ahead);
    // sums over the block are relative to static_cast<T>(m); keep them exact in double
    const double mt = static_cast<double>(static_cast<T>(m));
    const double c = std::exp(mt - m);
    S += c * s;
    Su += c * (su + (mt - m) * s);
    if (block_m) block_m[blk] = static_cast<T>(m);
  }
  return {m, S, Su};
}

/// Pass 3: out_k = c e_k (A + B u_k) with u = z / tau - m; e is read from
/// `e` (stored relative to block_m, rescaled by c = exp(block_m - m)) or
/// recomputed (in place).
template <class T, int W, bool Recompute>
RLHF_ALWAYS_INLINE void block_grad_write(const T* z, const T* e, T* out, index_t n, T inv_tau, T m, T A, T B) {
  using V_ = vec<T, W>;
  const V_ vt = simd::splat<T, W>(inv_tau), vm = simd::splat<T, W>(m), va = simd::splat<T, W>(A),
           vb = simd::splat<T, W>(B), lo = simd::splat<T, W>(shift_floor<T>);
  index_t k = 0;
  for (; k + W <= n; k += W) {
    const V_ u = simd::vmax<T, W>(simd::load<T, W>(z + k) * vt - vm, lo);
    if constexpr (Recompute) {
      simd::store<T, W>(out + k, simd::vexp<T, W, true>(u) * (va + vb * u));
    } else {
      simd::store<T, W>(out + k, simd::load<T, W>(e + k) * (va + vb * u));
    }
  }
  for (; k < n; ++k) {
    const T u0 = z[k] * inv_tau - m;
    const T u = u0 > shift_floor<T> ? u0 : shift_floor<T>;
    const T ek = Recompute ? simd::sexp<T, true>(u) : e[k];
    out[k] = ek * (A + B * u);
  }
}

/// One row (no lambda: a lambda's body would not inherit the caller's
/// target ISA).
template <class T, int W, class GradFn>
RLHF_ALWAYS_INLINE void logits_row(const logits_args<T>& a, GradFn& grad, index_t i, bool in_place) {
  const T* z = a.logits + i * a.row_stride;
  T* out = a.dlogits ? a.dlogits + i * a.drow_stride : nullptr;
  const T inv_tau = static_cast<T>(a.inv_tau);
  const index_t bs = block_size(a.V, W);
  T block_m[max_blocks];
  // Keeping e for pass 3 saves an exp per element while the row and its e
  // stay in L2 together; past that (V ~ 100k floats on a 1 MiB L2) pass 3
  // recomputes e from the row instead of re-reading both from farther away.
  const bool keep_e = out && !in_place && 2 * a.V * static_cast<index_t>(sizeof(T)) <= a.l2_bytes * 3 / 4;
  const row_sums rs = row_online<T, W>(z, a.V, inv_tau, keep_e ? out : nullptr, keep_e ? block_m : nullptr, bs);
  const double S = rs.S, logS = std::log(S);
  const double lse = rs.m + logS;
  double H = logS - rs.Su / S;
  H = H < 0 ? 0.0 : H;
  const index_t label = label_at(a.labels, a.label_bytes, a.label_stride, i);
  double logp = 0;
  if (label >= 0) {
    logp = static_cast<double>(z[label]) * a.inv_tau - lse;
    logp = logp > 0 ? 0.0 : logp;  // log p <= 0 exactly (rounding can give +1 ulp)
  }
  if (a.logp && label >= 0) a.logp[i * a.out_stride] = static_cast<T>(logp);
  if (a.entropy) a.entropy[i * a.out_stride] = static_cast<T>(H);
  if (a.lse) a.lse[i * a.out_stride] = static_cast<T>(lse);
  // finite logits whose statistics overflow (|z| / tau near the largest value)
  bool bad =
      !std::isfinite(static_cast<T>(lse)) || !std::isfinite(static_cast<T>(H)) || !std::isfinite(static_cast<T>(logp));
  if (!out) {
    if (bad) a.row_bad[i] = 1;
    return;
  }
  const row_grad rg = grad(i, logp, H);
  const bool recompute = in_place || !keep_e;
  // dz_k = e_k (A + B u_k) with u_k = z_k / tau - m, e_k = exp(u_k)
  const double A = -(rg.g + rg.h * (H - logS)) / S * a.inv_tau, B = -rg.h / S * a.inv_tau;
  bad = bad || !std::isfinite(static_cast<T>(A)) || !std::isfinite(static_cast<T>(B)) ||
        !std::isfinite(static_cast<T>(rg.g * a.inv_tau)) || !std::isfinite(static_cast<T>(A + B * shift_floor<T>));
  if (bad) a.row_bad[i] = 1;
  const T mT = static_cast<T>(rs.m);
  // u relative to the rounded max: fold the difference into A
  const double du = static_cast<double>(mT) - rs.m;  // u_exact = u_T - du
  for (index_t b0 = 0, blk = 0; b0 < a.V; b0 += bs, ++blk) {
    const index_t n = a.V - b0 < bs ? a.V - b0 : bs;
    if (recompute) {
      const double c = std::exp(-du);  // exp(u_exact) = exp(u_T) exp(-du)... with u_T = z/tau - mT
      block_grad_write<T, W, true>(z + b0, nullptr, out + b0, n, inv_tau, mT, static_cast<T>(c * (A - B * du)),
                                   static_cast<T>(c * B));
    } else {
      // e stored relative to block_m[blk]: e_exact = e * exp(block_m - m)
      const double c = std::exp(static_cast<double>(block_m[blk]) - rs.m);
      block_grad_write<T, W, false>(z + b0, out + b0, out + b0, n, inv_tau, mT, static_cast<T>(c * (A - B * du)),
                                    static_cast<T>(c * B));
    }
  }
  if (label >= 0) out[label] = static_cast<T>(static_cast<double>(out[label]) + rg.g * a.inv_tau);
}

/// Rows [r0, r1) in order.
template <class T, int W, class GradFn>
RLHF_ALWAYS_INLINE void logits_rows(const logits_args<T>& a, GradFn& grad, index_t r0, index_t r1) {
  const bool in_place =
      a.dlogits != nullptr && static_cast<const void*>(a.dlogits) == static_cast<const void*>(a.logits);
  for (index_t i = r0; i < r1; ++i) logits_row<T, W>(a, grad, i, in_place);
}

template <class T, class GradFn>
RLHF_TARGET_AVX512 void logits_rows_avx512(const logits_args<T>& a, GradFn& g, index_t r0, index_t r1) {
  logits_rows<T, 64 / static_cast<int>(sizeof(T))>(a, g, r0, r1);
}
template <class T, class GradFn>
RLHF_TARGET_AVX2 void logits_rows_avx2(const logits_args<T>& a, GradFn& g, index_t r0, index_t r1) {
  logits_rows<T, 32 / static_cast<int>(sizeof(T))>(a, g, r0, r1);
}
template <class T, class GradFn>
void logits_rows_baseline(const logits_args<T>& a, GradFn& g, index_t r0, index_t r1) {
  logits_rows<T, 16 / static_cast<int>(sizeof(T))>(a, g, r0, r1);
}

/// Runs the rows with the best ISA of this CPU, split over OpenMP threads
/// when the consumer compiles with OpenMP (the parallel region is outside
/// the ISA-specific functions, whose target does not carry into outlined
/// OpenMP bodies).
/// Returns the first row whose log-prob, entropy or gradient overflows
/// (finite logits too large for the temperature and precision), or -1.
template <class T, class GradFn>
index_t run_logits(logits_args<T> a, GradFn&& g) {
  std::vector<unsigned char> bad(static_cast<std::size_t>(a.rows), 0);
  a.row_bad = bad.data();
  auto first_bad = [&]() -> index_t {
    for (index_t i = 0; i < a.rows; ++i)
      if (bad[static_cast<std::size_t>(i)] != 0) return i;
    return -1;
  };
  auto range = [&](index_t r0, index_t r1) {
#if RLHF_X86_DISPATCH
    switch (simd::cpu_isa()) {
      case simd::isa::avx512:
        logits_rows_avx512<T>(a, g, r0, r1);
        return;
      case simd::isa::avx2:
        logits_rows_avx2<T>(a, g, r0, r1);
        return;
      case simd::isa::baseline:
        break;
    }
#endif
    logits_rows_baseline<T>(a, g, r0, r1);
  };
#if defined(_OPENMP)
  const bool par = a.parallel && a.rows > 1 && a.rows * a.V >= (index_t{1} << 16) && !omp_in_parallel();
  if (par) {
#  pragma omp parallel
    {
      const index_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const index_t r0 = a.rows * t / nt, r1 = a.rows * (t + 1) / nt;
      range(r0, r1);
    }
    return first_bad();
  }
#endif
  range(0, a.rows);
  return first_bad();
}

}  // namespace rlhf::cpu_kernels
