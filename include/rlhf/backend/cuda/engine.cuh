// rlhf++ — the [B, T] objective engine on the device (the contract of
// backend/engine.hpp; the CPU's is backend/cpu/objective.hpp):
//   1. row_sums + count_totals: the mask's per-row and total counts;
//   2. objective_pass, one fused pass over (rows x chunks of 2048 tokens):
//      each token's loss, gradient(s) and statistics from the rule (in
//      double, one thread per token); the aggregation weight of its row
//      (agg_row_weight, the rule the CPU uses) scales the gradient, written
//      once; block sums (CUB) of the weighted loss and the masked
//      statistics are added atomically;
//   3. one read-back of a few doubles (the value and the statistics).
// Every mode is linear in the token losses, so value = sum_b w_b sum_t m l:
// the same number the CPU computes, up to summation order.
// Inputs are not scanned for NaN/Inf (cuda_t); a non-finite value or
// statistic is an error, as on the CPU; an empty mask is reported after the
// pass (the outputs then hold zeros).
#pragma once

#include <array>

#include "../../core/check.hpp"
#include "../../math/tokens.hpp"
#include "../../ops/agg_rule.hpp"
#include "../engine.hpp"
#include "common.cuh"

namespace rlhf::cuda_kernels {

using rlhf::token_out;

template <class O, int G>
struct out_list {
  out2<O> o[G > 0 ? G : 1];
};

template <int G, int K, class F, class M, class O>
__global__ void objective_pass(F f, in2<M> mask, index_t T, agg_rule rule, const double* counts, const double* totals,
                               out_list<O, G> outs, double grad_scale, bool accumulate, double* acc) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T ? t0 + row_chunk : T;
  const double w = agg_row_weight(rule, counts[b], totals[0], totals[1]);
  sums<1 + K> s;
#pragma unroll
  for (int k = 0; k < 1 + K; ++k) s.v[k] = 0.0;
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double m = mask(b, t);
    const token_out<G, K> o = f(b, t);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (outs.o[g].null()) continue;
      const double d = m != 0 ? grad_scale * w * m * o.grad[g] : 0.0;
      outs.o[g].set(b, t, accumulate ? outs.o[g].get(b, t) + d : d);
    }
    if (m != 0) {
      s.v[0] += w * m * o.loss;
#pragma unroll
      for (int k = 0; k < K; ++k) s.v[1 + k] += m * o.stat[k];
    }
  }
  block_accumulate<1 + K>(s, acc);
}

template <int K>
using objective_sums = engine::objective_sums<K>;

/// The engine's work in flight: its device scalars and how to check them.
template <int K>
struct objective_launch {
  scratch counts, acc;
  agg_rule rule;
  agg_mode mode;
  const char* fn;
  const char* mask_name;
  bool require_tokens;

  /// Waits for the stream, reads the scalars back, raises the CPU's errors.
  objective_sums<K> finish() const {
    const auto h = acc.read();
    objective_sums<K> r;
    r.n = h[0];
    r.rows = h[1];
    r.value = h[2];
    for (int k = 0; k < K; ++k) r.stat[k] = h[static_cast<std::size_t>(3 + k)];
    if (require_tokens && !(r.n > 0)) rlhf::detail::fail(error_kind::empty, fn, mask_name, "has no valid token");
    if (!(agg_denominator(rule, r.n, r.rows) > 0))
      rlhf::detail::fail(
          error_kind::empty, fn, mask_name,
          mode == agg_mode::token_mean ? "has no valid token (token-mean)" : "has no row with a valid token");
    return r;
  }
};

