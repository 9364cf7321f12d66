// rlhf++ — the [B, T] objective engine's contract, the same for every
// backend: an objective's entry point is written once, over any tag.
//
// An entry point checks its arguments, builds its per-token rule over
// strided2 accessors (math/tokens.hpp: the same type reads host and device
// memory) and calls engine::run<G, K>(tag, ...). The tag picks the engine:
// objective_engine<cpu_t> (backend/cpu/objective.hpp: SIMD lanes, OpenMP
// rows) or objective_engine<cuda_t> (backend/cuda/engine.cuh: one fused
// kernel). Both return the same objective_sums, from which the entry point
// computes its result (a `detail::*_from` function), so an objective needs
// no CUDA file of its own (docs/design.md, "Adding a [B, T] objective").
#pragma once

#include <array>
#include <cstddef>

#include "../core/backend.hpp"
#include "../core/tensor_view.hpp"
#include "../dist/collective.hpp"
#include "../ops/agg_rule.hpp"

namespace rlhf::engine {

/// What a pass returns: the aggregated loss, the K statistics (masked sums),
/// the mask's sum and the number of rows with a valid token.
template <int K>
struct objective_sums {
  double value = 0;  ///< the aggregated loss
  double stat[K > 0 ? K : 1] = {};
  double n = 0;     ///< valid tokens (sum of the mask)
  double rows = 0;  ///< rows with a valid token
};

/// The inputs a rule reads, by name: every one (the CPU engine takes W lanes
/// at a time only when all of them have unit stride along T), scanned for
/// NaN / Inf in the mask's pass when `check` (the tag's check_finite; the
/// CUDA engine does not scan); null views are skipped. The first name is
/// the argument an overflowing result is reported against.
template <class V, std::size_t C, class S = host_space>
struct inputs {
  bool check;
  std::array<const char*, C> names;
  std::array<tensor_view<const V, 2, S>, C> views;
};
template <class V, std::size_t C, class S>
inputs(bool, const char* const (&)[C], const tensor_view<const V, 2, S> (&)[C]) -> inputs<V, C, S>;

/// How a pass scales and writes the gradients and names its mask.
struct run_options {
  double grad_scale = 1.0;
  bool accumulate = false;  ///< add to the outputs instead of overwriting them
  const char* mask_name = "response_mask";
  bool require_tokens = true;  ///< an all-zero mask is an error even where the mode has a denominator
  /// The outputs are the rule's values themselves at every position, masked
  /// or not, neither weighted nor scaled: an elementwise map (IS weights,
  /// rewards) whose statistics are still masked sums. (CPU engine only.)
  bool raw = false;
  double* row_stats = nullptr;   ///< [B, K] (optional, CPU): each row's statistics
  double* row_counts = nullptr;  ///< [B] (optional, CPU): each row's mask sum
  double* row_sums = nullptr;    ///< [B] (optional, CPU): each row's masked loss sum (unweighted)
  /// [B] (optional, CPU): the row sums of this mask from an earlier pass of
  /// the same op (row_counts), whose scans and checks stand: the mask's pass
  /// is skipped (one read of the mask and of the listed inputs fewer).
  const double* counts = nullptr;
};

/// No check beyond the inputs' and the mask's.
struct no_precheck {
  static constexpr bool active = false;
};

/// Stands at the top of every entry point, before its checks: under a
/// communicator (tag.with(comm)) an error of this rank's that escapes
/// before the op's first collective is sent in it, so every rank throws it
/// (dist/collective.hpp); for any other tag it is nothing.
template <class Tag>
struct op_scope {
  explicit constexpr op_scope(const Tag&) noexcept {}
};
template <class B, class C>
requires(!dist::is_single_v<C>) struct op_scope<on_ranks<B, C>> : dist::op_scope<C> {
  explicit op_scope(const on_ranks<B, C>& t) : dist::op_scope<C>(*t.comm) {}
};
template <class Tag>
op_scope(const Tag&) -> op_scope<Tag>;

/// The communicator of a tag: its own under tag.with(comm), else dist::single.
template <class Tag>
constexpr const dist::single_t& comm_of(const Tag&) noexcept {
  return dist::single;
}
template <class B, class C>
constexpr const C& comm_of(const on_ranks<B, C>& t) noexcept {
  return *t.comm;
}

/// The factor of a tag's gradient outputs (docs/distributed.md): size()
/// under tag.with(comm) (1 with summed_gradients()), else 1.
template <class Tag>
double gradient_factor(const Tag& tag) noexcept {
  if constexpr (is_distributed_v<Tag>)
    return tag.gradient_factor();
  else
    return 1.0;
}

}  // namespace rlhf::engine

namespace rlhf {

/// The engine of backend tag Tag: a static `run<G, K>(tag, fn, f, mask, agg,
/// outs, in, options, pre)` returning engine::objective_sums<K>.
/// Specialized by each backend (cpu_t in backend/cpu/objective.hpp, cuda_t
/// in backend/cuda/engine.cuh); a class template so that the device's
/// specialization is found wherever an entry point is instantiated.
template <class Tag>
struct objective_engine;

}  // namespace rlhf

namespace rlhf::engine {

/// Runs rule `f` over a [B, T] batch on the tag's engine. `outs` are the
/// gradient outputs (null ones are skipped), each written with grad_scale *
/// mask * row weight * the rule's gradient (masked tokens get 0). `pre`
/// (optional, CPU) flags tokens the op refuses before anything is written.
template <int G, int K, class Tag, class F, class M, class O, class V, std::size_t C, class P = no_precheck>
objective_sums<K> run(const Tag& tag, const char* fn, const F& f, tensor_view<M, 2, typename Tag::space> mask,
                      const agg_params& p, const std::array<tensor_view<O, 2, typename Tag::space>, G>& outs,
                      const inputs<V, C, typename Tag::space>& in, const run_options& o = {}, const P& pre = {}) {
  return objective_engine<Tag>::template run<G, K>(tag, fn, f, mask, p, outs, in, o, pre);
}

}  // namespace rlhf::engine
