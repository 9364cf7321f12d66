// rlhf++ — the CPU's [B, T] objective engine.
//
// A per-token rule (math/tokens.hpp: f.operator()<R>(b, t) -> token_out<G,
// K, R>) over the inputs, an aggregation mode, and G gradient outputs:
//   1. the mask's per-row counts (one read of the mask);
//   2. one pass over the rows (split over OpenMP threads): the rule runs on
//      W tokens of a row at a time (R = W lanes of double in SIMD registers,
//      W = 8 with AVX-512, 4 with AVX2, 2 otherwise, chosen at run time;
//      the row's last T mod W tokens one at a time), each token's loss,
//      gradients and statistics; each gradient written once, already scaled
//      by its row's aggregation weight (agg_row_weight, the rule every
//      backend uses); the row's loss and statistics summed in double into
//      per-row partials (one per lane, then added in lane order);
//   3. the value from the per-row sums (ops::detail::agg_numerator and
//      agg_value, the same arithmetic as ops::aggregate) and the statistics
//      summed over rows in row order (over ranks: cpu_engine::run_on).
// No [B, T] temporary. The order of every sum depends only on T and the
// ISA, so the result is bitwise the same for any thread count, and a row's
// gradients depend only on the row and the batch's counts.
#pragma once

#include <array>
#include <cmath>
#include <vector>

#include "../../core/args.hpp"
#include "../../core/backend.hpp"
#include "../../core/check.hpp"
#include "../../dist/collective.hpp"
#include "../../math/tokens.hpp"
#include "../../ops/agg_rule.hpp"
#include "../engine.hpp"
#include "loops.hpp"
#include "simd.hpp"

#if defined(_OPENMP)
#  include <omp.h>
#endif

namespace rlhf::cpu_engine {

// the engine contract's types (backend/engine.hpp)
using engine::inputs;
using engine::objective_sums;
using engine::run_options;

namespace detail {

using engine::no_precheck;

/// f(r0, r1) over [0, n) split in contiguous ranges, one per OpenMP thread
/// when `heavy` (and OpenMP is on, and not already inside a parallel region).
template <class F>
void parallel_ranges(index_t n, bool heavy, F&& f) {
#if defined(_OPENMP)
  if (heavy && n > 1 && !omp_in_parallel()) {
#  pragma omp parallel
    {
      const index_t nt = omp_get_num_threads(), id = omp_get_thread_num();
      f(n * id / nt, n * (id + 1) / nt);
    }
    return;
  }
#endif
  (void)heavy;
  f(index_t{0}, n);
}

/// Runs body.template rows<W>(r0, r1) with the widest ISA this CPU has.
/// body.rows is always inlined, so it is compiled for the caller's target.
template <class Body>
RLHF_TARGET_AVX512 void rows_avx512(const Body& body, index_t r0, index_t r1) {
  body.template rows<8>(r0, r1);
}
template <class Body>
RLHF_TARGET_AVX2 void rows_avx2(const Body& body, index_t r0, index_t r1) {
  body.template rows<4>(r0, r1);
}
template <class Body>
void rows_baseline(const Body& body, index_t r0, index_t r1) {
  body.template rows<2>(r0, r1);
}
template <class Body>
void run_rows(const Body& body, index_t B, bool heavy) {
  parallel_ranges(B, heavy, [&](index_t r0, index_t r1) {
#if RLHF_X86_DISPATCH
    switch (simd::cpu_isa()) {
      case simd::isa::avx512:
        rows_avx512(body, r0, r1);
        return;
      case simd::isa::avx2:
        rows_avx2(body, r0, r1);
        return;
      case simd::isa::baseline:
        break;
    }
#endif
    rows_baseline(body, r0, r1);
  });
}

template <class T, int W>
RLHF_ALWAYS_INLINE double lane_sum(const simd::vec<T, W>& body, const simd::vec<T, 1>& tail) {
  return simd::hsum<T, W>(body) + tail[0];
}

// RLHF_HOST_ROWS: the rules are __host__ __device__ (the CUDA engine runs
// them), and nvcc rejects vector types in anything it compiles for the
// device. This engine is host code, so in nvcc's device pass (__CUDA_ARCH__
// defined) the row loops are empty and no rule meets a vector type there;
// the host pass compiles them in full, so a .cu unit gets the same CPU code.

/// The element type of the rule's lanes: float for float data (the
/// arithmetic torch does on float tensors), else double.
template <class T>
using lane_elem_t = std::conditional_t<std::is_same_v<T, float>, float, double>;

/// Pass 1: the mask's per-row sums, and whether the row holds a non-finite
/// value in the mask or (when checked) in one of the `nin` inputs.
template <class M, class V, std::size_t C, class P>
struct count_body {
  /// float lanes for float data (the rule's lanes, so a precheck sees what
  /// the pass will compute) unless the mask is double (its sums stay exact)
  using E = std::conditional_t<std::is_same_v<V, float> && !std::is_same_v<M, double>, float, double>;
  strided2<M> mask;
  std::array<strided2<V>, C> in;
  std::size_t nin;
  const P& pre;
  index_t T;
  bool vector;  ///< every row is contiguous: W lanes at a time
  double* count;
  unsigned char* bad;

