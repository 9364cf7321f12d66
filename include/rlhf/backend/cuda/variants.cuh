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

/// rows[3 b + k] += per-row sums: k = 0: sum m (logp - old), 1: sum m, 2: (geo-mean) sum sa min(...) m, plus A m in [3 B + b].
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

/// One token of any variant (loss, d/dlogp, and the statistics clipfrac,
/// clipfrac_lower, ppo_kl by the variant's rules).
template <class T>
struct variant_token {
  in2<T> logp, old, adv, weights;
  ppo::policy_loss_kind kind;
  math::ppo_clip_params cp;
  double clip_low, clip_high, tau_pos, tau_neg, dro_beta, cap, lrc, gspo_max;
  bool gspo_full;
  const double* rows;  ///< variant_rows (gspo, geo_mean)
  index_t B;
  __device__ token_out<1, 3> operator()(index_t b, index_t t) const {
    const double lp = logp(b, t), o = old(b, t), a = adv(b, t), iw = weights.null() ? 1.0 : weights(b, t);
    token_out<1, 3> r;
    r.stat[2] = o - lp;  // ppo_kl for every variant but dppo
    switch (kind) {
      case ppo::policy_loss_kind::gspo: {
        const double len = rows[3 * b + 1] > 1.0 ? rows[3 * b + 1] : 1.0, s = rows[3 * b] / len;
        const math::dual d = math::clamp(math::dual{s, 1.0}, -INFINITY, gspo_max);
        const auto term = math::ppo_clip_log_ratio(d, a, cp);
        r.loss = term.loss * iw;
        r.grad[0] = term.dlogp * iw;
        r.stat[0] = math::gspo_clipped(s, gspo_max, a, clip_low, clip_high) ? 1.0 : 0.0;
        break;
      }
      case ppo::policy_loss_kind::sapo: {
        const auto d = math::sapo_token(lp, o, a, tau_pos, tau_neg);
        r.loss = d.v * iw;
        r.grad[0] = d.d * iw;
        break;
      }
      case ppo::policy_loss_kind::cispo: {
        const auto c = math::cispo_token(lp, o, a, clip_low, clip_high, lrc);
        r.loss = c.loss * iw;
        r.grad[0] = c.dlogp * iw;
        r.stat[0] = c.clipped ? 1.0 : 0.0;
        break;
      }
      case ppo::policy_loss_kind::gpg:
        r.loss = -lp * a * iw;
        r.grad[0] = -a * iw;
        r.stat[2] = 0.0;
        break;
      case ppo::policy_loss_kind::dro: {
        const auto d = math::dro_token(lp, o, a, dro_beta);
        r.loss = d.v * iw;
        r.grad[0] = d.d * iw;
        break;
      }
      case ppo::policy_loss_kind::dppo_tv:
      case ppo::policy_loss_kind::dppo_kl: {
        const auto d = math::dppo_token(lp, o, a, clip_low, clip_high, kind == ppo::policy_loss_kind::dppo_kl, lrc, cap);
        r.loss = d.coef * iw * lp;
        r.grad[0] = d.coef * iw;
        r.stat[0] = d.valid ? 0.0 : 1.0;
        r.stat[1] = d.valid && d.ratio > cap ? 1.0 : 0.0;
        r.stat[2] = -d.log_ratio;
        break;
      }
      case ppo::policy_loss_kind::geo_mean: {
        // the row's loss spread over its valid tokens (token-sum weight 1)
        const double n = rows[3 * b + 1], ratio = exp(rows[3 * b + 2] / (n + 1e-8)), advb = rows[3 * B + b] / (n + 1e-8);
        const double iw0 = weights.null() ? 1.0 : weights(b, 0);
        const auto g = math::geo_mean_token(lp, o, a, clip_low, clip_high);
        r.loss = n > 0 ? -advb * ratio * iw0 / static_cast<double>(B) / n : 0.0;
        r.grad[0] = -advb * ratio * iw0 * g.dlogp / (n + 1e-8) / static_cast<double>(B);
        r.stat[0] = g.clipped && a > 0 ? 1.0 : 0.0;
        r.stat[1] = g.clipped && a < 0 ? 1.0 : 0.0;
        break;
      }
      case ppo::policy_loss_kind::vanilla: break;
    }
    return r;
  }
};

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
                                  out_dview<T, 2> dlogp = {}, in_dview<T, 2> weights = {}) {
  if (v.kind == policy_loss_kind::vanilla) return policy_loss(tag, logp, old_logp, adv, mask, v.base, dlogp, weights);
  constexpr const char* fn = "ppo::policy_loss_variant (cuda)";
  detail::check_policy_inputs(tag, fn, logp, old_logp, adv, mask);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  detail::check_weights(tag, fn, logp, weights);
  const policy_params& p = v.base;
  check_variant_params(v, fn);
  namespace ck = cuda_kernels;
  using V = value_t<T>;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  const bool seq = v.kind == policy_loss_kind::gspo || v.kind == policy_loss_kind::geo_mean;
  ck::scratch rows(static_cast<std::size_t>(seq ? 4 * B : 1), tag.stream, fn);
  if (seq) {
    ck::variant_rows<V, value_t<M>><<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(
        ck::in(logp), ck::in(old_logp), ck::in(adv), ck::in(mask), T_, p.clip_low, p.clip_high,
        v.kind == policy_loss_kind::geo_mean, rows.data(), B);
    ck::check_launch(fn, "variant_rows");
  }
  const bool full = v.kind == policy_loss_kind::gspo && v.gspo_grad == gspo_gradient::full;
  const ck::variant_token<V> f{ck::in(logp),
                               ck::in(old_logp),
                               ck::in(adv),
                               ck::in(weights),
                               v.kind,
                               {p.clip_low, p.clip_high, p.dual_clip, INFINITY},
                               p.clip_low,
                               p.clip_high,
                               v.tau_pos,
                               v.tau_neg,
                               v.dro_beta,
                               v.dppo_ratio_cap,
                               p.log_ratio_clamp,
                               v.gspo_log_ratio_max,
                               full,
                               rows.data(),
                               B};
  if (full) {
    // OpenRLHF multiplies the ratio by the mask: a masked token's term uses ratio 0 (its loss is
    // masked out anyway; its gradient comes from the row sum below)
  }
  agg_params agg = p.agg;
  if (v.kind == policy_loss_kind::geo_mean) agg = agg_params{agg_mode::token_sum};  // the row loss is spread over its tokens
  const auto s = ck::run_objective<1, 3>(tag, fn, f, ck::in(mask), B, T_, agg, std::array<ck::out2<V>, 1>{ck::out(dlogp)});
  if (full && !dlogp.null()) {
    ck::gspo_full_gradient<value_t<M>, V><<<static_cast<unsigned>(B), ck::block_threads, 0, tag.stream>>>(
        ck::in(mask), ck::out(dlogp), T_, rows.data());
    ck::check_launch(fn, "gspo_full_gradient");
    rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");
  }
  policy_result r;
  r.loss = s.value;
  rlhf::detail::require_finite_result(r.loss, fn, "log_prob", "a ratio exp(log_prob - old_log_prob) overflows; set log_ratio_clamp");
  const double d = s.n + p.stat_eps;
  const bool has_clip = v.kind == policy_loss_kind::gspo || v.kind == policy_loss_kind::cispo ||
                        v.kind == policy_loss_kind::dppo_tv || v.kind == policy_loss_kind::dppo_kl ||
                        v.kind == policy_loss_kind::geo_mean;
  const bool has_lower = v.kind == policy_loss_kind::dppo_tv || v.kind == policy_loss_kind::dppo_kl ||
                         v.kind == policy_loss_kind::geo_mean;
  r.clipfrac = has_clip ? s.stat[0] / d : 0.0;
  r.clipfrac_lower = has_lower ? s.stat[1] / d : 0.0;
  r.ppo_kl = v.kind == policy_loss_kind::gpg ? 0.0 : s.stat[2] / d;
  return r;
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
  double sum_rows = 0;
  for (index_t b = 0; b < B; ++b) sum_rows += h[static_cast<std::size_t>(2 * b)] / (h[static_cast<std::size_t>(2 * b + 1)] + 1e-8);
  return {sum_rows / static_cast<double>(B), beta};
}

}  // namespace rlhf::kl
