// rlhf++ — the generalized JSD's CPU kernel (distill::generalized_jsd's
// path for contiguous float / double rows without element outputs).
//
// Per row pair (student z, teacher y, V logits each), three sweeps; the
// first reads the rows from memory, the others find them in L2:
//   1. both log-sum-exps of z / tau and y / tau (online, blocked: the
//      logits kernels' row_online), each exp kept in a scratch row;
//   2. per element s = z / tau - ls, t = y / tau - lt, p_s, p_t (the kept
//      exps times their block's factor), m = log((1 - beta) p_s + beta p_t),
//      jsd and G = dL/ds / c (beta = 0: -p_t; 1: p_s (s - t + 1); else
//      (1 - beta) p_s (s - m)), summed; p_s and G kept;
//   3. dL/dz = c (G - p_s sum G) / tau, written once.
// The lanes are T (float data in float, as torch computes float tensors);
// the sums in double per block. Rows run on OpenMP threads; no softmax is
// stored. A row whose sums or gradient overflow is flagged (row_bad).
#pragma once

#include <cmath>
#include <vector>

#include "../../core/tensor_view.hpp"
#include "logits_kernels.hpp"
#include "simd.hpp"

#if defined(_OPENMP)
#  include <omp.h>
#endif

namespace rlhf::cpu_kernels {

template <class T>
struct jsd_args {
  const T* z = nullptr;  ///< student logits, rows of V (row stride zs)
  const T* y = nullptr;  ///< teacher logits (row stride ys)
  T* dz = nullptr;       ///< dL/dz (row stride ds) or null
  index_t rows = 0, V = 0, zs = 0, ys = 0, ds = 0;
  double inv_tau = 1, beta = 0.5, c = 1;
  const unsigned char* keep = nullptr;  ///< [rows]: 0 = an ignored position (gradient 0)
  double* row_sum = nullptr;            ///< [rows]: sum of the row's jsd (before c)
  unsigned char* row_bad = nullptr;     ///< [rows]
  bool parallel = true;
};

/// jsd and G of W elements from s, t and their probabilities (the formulas
/// of distill::detail::element; m as the log of the mixture, its argument
/// kept at or above the smallest normal number: where both probabilities
/// are below it their terms are 0 to within that number).
template <class T, int W>
RLHF_ALWAYS_INLINE void jsd_elements(const simd::vec<T, W>& s, const simd::vec<T, W>& t, const simd::vec<T, W>& ps,
                                     const simd::vec<T, W>& pt, int mode, T beta, T l1mb, simd::vec<T, W>& j,
                                     simd::vec<T, W>& g) {
  using V_ = simd::vec<T, W>;
  if (mode == 0) {
    j = pt * (t - s);
    g = -pt;
  } else if (mode == 1) {
    j = ps * (s - t);
    g = ps * (s - t + simd::splat<T, W>(T(1)));
  } else {
    const V_ q = simd::splat<T, W>(l1mb) * ps + simd::splat<T, W>(beta) * pt;
    const V_ m = simd::vlog<T, W>(simd::vmax<T, W>(q, simd::splat<T, W>(std::numeric_limits<T>::min())));
    const V_ gs = simd::splat<T, W>(l1mb) * ps * (s - m);
    j = simd::splat<T, W>(beta) * pt * (t - m) + gs;
    g = gs;
  }
}

/// One row pair. `es`, `et`: scratch rows of V (the thread's): sweep 1
/// leaves exp(z / tau - block max) and exp(y / tau - block max) there, sweep
/// 2 turns them into p_s and G, sweep 3 writes A G - B p_s: two exps per
/// element in all (sweep 1's), one log for 0 < beta < 1.
template <class T, int W>
RLHF_ALWAYS_INLINE void jsd_row(const jsd_args<T>& a, index_t i, T* es, T* et) {
#if defined(__CUDA_ARCH__)
  (void)a, (void)i, (void)es, (void)et;  // host code: nvcc's device pass sees no vector type (RLHF_HOST_ROWS)
#else
  using V_ = simd::vec<T, W>;
  const index_t V = a.V;
  const T* z = a.z + i * a.zs;
  const T* y = a.y + i * a.ys;
  T* out = a.dz ? a.dz + i * a.ds : nullptr;
  if (a.keep && a.keep[i] == 0) {
    if (out)
      for (index_t v = 0; v < V; ++v) out[v] = T(0);
    a.row_sum[i] = 0;
    return;
  }
  const T inv_tau = static_cast<T>(a.inv_tau);
  const index_t bs = block_size(V, W);
  T bm_z[max_blocks], bm_y[max_blocks];
  const row_sums rz = row_online<T, W, false>(z, V, inv_tau, es, bm_z, bs);
  const row_sums ry = row_online<T, W, false>(y, V, inv_tau, et, bm_y, bs);
  const double ls = rz.m + std::log(rz.S), lt = ry.m + std::log(ry.S);
  const int mode = a.beta == 0 ? 0 : (a.beta == 1 ? 1 : 2);
  const T beta = static_cast<T>(a.beta), l1mb = static_cast<T>(1.0 - a.beta);
  const V_ vt = simd::splat<T, W>(inv_tau), vls = simd::splat<T, W>(static_cast<T>(ls)),
           vlt = simd::splat<T, W>(static_cast<T>(lt));
  double sj = 0, sg = 0;
  for (index_t b0 = 0, blk = 0; b0 < V; b0 += bs, ++blk) {
    const index_t n = V - b0 < bs ? V - b0 : bs, end = b0 + n - n % W;
    // p = e exp(block max - lse): the block's factor
    const T cz = static_cast<T>(std::exp(static_cast<double>(bm_z[blk]) - ls)),
            cy = static_cast<T>(std::exp(static_cast<double>(bm_y[blk]) - lt));
    const V_ vcz = simd::splat<T, W>(cz), vcy = simd::splat<T, W>(cy);
    V_ aj{}, ag{};
    index_t v = b0;
    for (; v < end; v += W) {
      const V_ s = simd::load<T, W>(z + v) * vt - vls, t = simd::load<T, W>(y + v) * vt - vlt;
      const V_ ps = simd::load<T, W>(es + v) * vcz, pt = simd::load<T, W>(et + v) * vcy;
      V_ j, g;
      jsd_elements<T, W>(s, t, ps, pt, mode, beta, l1mb, j, g);
      aj += j;
      ag += g;
      simd::store<T, W>(es + v, ps);
      simd::store<T, W>(et + v, g);
    }
    double bj = static_cast<double>(simd::hsum<T, W>(aj)), bg = static_cast<double>(simd::hsum<T, W>(ag));
    for (; v < b0 + n; ++v) {
      using V1 = simd::vec<T, 1>;
      const V1 s = V1{z[v] * inv_tau - static_cast<T>(ls)}, t = V1{y[v] * inv_tau - static_cast<T>(lt)};
      const V1 ps = V1{es[v] * cz}, pt = V1{et[v] * cy};
      V1 j, g;
      jsd_elements<T, 1>(s, t, ps, pt, mode, beta, l1mb, j, g);
      bj += static_cast<double>(j[0]);
      bg += static_cast<double>(g[0]);
      es[v] = ps[0];
      et[v] = g[0];
    }
    sj += bj;
    sg += bg;
  }
  a.row_sum[i] = sj;
  bool bad = !std::isfinite(sj) || !std::isfinite(sg) || !std::isfinite(static_cast<T>(a.c * sj));
  if (out) {
    // dL/dz = c (G - p_s sum G) / tau = A G - B p_s
    const T A = static_cast<T>(a.c * a.inv_tau), B = static_cast<T>(a.c * sg * a.inv_tau);
    bad = bad || !std::isfinite(B);
    const V_ va = simd::splat<T, W>(A), vb = simd::splat<T, W>(B);
    index_t v = 0;
    for (; v + W <= V; v += W)
      simd::store<T, W>(out + v, va * simd::load<T, W>(et + v) - vb * simd::load<T, W>(es + v));
    for (; v < V; ++v) out[v] = A * et[v] - B * es[v];
  }
  if (bad) a.row_bad[i] = 1;
#endif
}

template <class T, int W>
RLHF_ALWAYS_INLINE void jsd_rows(const jsd_args<T>& a, index_t r0, index_t r1) {
  std::vector<T> scratch(static_cast<std::size_t>(2 * a.V));  // this thread's two rows
  for (index_t i = r0; i < r1; ++i) jsd_row<T, W>(a, i, scratch.data(), scratch.data() + a.V);
}
template <class T>
RLHF_TARGET_AVX512 void jsd_rows_avx512(const jsd_args<T>& a, index_t r0, index_t r1) {
  jsd_rows<T, 64 / static_cast<int>(sizeof(T))>(a, r0, r1);
}
template <class T>
RLHF_TARGET_AVX2 void jsd_rows_avx2(const jsd_args<T>& a, index_t r0, index_t r1) {
  jsd_rows<T, 32 / static_cast<int>(sizeof(T))>(a, r0, r1);
}
template <class T>
void jsd_rows_baseline(const jsd_args<T>& a, index_t r0, index_t r1) {
  jsd_rows<T, 16 / static_cast<int>(sizeof(T))>(a, r0, r1);
}

/// Runs the rows with the best ISA of this CPU (OpenMP threads over rows).
/// Returns the first row whose sums or gradient overflow, or -1.
template <class T>
index_t run_jsd(jsd_args<T> a) {
  std::vector<unsigned char> bad(static_cast<std::size_t>(a.rows), 0);
  a.row_bad = bad.data();
  auto range = [&](index_t r0, index_t r1) {
#if RLHF_X86_DISPATCH
    switch (simd::cpu_isa()) {
      case simd::isa::avx512:
        jsd_rows_avx512<T>(a, r0, r1);
        return;
      case simd::isa::avx2:
        jsd_rows_avx2<T>(a, r0, r1);
        return;
      case simd::isa::baseline:
        break;
    }
#endif
    jsd_rows_baseline<T>(a, r0, r1);
  };
#if defined(_OPENMP)
  if (a.parallel && a.rows > 1 && a.rows * a.V >= (index_t{1} << 15) && !omp_in_parallel()) {
#  pragma omp parallel
    {
      const index_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      range(a.rows * t / nt, a.rows * (t + 1) / nt);
    }
  } else {
    range(0, a.rows);
  }
#else
  range(0, a.rows);
#endif
  for (index_t i = 0; i < a.rows; ++i)
    if (bad[static_cast<std::size_t>(i)] != 0) return i;
  return -1;
}

}  // namespace rlhf::cpu_kernels
