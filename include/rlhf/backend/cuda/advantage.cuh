// rlhf++ — the advantage estimators on the device: GAE and REINFORCE++
// (sequential scans: one row per thread, parallel over the batch, then the
// masked whitening of masked.cuh), GRPO and RLOO (row scores, one thread per
// group with the per-response formula the CPU uses, a broadcast over the
// tokens). The group ids are read back to the host to build the groups
// (B integers); everything else stays on the device.
#pragma once

#include <map>

#include "../../advantage/gae.hpp"
#include "../../advantage/grpo.hpp"
#include "../../advantage/reinforce.hpp"
#include "../../advantage/rloo.hpp"
#include "common.cuh"
#include "masked.cuh"

namespace rlhf::cuda_kernels {

/// GAE backwards over each row (the CPU's loop), one thread per row.
template <class T, class M, class O>
__global__ void gae_scan(in2<T> r, in2<T> v, in2<M> mask, out2<O> adv, out2<O> ret, index_t B, index_t T_,
                         double gamma, double lam) {
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    double next_value = 0, last = 0;
    for (index_t t = T_; t-- > 0;) {
      const double vt = v(b, t);
      const double delta = r(b, t) + gamma * next_value - vt;
      const double a = delta + gamma * lam * last;
      if (mask(b, t) != 0) {
        next_value = vt;
        last = a;
      }
      adv.set(b, t, last);
      ret.set(b, t, last + vt);
    }
  }
}

/// REINFORCE++ discounted returns over the valid tokens, one thread per row.
template <class T, class M, class O>
__global__ void returns_scan(in2<T> r, in2<M> mask, out2<O> ret, index_t B, index_t T_, double gamma) {
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    double g = 0;
    for (index_t t = T_; t-- > 0;) {
      if (mask(b, t) != 0) {
        g = r(b, t) + gamma * g;
        ret.set(b, t, g);
      } else {
        ret.set(b, t, 0.0);
      }
    }
  }
}

/// x[b, t] *= mask[b, t].
template <class M, class O>
__global__ void mask_scale(in2<M> mask, out2<O> x, index_t B, index_t T_) {
  const index_t n = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    x.set(b, t, x.get(b, t) * mask(b, t));
  }
}

/// s[b] += sum_t r[b, t] (all positions, as verl), over grid_bt.
template <class T>
__global__ void row_scores(in2<T> r, index_t T_, double* s) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  sums<1> x{{0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) x.v[0] += r(b, t);
  block_accumulate<1>(x, s + b);
}

/// One thread per group (rows[offsets[g] .. offsets[g + 1])): mean, unbiased
/// std, then each member's advantage by the estimator's formula.
template <class Rule>
__global__ void group_advantages(const double* s, const index_t* offsets, const index_t* rows, index_t groups, Rule rule,
                                 double* a) {
  for (index_t g = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; g < groups;
       g += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t lo = offsets[g], hi = offsets[g + 1];
    const double n = static_cast<double>(hi - lo);
    double mean = 0;
    for (index_t k = lo; k < hi; ++k) mean += s[rows[k]];
    mean /= n;
    double var = 0;
    for (index_t k = lo; k < hi; ++k) var += (s[rows[k]] - mean) * (s[rows[k]] - mean);
    const double std = n >= 2 ? sqrt(var / (n - 1)) : 0.0;
    for (index_t k = lo; k < hi; ++k) a[rows[k]] = rule(s[rows[k]], mean, std, n);
  }
}

struct grpo_rule {
  adv::grpo_params p;
  __device__ double operator()(double s, double mean, double std, double n) const {
    return adv::grpo_value(s, mean, std, n, p);
  }
};
struct rloo_rule {
  adv::rloo_params p;
  __device__ double operator()(double s, double mean, double, double n) const { return adv::rloo_value(s, mean, n, p); }
};

/// advantages[b, t] = returns[b, t] = a[b] * mask[b, t].
template <class M, class O>
__global__ void broadcast_rows(const double* a, in2<M> mask, out2<O> adv, out2<O> ret, index_t B, index_t T_) {
  const index_t n = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    const double v = a[b] * mask(b, t);
    adv.set(b, t, v);
    ret.set(b, t, v);
  }
}

/// Device [B, T] outputs of an advantage estimator.
template <class T>
struct dev_outputs {
  tensor_view<T, 2, device_space> advantages{}, returns{};
};