  template <class L, class A>
  RLHF_ALWAYS_INLINE void token(index_t b, index_t t, A& c, math::mask_of<math::real_t<L>>& nf) const {
    using R = math::real_t<L>;
    using S = math::scalar_of<R>;
    const R m = mask.template get<L>(b, t);
    simd::add_wide<static_cast<int>(sizeof(A) / sizeof(double)), S, static_cast<int>(sizeof(R) / sizeof(S))>(c, m);
    nf = nf | ((m - m) != S(0));  // x - x is 0 for finite x, NaN otherwise
    for (std::size_t i = 0; i < nin; ++i) {
      const R x = in[i].template get<L>(b, t);
      nf = nf | ((x - x) != S(0));
    }
    if constexpr (P::active) nf = nf | pre.template bad<L>(b, t);
  }
  template <int W>
  RLHF_ALWAYS_INLINE void rows(index_t r0, index_t r1) const {
#if defined(__CUDA_ARCH__)
    (void)r0, (void)r1;  // see RLHF_HOST_ROWS
#else
    constexpr int LW = std::is_same_v<E, float> ? 2 * W : W;
    using L = simd::lanes<E, LW>;
    using L1 = simd::lanes<E, 1>;
    for (index_t b = r0; b < r1; ++b) {
      simd::vec<double, W> c{};
      simd::vec<double, 1> c1{};
      math::mask_of<math::real_t<L>> nf{};
      math::mask_of<math::real_t<L1>> nf1{};
      index_t t = 0;
      if (vector)
        for (; t + LW <= T; t += LW) token<L>(b, t, c, nf);
      for (; t < T; ++t) token<L1>(b, t, c1, nf1);
      count[b] = lane_sum<double, W>(c, c1);
      bool any = nf1[0] != 0;
      for (int i = 0; i < LW; ++i) any = any || nf[i] != 0;
      bad[b] = any ? 1 : 0;
    }
#endif
  }
};

/// The first token of row b that `pre` flags (lanes of width 1, the same
/// formulas as the pass), or -1.
template <class E, class P>
index_t first_flagged(const P& pre, index_t b, index_t T) {
#if defined(__CUDA_ARCH__)
  (void)pre, (void)b, (void)T;  // see RLHF_HOST_ROWS
#else
  for (index_t t = 0; t < T; ++t)
    if (pre.template bad<simd::lanes<E, 1>>(b, t)[0] != 0) return t;
#endif
  return -1;
}

/// Pass 2: the rule over every token, gradients written, partials summed.
template <int G, int K, class F, class M, class O>
struct token_body {
  const F& f;
  strided2<M> mask;
  index_t T;
  bool vector;  ///< every row is contiguous: W lanes at a time
  std::array<O*, G> out;
  std::array<index_t, G> os0, os1;
  agg_rule rule;
  double n, nrows, grad_scale;
  bool accumulate, raw;
  const double* count;
  double* sum;
  double* stat;
  unsigned char* grad_bad;  ///< [B]: the row wrote a non-finite gradient

