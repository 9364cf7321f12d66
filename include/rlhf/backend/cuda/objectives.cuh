// rlhf++ — the [B, T] objectives on the device: PPO policy loss, value
// loss, entropy bonus, KL in the loss, A2C.
//
// Every objective is a per-token functor built from the same math/
// functions the CPU uses (RLHF_HD), run by one engine:
//   1. row_sums + count_totals: the mask's per-row and total counts;
//   2. objective_pass, one fused pass over (rows x chunks of 2048 tokens):
//      each token's loss, gradient(s) and statistics from the functor; the
//      aggregation weight of its row (agg_row_weight, the rule the CPU uses)
//      scales the gradient, written once; block sums (CUB) of the weighted
//      loss and the masked statistics are added atomically;
//   3. one read-back of a few doubles (the value and the statistics).
// Every mode is linear in the token losses, so value = sum_b w_b sum_t m l:
// the same number the CPU computes, up to summation order.
// Inputs are not scanned for NaN/Inf (cuda_t); the parameter checks are
// the CPU's; an empty mask is reported after the pass (the outputs then hold
// zeros).
#pragma once

#include "../../objectives/a2c.hpp"
#include "../../objectives/ppo.hpp"
#include "common.cuh"
#include "masked.cuh"

#include <functional>
#include <memory>

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
struct objective_sums {
  double value = 0;  ///< the aggregated loss (before any outer scale)
  double stat[K > 0 ? K : 1] = {};
  double n = 0;     ///< valid tokens
  double rows = 0;  ///< rows with a valid token
};

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

// ---- per-token functors ----------------------------------------------------

template <class T>
using ppo_policy_token = ppo::rules::policy_token<in2<T>>;

template <class T>
using value_token = ppo::rules::value_token<in2<T>>;
template <class T>
using identity_token = ppo::rules::identity_token<in2<T>>;

template <class T>
using kl_token_fn = kl::rules::loss_token<in2<T>>;

template <class T>
using a2c_token = a2c::rules::token<in2<T>>;

}  // namespace rlhf::cuda_kernels

namespace rlhf::a2c {

/// a2c::loss on device views (the same contract as the CPU's).
template <class T, class M>
result loss(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> values, in_dview<T, 2> advantages,
            in_dview<T, 2> returns, in_dview<T, 2> entropy, tensor_view<M, 2, device_space> mask, const params& p,
            out_dview<T, 2> dlogp = {}, out_dview<T, 2> dvalues = {}, out_dview<T, 2> dentropy = {}) {
  constexpr const char* fn = "a2c::loss (cuda)";
  detail::check_shapes(fn, logp, values, advantages, returns, entropy, mask, dlogp, dvalues, dentropy);
  detail::check_params(p, fn);
  namespace ck = cuda_kernels;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  ck::scratch norm(4, tag.stream, fn);
  if (p.normalize_advantage)
    ck::launch_moments(tag, fn, ck::in(advantages), ck::in(mask), B, T_, 0.0, true, norm.data());
  const ck::a2c_token<value_t<T>> f{ck::in(logp),
                                    ck::in(values),
                                    ck::in(advantages),
                                    ck::in(returns),
                                    ck::in(entropy),
                                    p,
                                    p.normalize_advantage ? norm.data() : nullptr};
  const auto s = ck::run_objective<3, 3>(
      tag, fn, f, ck::in(mask), B, T_, agg_params{},
      std::array<ck::out2<value_t<T>>, 3>{ck::out(dlogp), ck::out(dvalues), ck::out(dentropy)}, 1.0, false, "mask");
  if (p.normalize_advantage) detail::require_two(s.n, fn);
  return detail::result_from(s, p, fn);
}

}  // namespace rlhf::a2c