template <class T, class M, class O>
void check_rewards_dev(const char* fn, const tensor_view<T, 2, device_space>& r,
                       const tensor_view<M, 2, device_space>& mask, const dev_outputs<O>& out) {
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "token_level_rewards", r);
  rlhf::detail::require_nonempty(fn, "token_level_rewards", r);
  rlhf::detail::require_same_shape(fn, "advantages", out.advantages, "token_level_rewards", r);
  rlhf::detail::require_same_shape(fn, "returns", out.returns, "token_level_rewards", r);
}

/// Group ids (device) -> groups in order of first appearance (CSR, on the device).
template <class I>
void build_groups(const char* fn, const tensor_view<I, 1, device_space>& index, index_t B, device_buffer<index_t>& offsets,
                  device_buffer<index_t>& rows, index_t& n_groups) {
  rlhf::detail::require_extent(fn, "index", index, 0, B, "one group id per response");
  std::vector<std::remove_const_t<I>> ids(static_cast<std::size_t>(B));
  rlhf::detail::check_cuda(cudaMemcpy2D(ids.data(), sizeof(I), index.data(), static_cast<std::size_t>(index.stride(0)) * sizeof(I),
                                        sizeof(I), static_cast<std::size_t>(B), cudaMemcpyDeviceToHost),
                           fn, "cudaMemcpy2D (group ids)");
  std::map<long long, std::size_t> slot;
  std::vector<std::vector<index_t>> g;
  for (index_t b = 0; b < B; ++b) {
    auto it = slot.find(static_cast<long long>(ids[static_cast<std::size_t>(b)]));
    if (it == slot.end()) {
      it = slot.emplace(static_cast<long long>(ids[static_cast<std::size_t>(b)]), g.size()).first;
      g.emplace_back();
    }
    g[it->second].push_back(b);
  }
  std::vector<index_t> off{0}, flat;
  for (const auto& rs : g) {
    flat.insert(flat.end(), rs.begin(), rs.end());
    off.push_back(static_cast<index_t>(flat.size()));
  }
  n_groups = static_cast<index_t>(g.size());
  offsets = device_buffer<index_t>(off.size());
  offsets.copy_from_host(off.data(), off.size());
  rows = device_buffer<index_t>(flat.size());
  rows.copy_from_host(flat.data(), flat.size());
}