  /// The outputs' pointers and strides, a local copy per row range.
  struct outs_t {
    std::array<O*, G> p;
    std::array<index_t, G> s0, s1;
  };

  template <class L, class A>
  RLHF_ALWAYS_INLINE static void token(const F& f, const strided2<M>& mask, const outs_t& out, bool accumulate,
                                       bool raw, index_t b, index_t t, double cw, A& s, A* st,
                                       math::mask_of<math::real_t<L>>& nf) {
    using R = math::real_t<L>;
    using S = math::scalar_of<R>;
    constexpr int LW = static_cast<int>(sizeof(R) / sizeof(S));
    constexpr int AW = static_cast<int>(sizeof(A) / sizeof(double));
    const R m = mask.template get<L>(b, t);
    const auto on = m != S(0);
    const token_out<G, K, R> o = f.template operator()<L>(b, t);
    for (std::size_t g = 0; g < static_cast<std::size_t>(G); ++g) {
      if (out.p[g] == nullptr) continue;
      O* p = out.p[g] + b * out.s0[g] + (LW > 1 ? t : t * out.s1[g]);  // rows of unit stride when LW > 1
      R d = raw ? o.grad[g] : math::sel(on, (static_cast<S>(cw) * m) * o.grad[g], R{});
      if (accumulate) d = math::lane_traits<L>::load(p) + d;
      simd::store_as<O, S, LW>(p, d);
      nf = nf | ((d - d) != S(0));  // an overflowing gradient (x - x is NaN for +-Inf and NaN)
    }
    if constexpr (std::is_same_v<A, R>) {  // a float chunk's own sums
      s += math::sel(on, m * o.loss, R{});
      for (int k = 0; k < K; ++k) st[k] += math::sel(on, m * o.stat[k], R{});
    } else {
      simd::add_wide<AW, S, LW>(s, math::sel(on, m * o.loss, R{}));
      for (int k = 0; k < K; ++k) simd::add_wide<AW, S, LW>(st[k], math::sel(on, m * o.stat[k], R{}));
    }
  }

