// rlhf++ — the rest of the policy objectives on the device: every
// registered policy-loss variant (objectives/policy_variants.hpp), the
// OpenRLHF rollout importance-sampling weights, and the KL penalty in the
// reward. Token-level variants are per-token functors of the objectives
// engine (objectives.cuh) built from math/policy.hpp; the sequence-level
// ones (GSPO, geo-mean) first reduce each row on the device.
#pragma once

#include "../../kl/penalty.hpp"
#include "../../objectives/is_correction.hpp"
#include "../../objectives/policy_variants.hpp"
#include "objectives.cuh"

namespace rlhf::cuda_kernels {

/// rows[3 b + k] += per-row sums: k = 0: sum m (logp - old), 1: sum m, 2: (geo-mean) sum sa min(...) m, plus A m in [3
/// B + b].
template <class T, class M>
__global__ void variant_rows(in2<T> logp, in2<T> old, in2<T> adv, in2<M> mask, index_t T_, double clip_low,
                             double clip_high, bool geo, double* rows, index_t B) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  sums<4> s{{0.0, 0.0, 0.0, 0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double m = mask(b, t), d = logp(b, t) - old(b, t), a = adv(b, t);
    s.v[0] += d * m;
    s.v[1] += m;
    if (geo) {
      s.v[2] += math::geo_mean_token(logp(b, t), old(b, t), a, clip_low, clip_high).value * m;
      s.v[3] += a * m;
    }
  }
  using reduce = cub::BlockReduce<sums<4>, block_threads>;
  __shared__ typename reduce::TempStorage tmp;
  const sums<4> tot = reduce(tmp).Reduce(s, sum_op<4>{});
  if (threadIdx.x == 0) {
    atomicAdd(rows + 3 * b, tot.v[0]);
    atomicAdd(rows + 3 * b + 1, tot.v[1]);
    atomicAdd(rows + 3 * b + 2, tot.v[2]);
    atomicAdd(rows + 3 * B + b, tot.v[3]);
  }
}

template <class T>
using variant_token = ppo::rules::variant_token<in2<T>>;

/// GSPO full gradient: d/dlogp_bk = (sum_t g_bt) m_bk / len_b, one block per row, in place.
template <class M, class O>
__global__ void gspo_full_gradient(in2<M> mask, out2<O> g, index_t T_, const double* rows) {
  const index_t b = blockIdx.x;
  sums<1> s{{0.0}};
  for (index_t t = threadIdx.x; t < T_; t += blockDim.x) s.v[0] += g.get(b, t);
  using reduce = cub::BlockReduce<sums<1>, block_threads>;
  __shared__ typename reduce::TempStorage tmp;
  __shared__ double total;
  const sums<1> tot = reduce(tmp).Reduce(s, sum_op<1>{});
  if (threadIdx.x == 0) total = tot.v[0];
  __syncthreads();
  const double len = rows[3 * b + 1] > 1.0 ? rows[3 * b + 1] : 1.0;
  for (index_t t = threadIdx.x; t < T_; t += blockDim.x) g.set(b, t, total * mask(b, t) / len);
}

/// OpenRLHF rollout IS weights; acc[0] += sum m (rollout - old), acc[1] += sum m.
template <class T, class M>
__global__ void is_weights(in2<T> old, in2<T> rollout, in2<M> mask, out2<T> w, index_t T_, ppo::is_params p,
                           const double* rows, double* acc) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  bool keep = true;
  if (p.kind == ppo::is_correction::seq_mask_tis) {
    const double c = rows[3 * b + 1];
    const double r = c > 0 ? exp(-rows[3 * b] / c) : NAN;  // rows hold sum m (rollout - old)... negated below
    keep = r >= p.low && r <= p.high;
  }
  sums<2> s{{0.0, 0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double is = exp(old(b, t) - rollout(b, t));
    w.set(b, t, ppo::is_weight(p, is, keep));
    const double m = mask(b, t);
    s.v[1] += m;
    if (m != 0) s.v[0] += m * (rollout(b, t) - old(b, t));
  }
  block_accumulate<2>(s, acc);
}

/// KL in the reward: rewards = scores - beta m KL; rows[2 b] += sum m KL, rows[2 b + 1] += sum m.
template <class T, class M>
__global__ void kl_reward(in2<T> scores, in2<T> logp, in2<T> ref, in2<M> mask, out2<T> rewards, index_t T_, double beta,
                          kl_params p, double* rows) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  sums<2> s{{0.0, 0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double m = mask(b, t);
    const double k = static_cast<double>(static_cast<T>(math::kl_token(logp(b, t), ref(b, t), p).value)) * m;
    s.v[0] += k;
    s.v[1] += m;
    rewards.set(b, t, scores(b, t) - beta * k);
  }
  block_accumulate<2>(s, rows + 2 * b);
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::ppo {

/// ppo::policy_loss_variant on device views (every registered variant).
template <class T, class M>
policy_result policy_loss_variant(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> old_logp,
                                  in_dview<T, 2> adv, tensor_view<M, 2, device_space> mask, const variant_params& v,
                                  out_dview<T, 2> dlogp = {}, in_dview<T, 2> weights = {},
                                  in_dview<T, 2> ratio_logp = {}) {
  if (v.kind == policy_loss_kind::vanilla) return policy_loss(tag, logp, old_logp, adv, mask, v.base, dlogp, weights);
  constexpr const char* fn = "ppo::policy_loss_variant (cuda)";
  detail::check_policy_shapes(fn, logp, old_logp, adv, mask);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  detail::check_weights_shape(fn, logp, weights);
  detail::check_ratio_shape(fn, logp, ratio_logp, v);
  const policy_params& p = v.base;
  check_variant_params(v, fn);
  namespace ck = cuda_kernels;
  using V = value_t<T>;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  const bool seq = v.kind == policy_loss_kind::gspo || v.kind == policy_loss_kind::geo_mean;
  ck::scratch rows(static_cast<std::size_t>(seq ? 4 * B : 1), tag.stream, fn);
  if (seq) {
    ck::variant_rows<V, value_t<M>><<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(
        ck::in(logp), ck::in(ratio_logp.null() ? old_logp : ratio_logp), ck::in(adv), ck::in(mask), T_, p.clip_low,
        p.clip_high, v.kind == policy_loss_kind::geo_mean, rows.data(), B);
    ck::check_launch(fn, "variant_rows");
  }
  const bool full = v.kind == policy_loss_kind::gspo && v.gspo_grad == gspo_gradient::full;
  const auto f = detail::variant_rule(ck::in(logp), ck::in(old_logp), ck::in(adv), ck::in(weights), v, rows.data(), B);
  const agg_params agg = detail::variant_agg(v);
  const auto s =
      ck::run_objective<1, 3>(tag, fn, f, ck::in(mask), B, T_, agg, std::array<ck::out2<V>, 1>{ck::out(dlogp)});
  if (full && !dlogp.null()) {
    ck::gspo_full_gradient<value_t<M>, V>
        <<<static_cast<unsigned>(B), ck::block_threads, 0, tag.stream>>>(ck::in(mask), ck::out(dlogp), T_, rows.data());
    ck::check_launch(fn, "gspo_full_gradient");
    rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");
  }
  return detail::variant_from(s, v, fn);
}

/// ppo::rollout_is_weights on device views; returns vllm_kl.
template <class T, class M>
double rollout_is_weights(cuda_t tag, tensor_view<T, 2, device_space> old_logp, in_dview<T, 2> rollout_logp,
                          tensor_view<M, 2, device_space> mask, const is_params& p, out_dview<T, 2> weights) {
  constexpr const char* fn = "ppo::rollout_is_weights (cuda)";
  rlhf::detail::require_same_shape(fn, "rollout_log_probs", rollout_logp, "old_log_probs", old_logp);
  rlhf::detail::require_same_shape(fn, "action_mask", mask, "old_log_probs", old_logp);
  rlhf::detail::require_same_shape(fn, "weights", weights, "old_log_probs", old_logp);
  rlhf::detail::require_nonempty(fn, "old_log_probs", old_logp);
  rlhf::detail::require_nonneg_param(p.low, fn, "low");
  rlhf::detail::require_finite_param(p.high, fn, "high");
  rlhf::detail::require_param(p.low <= p.high, fn, "high", "must be >= low");
  namespace ck = cuda_kernels;
  using V = value_t<T>;
  const index_t B = old_logp.extent(0), T_ = old_logp.extent(1);
  // rows[3 b] = sum m (rollout - old) (variant_rows with logp = rollout, old = old), rows[3 b + 1] = sum m
  ck::scratch rows(static_cast<std::size_t>(4 * B), tag.stream, fn), acc(2, tag.stream, fn);
  ck::variant_rows<V, value_t<M>><<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(
      ck::in(rollout_logp), ck::in(old_logp), ck::in(old_logp), ck::in(mask), T_, 0.0, 0.0, false, rows.data(), B);
  ck::check_launch(fn, "variant_rows");
  ck::is_weights<V, value_t<M>><<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(
      ck::in(old_logp), ck::in(rollout_logp), ck::in(mask), ck::out(weights), T_, p, rows.data(), acc.data());
  ck::check_launch(fn, "is_weights");
  const auto h = acc.read();
  if (!(h[1] > 0)) rlhf::detail::fail(error_kind::empty, fn, "action_mask", "has no valid token");
  return h[0] / h[1];
}

}  // namespace rlhf::ppo

namespace rlhf::kl {

/// kl::apply_in_reward on device views: rewards = scores - beta m KL (rewards may alias scores).
template <class T, class M>
in_reward_stats apply_in_reward(cuda_t tag, tensor_view<T, 2, device_space> scores, in_dview<T, 2> logp,
                                in_dview<T, 2> ref_logp, tensor_view<M, 2, device_space> mask, double beta,
                                const kl_params& p, out_dview<T, 2> rewards) {
  constexpr const char* fn = "kl::apply_in_reward (cuda)";
  check_in_reward(tag, fn, scores, logp, ref_logp, mask, beta, rewards);
  check_params(p, fn);
  namespace ck = cuda_kernels;
  using V = value_t<T>;
  const index_t B = scores.extent(0), T_ = scores.extent(1);
  ck::scratch rows(static_cast<std::size_t>(2 * B), tag.stream, fn);
  ck::kl_reward<V, value_t<M>><<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(
      ck::in(scores), ck::in(logp), ck::in(ref_logp), ck::in(mask), ck::out(rewards), T_, beta, p, rows.data());
  ck::check_launch(fn, "kl_reward");
  const auto h = rows.read();
  const auto kl = [&h](index_t b) { return static_cast<double>(h[static_cast<std::size_t>(2 * b)]); };
  const auto n = [&h](index_t b) { return static_cast<double>(h[static_cast<std::size_t>(2 * b + 1)]); };
  return {mean_seq_kl(B, kl, n, fn), beta};
}

}  // namespace rlhf::kl