namespace rlhf::ppo {

/// ppo::policy_loss queued on the tag's stream: the gradient is written in
/// stream order and the scalars stay on the device until get() (which waits
/// for the stream and raises the errors that depend on the data).
template <class T, class M>
deferred<policy_result> policy_loss_async(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> old_logp,
                                          in_dview<T, 2> adv, tensor_view<M, 2, device_space> mask,
                                          const policy_params& p, out_dview<T, 2> dlogp = {},
                                          in_dview<T, 2> weights = {}) {
  constexpr const char* fn = "ppo::policy_loss (cuda)";
  detail::check_policy_shapes(fn, logp, old_logp, adv, mask);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  detail::check_weights_shape(fn, logp, weights);
  check_policy_params(p, fn);
  namespace ck = cuda_kernels;
  const ck::ppo_policy_token<value_t<T>> f{ck::in(logp),
                                           ck::in(old_logp),
                                           ck::in(adv),
                                           ck::in(weights),
                                           {p.clip_low, p.clip_high, p.dual_clip, p.log_ratio_clamp},
                                           stat_rules(p)};
  auto launch = std::make_shared<ck::objective_launch<3>>(
      ck::launch_objective<1, 3>(tag, fn, f, ck::in(mask), logp.extent(0), logp.extent(1), p.agg,
                                 std::array<ck::out2<value_t<T>>, 1>{ck::out(dlogp)}));
  return deferred<policy_result>(
      [launch, p] { return detail::policy_from(launch->finish(), p, "ppo::policy_loss (cuda)"); });
}

/// ppo::policy_loss on device views (same arguments and result as the CPU's).
template <class T, class M>
policy_result policy_loss(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> old_logp, in_dview<T, 2> adv,
                          tensor_view<M, 2, device_space> mask, const policy_params& p, out_dview<T, 2> dlogp = {},
                          in_dview<T, 2> weights = {}) {
  return policy_loss_async(tag, logp, old_logp, adv, mask, p, dlogp, weights).get();
}

/// ppo::value_loss on device views.
template <class T, class M>
value_result value_loss(cuda_t tag, tensor_view<T, 2, device_space> vpreds, in_dview<T, 2> returns,
                        in_dview<T, 2> old_values, tensor_view<M, 2, device_space> mask, const value_params& p,
                        out_dview<T, 2> dvpreds = {}) {
  constexpr const char* fn = "ppo::value_loss (cuda)";
  detail::check_value_shapes(fn, vpreds, returns, old_values, mask, dvpreds);
  check_value_params(p, fn);
  namespace ck = cuda_kernels;
  const ck::value_token<value_t<T>> f{ck::in(vpreds), ck::in(returns), ck::in(old_values), p.clip,
                                      p.style == value_clip_style::clipped_only};
  const auto s = ck::run_objective<1, 1>(tag, fn, f, ck::in(mask), vpreds.extent(0), vpreds.extent(1), p.agg,
                                         std::array<ck::out2<value_t<T>>, 1>{ck::out(dvpreds)}, p.scale);
  return detail::value_from(s, p, fn);
}

/// ppo::entropy_bonus on device views.
template <class T, class M>
entropy_result entropy_bonus(cuda_t tag, tensor_view<T, 2, device_space> entropy, tensor_view<M, 2, device_space> mask,
                             double coef, const agg_params& agg, out_dview<T, 2> dentropy = {},
                             bool accumulate = false) {
  constexpr const char* fn = "ppo::entropy_bonus (cuda)";
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "entropy", entropy);
  rlhf::detail::require_output(fn, "dentropy", dentropy, "entropy", entropy);
  rlhf::detail::require_finite_param(coef, fn, "entropy_coef");
  namespace ck = cuda_kernels;
  const auto s = ck::run_objective<1, 0>(
      tag, fn, ck::identity_token<value_t<T>>{ck::in(entropy)}, ck::in(mask), entropy.extent(0), entropy.extent(1), agg,
      std::array<ck::out2<value_t<T>>, 1>{ck::out(dentropy)}, -coef, accumulate, "loss_mask", false);
  return {-coef * s.value, s.value};
}

}  // namespace rlhf::ppo

namespace rlhf::kl {

/// kl::loss on device views: kl_coef * agg(KL); d loss / d logp into `dlogp`.
template <class T, class M>
in_loss_result loss(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> ref_logp,
                    tensor_view<M, 2, device_space> mask, double kl_coef, const kl_params& p, const agg_params& agg,
                    out_dview<T, 2> dlogp = {}, bool accumulate = false) {
  constexpr const char* fn = "kl::loss (cuda)";
  check_loss(fn, logp, ref_logp, mask, dlogp, kl_coef, p);
  namespace ck = cuda_kernels;
  const auto s =
      ck::run_objective<1, 0>(tag, fn, ck::kl_token_fn<value_t<T>>{ck::in(logp), ck::in(ref_logp), p}, ck::in(mask),
                              logp.extent(0), logp.extent(1), agg, std::array<ck::out2<value_t<T>>, 1>{ck::out(dlogp)},
                              kl_coef, accumulate, "loss_mask", false);
  return {kl_coef * s.value, s.value};
}

}  // namespace rlhf::kl

namespace rlhf::ppo {

/// ppo::actor_loss on device views: the CPU's composition (ppo.hpp,
/// detail::compose_actor) with the device policy loss, entropy bonus and
/// KL in the loss.
template <class T, class M>
actor_result actor_loss(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> old_logp, in_dview<T, 2> adv,
                        tensor_view<M, 2, device_space> mask, in_dview<T, 2> entropy, in_dview<T, 2> ref_logp,
                        const actor_params& p, out_dview<T, 2> dlogp = {}, out_dview<T, 2> dentropy = {}) {
  return detail::compose_actor(
      tag, logp, old_logp, adv, mask, entropy, ref_logp, p, dlogp, dentropy,
      [](auto&&... a) { return ppo::policy_loss(a...); }, [](auto&&... a) { return ppo::entropy_bonus(a...); },
      [](auto&&... a) { return kl::loss(a...); });
}

}  // namespace rlhf::ppo