/// Queues the engine on the tag's stream; `outs` are the gradient outputs
/// (null ones are skipped). An empty mask is an error where the CPU's op makes
/// it one: always when the mode needs a denominator (as ops::aggregate), and
/// for `require_tokens` ops (the losses that check for a valid token first);
/// it is raised by finish().
template <int G, int K, class F, class M, class O>
objective_launch<K> launch_objective(cuda_t tag, const char* fn, const F& f, in2<M> mask, index_t B, index_t T,
                                     const agg_params& p, const std::array<out2<O>, G>& outs, double grad_scale = 1.0,
                                     bool accumulate = false, const char* mask_name = "response_mask",
                                     bool require_tokens = true) {
  ops::detail::check_agg_params(p, fn);
  const agg_rule rule = make_agg_rule(p, T);
  objective_launch<K> l{scratch(static_cast<std::size_t>(B), tag.stream, fn),
                        scratch(3 + K, tag.stream, fn),
                        rule,
                        p.mode,
                        fn,
                        mask_name,
                        require_tokens};
  row_sums<M><<<grid_bt(B, T), block_threads, 0, tag.stream>>>(mask, T, l.counts.data());
  check_launch(fn, "row_sums");
  count_totals<><<<1, block_threads, 0, tag.stream>>>(l.counts.data(), B, l.acc.data());
  check_launch(fn, "count_totals");
  out_list<O, G> ol{};
  for (int g = 0; g < G; ++g) ol.o[g] = outs[static_cast<std::size_t>(g)];
  objective_pass<G, K, F, M, O><<<grid_bt(B, T), block_threads, 0, tag.stream>>>(
      f, mask, T, rule, l.counts.data(), l.acc.data(), ol, grad_scale, accumulate, l.acc.data() + 2);
  check_launch(fn, "objective_pass");
  return l;
}

/// Queues the engine and waits for its scalars.
template <int G, int K, class F, class M, class O>
objective_sums<K> run_objective(cuda_t tag, const char* fn, const F& f, in2<M> mask, index_t B, index_t T,
                                const agg_params& p, const std::array<out2<O>, G>& outs, double grad_scale = 1.0,
                                bool accumulate = false, const char* mask_name = "response_mask",
                                bool require_tokens = true) {
  return launch_objective<G, K>(tag, fn, f, mask, B, T, p, outs, grad_scale, accumulate, mask_name, require_tokens)
      .finish();
}

}  // namespace rlhf::cuda_kernels

namespace rlhf {
/// The device's objective engine behind engine::run (backend/engine.hpp).
/// The CPU-only options (raw maps, per-row outputs, reused counts, a
/// precheck) are refused: no entry point on the engine contract uses them.
template <>
struct objective_engine<cuda_t> {
  template <int G, int K, class F, class M, class O, class V, std::size_t C, class P>
  static engine::objective_sums<K> run(const cuda_t& tag, const char* fn, const F& f,
                                       tensor_view<M, 2, device_space> mask, const agg_params& p,
                                       const std::array<tensor_view<O, 2, device_space>, G>& outs,
                                       const engine::inputs<V, C, device_space>& in, const engine::run_options& o,
                                       const P&) {
    static_assert(!P::active, "objective_engine<cuda_t>: a precheck runs on the CPU engine only");
    if (o.raw || o.row_stats != nullptr || o.row_counts != nullptr || o.row_sums != nullptr || o.counts != nullptr)
      rlhf::detail::fail(error_kind::param, fn, "run_options",
                         "asks for a CPU-engine option (raw, row_stats, row_counts, row_sums, counts) on cuda");
    std::array<cuda_kernels::out2<O>, G> oo{};
    for (std::size_t g = 0; g < static_cast<std::size_t>(G); ++g) oo[g] = cuda_kernels::out(outs[g]);
    const auto r = cuda_kernels::run_objective<G, K>(tag, fn, f, cuda_kernels::in(mask), mask.extent(0), mask.extent(1),
                                                     p, oo, o.grad_scale, o.accumulate, o.mask_name, o.require_tokens);
    bool finite = std::isfinite(r.value);
    for (int k = 0; k < K; ++k) finite = finite && std::isfinite(r.stat[k]);
    const char* first = o.mask_name;
    if constexpr (C > 0) first = in.names[0];
    if (!finite)
      rlhf::detail::fail(error_kind::non_finite, fn, first,
                         "gives a non-finite loss or statistic (finite inputs that overflow, or a NaN / Inf input: "
                         "the device does not scan its inputs)");
    return r;
  }
};
}  // namespace rlhf