  template <int W>
  RLHF_ALWAYS_INLINE void rows(index_t r0, index_t r1) const {
#if defined(__CUDA_ARCH__)
    (void)r0, (void)r1;  // see RLHF_HOST_ROWS
#else
    // the rule's lanes: W doubles, or 2W floats for float data (one vector
    // register either way); the sums in W doubles
    using E = lane_elem_t<O>;
    constexpr int LW = std::is_same_v<E, float> ? 2 * W : W;
    using L = simd::lanes<E, LW>;
    using L1 = simd::lanes<E, 1>;
    using A = simd::vec<double, W>;
    using A1 = simd::vec<double, 1>;
    constexpr int KK = K > 0 ? K : 1;
    // local copies: the compiler keeps them in registers across the stores
    const F fl = f;
    const strided2<M> mk = mask;
    const outs_t ol{out, os0, os1};
    const bool acc = accumulate, rw = raw;
    for (index_t b = r0; b < r1; ++b) {
      const double cw = grad_scale * agg_row_weight(rule, count[b], n, nrows);
      A s{};
      A1 s1{};
      A st[KK] = {};
      A1 st1[KK] = {};
      math::mask_of<math::real_t<L>> nf{};
      math::mask_of<math::real_t<L1>> nf1{};
      index_t t = 0;
      if (vector) {
        if constexpr (std::is_same_v<E, float>) {
          // float lanes sum `chunk` vectors of tokens in float, then add
          // that partial into the double sums: 1/chunk of the conversions
          // (the sums' order still depends only on T)
          using RF = math::real_t<L>;
          constexpr index_t chunk = 8;
          while (t + LW <= T) {
            RF cs{};
            RF cst[KK] = {};
            const index_t t_end = t + chunk * LW <= T ? t + chunk * LW : T - (T - t) % LW;
            for (; t < t_end; t += LW) token<L>(fl, mk, ol, acc, rw, b, t, cw, cs, cst, nf);
            simd::add_wide<W, E, LW>(s, cs);
            for (int k = 0; k < K; ++k) simd::add_wide<W, E, LW>(st[k], cst[k]);
          }
        } else {
          for (; t + LW <= T; t += LW) token<L>(fl, mk, ol, acc, rw, b, t, cw, s, st, nf);
        }
      }
      for (; t < T; ++t) token<L1>(fl, mk, ol, acc, rw, b, t, cw, s1, st1, nf1);
      bool any = nf1[0] != 0;
      for (int i = 0; i < LW; ++i) any = any || nf[i] != 0;
      grad_bad[b] = any ? 1 : 0;
      sum[b] = lane_sum<double, W>(s, s1);
      for (int k = 0; k < K; ++k) stat[b * K + k] = lane_sum<double, W>(st[k], st1[k]);
    }
#endif
  }
};

}  // namespace detail

namespace detail {
/// Unit stride along T (or nothing to stride over): the vector path's condition.
template <class V>
bool unit_rows(const V& v) {
  return v.null() || v.extent(1) <= 1 || v.stride(1) == 1;
}
}  // namespace detail

/// The mask's pass alone: each row's mask sum into `count`, the NaN / Inf
/// scan of the mask and (when checked) of `in`, and `pre`'s refusals, each
/// error raised as the op's own checks raise it (first argument first).
/// `vector`: W lanes at a time (every view has unit stride along T; the
/// inputs' strides are checked here). Returns the sum of the mask.
template <class M, class V, std::size_t C, class P = detail::no_precheck>
double mask_pass(const char* fn, tensor_view<M, 2> mask, const inputs<V, C>& in, const char* mask_name,
                 std::vector<double>& count, bool vector = true, const P& pre = {}) {
  const index_t B = mask.extent(0), T = mask.extent(1);
  const bool heavy = B * T >= (index_t{1} << 15);
  count.assign(static_cast<std::size_t>(B), 0.0);
  std::vector<unsigned char> bad(static_cast<std::size_t>(B), 0);
  using MV = std::remove_const_t<value_t<M>>;
  vector = vector && detail::unit_rows(mask);
  detail::count_body<MV, V, C, P> cb{strided(mask), {}, 0, pre, T, vector, count.data(), bad.data()};
  for (const auto& v : in.views) cb.vector = cb.vector && detail::unit_rows(v);
  if (in.check)
    for (std::size_t i = 0; i < in.views.size(); ++i)
      if (!in.views[i].null()) cb.in[cb.nin++] = strided(in.views[i]);
  detail::run_rows(cb, B, heavy);
  double n = 0;
  for (index_t b = 0; b < B; ++b) {
    n += count[static_cast<std::size_t>(b)];
    if (bad[static_cast<std::size_t>(b)] == 0) continue;
    // a non-finite value: the op's own checks, in argument order, name it
    if (in.check)
      for (std::size_t i = 0; i < in.views.size(); ++i)
        if (!in.views[i].null()) rlhf::detail::require_finite(fn, in.names[i], in.views[i]);
    rlhf::detail::require_mask(fn, mask_name, mask);
    if constexpr (P::active) {
      const index_t t = detail::first_flagged<typename decltype(cb)::E>(pre, b, T);
      if (t >= 0) pre.fail(b, t);
    }
  }
  return n;
}

/// The mask's pass ahead of an op's own pre-pass (the row sums some ops
/// need before the rule): every scan and error once, then `in` is marked
/// checked so run() does not scan the inputs again. Returns the mask's sum.
template <class M, class V, std::size_t C>
double check_ahead(const char* fn, tensor_view<M, 2> mask, inputs<V, C>& in, const char* mask_name) {
  std::vector<double> count;
  const double n = mask_pass(fn, mask, in, mask_name, count);
  in.check = false;
  return n;
}

/// The sum of a mask (vectorized, rows in parallel); a NaN / Inf in it is
/// an error naming `mask_name`.
template <class M>
double mask_sum(const char* fn, tensor_view<M, 2> mask, const char* mask_name = "mask") {
  std::vector<double> count;
  return mask_pass(fn, mask, inputs<float, 0>{false, {}, {}}, mask_name, count);
}

namespace detail {
/// Whether the mode's row weights need a count the batch cannot give
/// alone under a communicator (and `p` does not give).
inline bool needs_global_counts(const agg_params& p) {
  switch (p.mode) {
    case agg_mode::token_sum:
      return false;
    case agg_mode::token_mean:
      return !p.batch_num_tokens;
    case agg_mode::seq_mean_token_sum_norm:
      return !p.global_batch_size || !p.loss_scale_factor;
    default:
      return !p.global_batch_size;
  }
}
}  // namespace detail

/// Runs rule `f` over a [B, T] batch held by the ranks of `comm` (each
/// rank its rows; dist::single: one process). The mask's pass, then, when
/// a gradient is written and its row weights need the global counts (not
/// given in `p`), one collective of [status, tokens, rows, T]; the rule's
/// pass; one collective of [status, counts, the value's numerator, the
/// statistics, an overflow flag]; the value and statistics from the
/// global sums, the same bits on every rank. The gradients are scaled by
/// `grad_factor` (the tag's: size(), or 1) on top of the mode's weights.
/// Under dist::single each collective is the identity and this is the
/// single-process pass. A rank's own error is raised on every rank; it is
/// raised before this rank writes anything, but after the other ranks
/// wrote their outputs when no collective precedes the rule's pass.
template <int G, int K, class Comm, class F, class M, class O, class V, std::size_t C, class P = detail::no_precheck>
objective_sums<K> run_on(const Comm& comm, double grad_factor, const char* fn, const F& f, tensor_view<M, 2> mask,
                         const agg_params& p, const std::array<tensor_view<O, 2>, G>& outs, const inputs<V, C>& in,
                         const run_options& o = {}, const P& pre = {}) {
  constexpr bool local = dist::is_single_v<Comm>;
  static_assert(5 + K <= static_cast<int>(dist::frame_payload), "cpu_engine::run: too many statistics for a frame");
  const index_t B = mask.extent(0), T = mask.extent(1);
  const bool heavy = B * T >= (index_t{1} << 15);
  std::vector<double> count, sum(static_cast<std::size_t>(B), 0.0);
  std::vector<double> stat(static_cast<std::size_t>(B) * (K > 0 ? K : 1), 0.0);
  using MV = std::remove_const_t<value_t<M>>;
  const strided2<MV> macc = strided(mask);
  // the vector path needs every row contiguous: the mask, every input the
  // rule reads (`in` lists them all) and every output
  bool vector = detail::unit_rows(mask);
  for (const auto& v : in.views) vector = vector && detail::unit_rows(v);
  bool any_out = false;
  for (const auto& out : outs) {
    vector = vector && detail::unit_rows(out);
    any_out = any_out || !out.null();
  }
  // 1. this rank's checks and counts
  dist::failure mine;
  double n = 0, rows = 0;
  dist::local_phase(comm, mine, [&] {
    ops::detail::check_agg_params(p, fn);
    if constexpr (!local)
      rlhf::detail::require_param(p.dp_size == 1, fn, "dp_size",
                                  "must be 1 under a communicator (its ranks are the data-parallel group)");
    if (o.counts != nullptr)
      count.assign(o.counts, o.counts + B);
    else
      mask_pass(fn, mask, in, o.mask_name, count, vector, pre);
    for (index_t b = 0; b < B; ++b) {
      n += count[static_cast<std::size_t>(b)];
      rows += count[static_cast<std::size_t>(b)] > 0 ? 1.0 : 0.0;
    }
  });
  // 2. the global counts the row weights need, first when gradients are written
  double width = static_cast<double>(T);  // seq-mean-token-sum-norm's default divisor: the longest T
  bool counted = local;
  if (!local && any_out && detail::needs_global_counts(p)) {
    const double part[3] = {n, rows, width};
    const dist::frames g = dist::exchange(comm, mine, part);
    n = g.sum(0);
    rows = g.sum(1);
    width = g.max(2);
    counted = true;
  }
  agg_rule rule = make_agg_rule(p, T);
  if (p.mode == agg_mode::seq_mean_token_sum_norm && !p.loss_scale_factor) rule.norm = width;
  auto check_counts = [&] {
    if (o.require_tokens && !(n > 0)) rlhf::detail::fail(error_kind::empty, fn, o.mask_name, "has no valid token");
    if (!(agg_denominator(rule, n, rows) > 0)) ops::detail::fail_no_denominator(p, fn, o.mask_name);
  };
  if (counted) check_counts();  // the same counts on every rank: every rank raises it
  // 3. the rule's pass (skipped by a rank that failed: it only reports)
  using OV = std::remove_const_t<value_t<O>>;
  std::vector<unsigned char> grad_bad(static_cast<std::size_t>(B), 0);
  if (!mine.failed) {
    detail::token_body<G, K, F, MV, OV> body{f,
                                             macc,
                                             T,
                                             vector,
                                             {},
                                             {},
                                             {},
                                             rule,
                                             n,
                                             rows,
                                             o.grad_scale * grad_factor,
                                             o.accumulate,
                                             o.raw,
                                             count.data(),
                                             sum.data(),
                                             stat.data(),
                                             grad_bad.data()};
    for (int g = 0; g < G; ++g) {
      const auto& out = outs[static_cast<std::size_t>(g)];
      const auto gi = static_cast<std::size_t>(g);
      body.out[gi] = out.null() ? nullptr : out.data();
      body.os0[gi] = out.null() ? 0 : out.stride(0);
      body.os1[gi] = out.null() ? 0 : out.stride(1);
    }
    detail::run_rows(body, B, heavy);
  }
  // 4. the value's numerator and the statistics, summed over the ranks
  double part[5 + (K > 0 ? K : 1)] = {};
  if (!mine.failed) {
    part[0] = n;
    part[1] = rows;
    part[2] = width;
    part[3] = ops::detail::agg_numerator(sum, count, rule);
    for (auto gb : grad_bad) part[4] = gb != 0 ? 1.0 : part[4];
    for (index_t b = 0; b < B; ++b)
      for (int k = 0; k < K; ++k) part[5 + k] += stat[static_cast<std::size_t>(b) * K + static_cast<std::size_t>(k)];
  }
  const dist::frames g = dist::exchange(comm, mine, std::span<const double>(part, 5 + K));
  if (!counted) {
    n = g.sum(0);
    rows = g.sum(1);
    if (p.mode == agg_mode::seq_mean_token_sum_norm && !p.loss_scale_factor) rule.norm = g.max(2);
    check_counts();
  }
  objective_sums<K> r;
  r.n = n;
  r.rows = rows;
  r.value = ops::detail::agg_value(rule, g.sum(3), n, rows);
  for (int k = 0; k < K; ++k) r.stat[k] = g.sum(static_cast<std::size_t>(5 + k));
  // finite inputs whose loss, statistics or gradients overflow: an error, never a NaN / Inf returned
  bool finite = std::isfinite(r.value) && g.max(4) == 0;
  for (int k = 0; k < K; ++k) finite = finite && std::isfinite(r.stat[k]);
  // (also unchecked: the scan of the inputs is skipped, the result is still checked)
  const char* first = o.mask_name;
  if constexpr (C > 0) first = in.names[0];
  if (!finite)
    rlhf::detail::fail(error_kind::non_finite, fn, first,
                       "gives a non-finite loss, statistic or gradient (finite inputs that overflow the working "
                       "precision, or a NaN / Inf input under an unchecked tag)");
  if (o.row_stats != nullptr)
    for (std::size_t i = 0; i < static_cast<std::size_t>(B) * K; ++i) o.row_stats[i] = stat[i];
  if (o.row_counts != nullptr)
    for (std::size_t i = 0; i < static_cast<std::size_t>(B); ++i) o.row_counts[i] = count[i];
  if (o.row_sums != nullptr)
    for (std::size_t i = 0; i < static_cast<std::size_t>(B); ++i) o.row_sums[i] = sum[i];
  return r;
}

/// Runs rule `f` over a [B, T] batch in one process (run_on with
/// dist::single). `pre` (optional) flags tokens the op refuses whatever the
/// mask (`template <class L> mask_of<real_t<L>> bad(b, t)`, run in the
/// mask's pass) and raises the op's error for the first one (`fail(b, t)`,
/// before anything is written). `outs` are the gradient outputs (null ones
/// are skipped), each overwritten (or added to, `accumulate`) with
/// grad_scale * mask * row weight * the rule's gradient; masked tokens get 0.
/// Every error (a non-finite input or mask, reported as the op's own checks
/// report it, first argument first; an empty mask: always when the mode
/// needs a denominator, and for `require_tokens` rules) is raised before
/// anything is written.
template <int G, int K, class F, class M, class O, class V, std::size_t C, class P = detail::no_precheck>
objective_sums<K> run(const char* fn, const F& f, tensor_view<M, 2> mask, const agg_params& p,
                      const std::array<tensor_view<O, 2>, G>& outs, const inputs<V, C>& in, const run_options& o = {},
                      const P& pre = {}) {
  return run_on<G, K>(dist::single, 1.0, fn, f, mask, p, outs, in, o, pre);
}

/// An elementwise map of rule `f` over [B, T] (no mask): each output g is
/// the rule's grad[g] at every position; the inputs' NaN / Inf scan and
/// `pre` run first, so every error is raised before anything is written.
/// `in` must hold at least one view (the map's shape: its first).
template <int G, class F, class O, class V, std::size_t C, class P = detail::no_precheck>
void map(const char* fn, const F& f, const std::array<tensor_view<O, 2>, G>& outs, const inputs<V, C>& in,
         const P& pre = {}) {
  static_assert(C > 0, "cpu_engine::map: the inputs give the shape");
  run_options o{};
  o.raw = true;
  o.require_tokens = false;
  o.mask_name = in.names[0];
  // the first input stands in for the mask: its values only enter the
  // (discarded) masked sums, and its scan is the inputs' own
  run<G, 0>(fn, f, in.views[0], agg_params::token_sum(), outs, in, o, pre);
}

}  // namespace rlhf::cpu_engine