/// The outcome estimators: scores, groups, per-group formula, broadcast.
template <class T, class M, class I, class Rule>
void group_estimator(cuda_t tag, const char* fn, tensor_view<T, 2, device_space> r, tensor_view<M, 2, device_space> mask,
                     tensor_view<I, 1, device_space> index, Rule rule, const dev_outputs<value_t<T>>& out) {
  check_rewards_dev(fn, r, mask, out);
  const index_t B = r.extent(0), T_ = r.extent(1);
  device_buffer<index_t> offsets, rows;
  index_t groups = 0;
  build_groups(fn, index, B, offsets, rows, groups);
  scratch s(static_cast<std::size_t>(B), tag.stream, fn);
  device_buffer<double> a(static_cast<std::size_t>(B));
  row_scores<value_t<T>><<<grid_bt(B, T_), block_threads, 0, tag.stream>>>(in(r), T_, s.data());
  check_launch(fn, "row_scores");
  group_advantages<Rule><<<grid_1d(groups), block_threads, 0, tag.stream>>>(s.data(), offsets.data(), rows.data(),
                                                                            groups, rule, a.data());
  check_launch(fn, "group_advantages");
  broadcast_rows<value_t<M>, value_t<T>><<<grid_1d(B * T_), block_threads, 0, tag.stream>>>(
      a.data(), in(mask), out2<value_t<T>>{out.advantages.data(), out.advantages.stride(0), out.advantages.stride(1)},
      out2<value_t<T>>{out.returns.data(), out.returns.stride(0), out.returns.stride(1)}, B, T_);
  check_launch(fn, "broadcast_rows");
  rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");  // a, offsets, rows freed next
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::adv {

template <class T>
using dev_outputs = cuda_kernels::dev_outputs<T>;

// adv::gae(rlhf::cuda, ...) and the others reach these through the function
// objects' generic call operator (argument-dependent lookup on gae_fn, ...).

/// adv::gae on device views (advantages and returns: device views).
template <class T, class M>
void advantage_on(cuda_t tag, gae_fn, tensor_view<T, 2, device_space> token_level_rewards, in_dview<T, 2> values,
         tensor_view<M, 2, device_space> response_mask, const gae_params& p, const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::gae (cuda)";
  namespace ck = cuda_kernels;
  ck::check_rewards_dev(fn, token_level_rewards, response_mask, out);
  rlhf::detail::require_same_shape(fn, "values", values, "token_level_rewards", token_level_rewards);
  rlhf::detail::require_nonneg_param(p.gamma, fn, "gamma");
  rlhf::detail::require_nonneg_param(p.lam, fn, "lam");
  rlhf::detail::require_param(p.gamma <= 1 && p.lam <= 1, fn, p.gamma > 1 ? "gamma" : "lam", "must be <= 1");
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  using V = value_t<T>;
  const auto adv = ck::out(out.advantages), ret = ck::out(out.returns);
  ck::gae_scan<V, value_t<M>, V><<<ck::grid_1d(B), ck::block_threads, 0, tag.stream>>>(
      ck::in(token_level_rewards), ck::in(values), ck::in(response_mask), adv, ret, B, T_, p.gamma, p.lam);
  ck::check_launch(fn, "gae_scan");
  if (p.whiten) {
    ck::scratch acc(4, tag.stream, fn);
    ck::whiten_async(tag, fn, ck::in2<V>{adv.p, adv.s0, adv.s1}, ck::in(response_mask), adv, B, T_, p.whitening,
                     acc.data());
    if (!(acc.read()[0] >= 2))
      rlhf::detail::fail(error_kind::empty, fn, "response_mask",
                         "has fewer than 2 valid tokens: the advantages cannot be whitened");
  }
}

/// adv::reinforce_pp on device views.
template <class T, class M>
void advantage_on(cuda_t tag, reinforce_pp_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  tensor_view<M, 2, device_space> response_mask, const reinforce_pp_params& p,
                  const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::reinforce_pp (cuda)";
  namespace ck = cuda_kernels;
  ck::check_rewards_dev(fn, token_level_rewards, response_mask, out);
  rlhf::detail::require_nonneg_param(p.gamma, fn, "gamma");
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  using V = value_t<T>;
  const auto adv = ck::out(out.advantages), ret = ck::out(out.returns);
  ck::returns_scan<V, value_t<M>, V><<<ck::grid_1d(B), ck::block_threads, 0, tag.stream>>>(
      ck::in(token_level_rewards), ck::in(response_mask), ret, B, T_, p.gamma);
  ck::check_launch(fn, "returns_scan");
  ck::scratch acc(4, tag.stream, fn);
  ck::whiten_async(tag, fn, ck::in2<V>{ret.p, ret.s0, ret.s1}, ck::in(response_mask), adv, B, T_, p.whitening,
                   acc.data());
  ck::mask_scale<value_t<M>, V><<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(ck::in(response_mask), adv,
                                                                                            B, T_);
  ck::check_launch(fn, "mask_scale");
  if (!(acc.read()[0] >= 2))
    rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has fewer than 2 valid tokens: cannot whiten");
}

/// adv::grpo on device views; `index` (device) holds a group id per response.
template <class T, class M, class I>
void advantage_on(cuda_t tag, grpo_fn, tensor_view<T, 2, device_space> token_level_rewards, tensor_view<M, 2, device_space> response_mask,
          tensor_view<I, 1, device_space> index, const grpo_params& p, const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::grpo (cuda)";
  rlhf::detail::require_nonneg_param(p.epsilon, fn, "epsilon");
  cuda_kernels::group_estimator(tag, fn, token_level_rewards, response_mask, index, cuda_kernels::grpo_rule{p}, out);
}

/// adv::rloo on device views.
template <class T, class M, class I>
void advantage_on(cuda_t tag, rloo_fn, tensor_view<T, 2, device_space> token_level_rewards, tensor_view<M, 2, device_space> response_mask,
          tensor_view<I, 1, device_space> index, const rloo_params& p, const dev_outputs<value_t<T>>& out) {
  cuda_kernels::group_estimator(tag, "adv::rloo (cuda)", token_level_rewards, response_mask, index,
                                cuda_kernels::rloo_rule{p}, out);
}

}  // namespace rlhf::adv