namespace rlhf {
/// The CPU's objective engine behind engine::run (backend/engine.hpp).
template <>
struct objective_engine<cpu_t> {
  template <int G, int K, class F, class M, class O, class V, std::size_t C, class P>
  static engine::objective_sums<K> run(const cpu_t&, const char* fn, const F& f, tensor_view<M, 2> mask,
                                       const agg_params& p, const std::array<tensor_view<O, 2>, G>& outs,
                                       const engine::inputs<V, C>& in, const engine::run_options& o, const P& pre) {
    return cpu_engine::run<G, K>(fn, f, mask, p, outs, in, o, pre);
  }
};

/// The CPU's engine over the ranks of a communicator: the same pass, its
/// counts and sums made global (cpu_engine::run_on).
template <class C>
struct objective_engine<on_ranks<cpu_t, C>> {
  template <int G, int K, class F, class M, class O, class V, std::size_t N, class P>
  static engine::objective_sums<K> run(const on_ranks<cpu_t, C>& tag, const char* fn, const F& f,
                                       tensor_view<M, 2> mask, const agg_params& p,
                                       const std::array<tensor_view<O, 2>, G>& outs, const engine::inputs<V, N>& in,
                                       const engine::run_options& o, const P& pre) {
    return cpu_engine::run_on<G, K>(*tag.comm, tag.gradient_factor(), fn, f, mask, p, outs, in, o, pre);
  }
};
}  // namespace rlhf
