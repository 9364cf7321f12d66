// rlhf++ — the advantage estimators on the device: GAE and REINFORCE++
// (sequential scans: one row per thread, parallel over the batch, then the
// masked whitening of masked.cuh), GRPO and RLOO (row scores, one thread per
// group with the per-response formula the CPU uses, a broadcast over the
// tokens). The group ids are read back to the host to build the groups
// (B integers); everything else stays on the device.
#pragma once

#include <map>

#include "../../advantage/gae.hpp"
#include "../../advantage/gpg.hpp"
#include "../../advantage/opo.hpp"
#include "../../advantage/grpo.hpp"
#include "../../advantage/reinforce.hpp"
#include "../../advantage/rloo.hpp"
#include "common.cuh"
#include "masked.cuh"

namespace rlhf::cuda_kernels {

/// GAE backwards over each row (the CPU's loop), one thread per row.
template <class T, class M, class O>
__global__ void gae_scan(in2<T> r, in2<T> v, in2<M> mask, out2<O> adv, out2<O> ret, index_t B, index_t T_, double gamma,
                         double lam) {
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

/// out[b, t] = x[b, t].
template <class O>
__global__ void copy_2d(in2<O> x, out2<O> out, index_t B, index_t T_) {
  const index_t n = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    out.set(b, t, x(b, t));
  }
}

/// One thread per group (rows[offsets[g] .. offsets[g + 1])): the estimator's
/// rule writes a[b] for each member (aux: per-row extras; err: a flag the
/// host reads back).
template <class Rule>
__global__ void group_advantages(const double* s, const double* aux, const index_t* offsets, const index_t* rows,
                                 index_t groups, Rule rule, double* a, int* err) {
  for (index_t g = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; g < groups;
       g += static_cast<index_t>(gridDim.x) * blockDim.x)
    rule(s, aux, rows + offsets[g], offsets[g + 1] - offsets[g], a, err);
}

struct grpo_rule {
  adv::grpo_params p;
  __device__ void operator()(const double* s, const double*, const index_t* rows, index_t n, double* a, int*) const {
    const auto st = adv::detail::group_mean_std(s, rows, n);
    for (index_t k = 0; k < n; ++k)
      a[rows[k]] = adv::grpo_value(s[rows[k]], st.mean, st.std, static_cast<double>(n), p);
  }
};
struct rloo_rule {
  adv::rloo_params p;
  __device__ void operator()(const double* s, const double*, const index_t* rows, index_t n, double* a, int*) const {
    const double mean = adv::detail::group_mean_std(s, rows, n).mean;
    for (index_t k = 0; k < n; ++k) a[rows[k]] = adv::rloo_value(s[rows[k]], mean, static_cast<double>(n), p);
  }
};
/// OPO: the length-weighted group baseline (aux = valid tokens per row).
struct opo_rule {
  __device__ void operator()(const double* s, const double* len, const index_t* rows, index_t n, double* a,
                             int* err) const {
    double num = 0, den = 0;
    for (index_t k = 0; k < n; ++k) {
      num += len[rows[k]] * s[rows[k]];
      den += len[rows[k]];
    }
    double base = 0;
    if (n > 1) {
      if (!(den > 0))
        *err = 1;
      else
        base = num / den;
    }
    for (index_t k = 0; k < n; ++k) a[rows[k]] = s[rows[k]] - base;
  }
};
/// GPG: alpha (s - group mean) / f_norm; alpha = B / max(#nonzero scores, 1) from aux[0].
struct gpg_rule {
  double f_norm;
  __device__ void operator()(const double* s, const double* alpha, const index_t* rows, index_t n, double* a,
                             int*) const {
    const double mean = n > 1 ? adv::detail::group_mean_std(s, rows, n).mean : 0.0;
    for (index_t k = 0; k < n; ++k) a[rows[k]] = alpha[0] * (s[rows[k]] - mean) / f_norm;
  }
};
/// REINFORCE++ with a group baseline: s - group mean (0 for a group of one).
struct rpp_baseline_rule {
  __device__ void operator()(const double* s, const double*, const index_t* rows, index_t n, double* a, int*) const {
    const double mean = n > 1 ? adv::detail::group_mean_std(s, rows, n).mean : 0.0;
    for (index_t k = 0; k < n; ++k) a[rows[k]] = s[rows[k]] - mean;
  }
};
/// pass@k: only the best response (the first of the highest scores) gets the gap to the second best.
struct passk_rule {
  adv::grpo_params p;
  __device__ void operator()(const double* s, const double*, const index_t* rows, index_t n, double* a, int*) const {
    index_t best = 0;
    for (index_t k = 1; k < n; ++k)
      if (s[rows[k]] > s[rows[best]]) best = k;
    index_t second = best == 0 ? 1 : 0;
    for (index_t k = 0; k < n; ++k)
      if (k != best && s[rows[k]] > s[rows[second]]) second = k;
    const double gap = s[rows[best]] - s[rows[second]];
    for (index_t k = 0; k < n; ++k) a[rows[k]] = 0.0;
    a[rows[best]] = p.norm_by_std && gap != 0 ? gap / (adv::detail::group_mean_std(s, rows, n).std + p.epsilon) : gap;
  }
};

/// alpha = B / max(#nonzero, 1) into out[0] (one block).
template <class = void>
__global__ void gpg_alpha(const double* s, index_t B, double* out) {
  sums<1> x{{0.0}};
  for (index_t b = threadIdx.x; b < B; b += blockDim.x) x.v[0] += s[b] != 0 ? 1.0 : 0.0;
  using reduce = cub::BlockReduce<sums<1>, block_threads>;
  __shared__ typename reduce::TempStorage tmp;
  const sums<1> tot = reduce(tmp).Reduce(x, sum_op<1>{});
  if (threadIdx.x == 0) out[0] = static_cast<double>(B) / (tot.v[0] > 1.0 ? tot.v[0] : 1.0);
}

/// ReMax: returns = reverse cumulative sum of m r; advantages = returns - baseline m, one thread per row.
template <class T, class M, class O>
__global__ void remax_scan(in2<T> r, const T* base, index_t bs, in2<M> mask, out2<O> adv, out2<O> ret, index_t B,
                           index_t T_) {
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    double g = 0;
    const double bl = static_cast<double>(base[b * bs]);
    for (index_t t = T_; t-- > 0;) {
      const double m = mask(b, t);
      g += m != 0 ? r(b, t) * m : 0.0;
      ret.set(b, t, g);
      adv.set(b, t, g - bl * m);
    }
  }
}

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
using dev_outputs = adv::outputs<T, device_space>;

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
void build_groups(cudaStream_t stream, const char* fn, const tensor_view<I, 1, device_space>& index, index_t B,
                  stream_buffer<index_t>& offsets, stream_buffer<index_t>& rows, index_t& n_groups) {
  rlhf::detail::require_extent(fn, "index", index, 0, B, "one group id per response");
  // the ids may come from work queued on the caller's stream
  rlhf::detail::check_cuda(cudaStreamSynchronize(stream), fn, "cudaStreamSynchronize");
  std::vector<std::remove_const_t<I>> ids(static_cast<std::size_t>(B));
  rlhf::detail::check_cuda(
      cudaMemcpy2D(ids.data(), sizeof(I), index.data(), static_cast<std::size_t>(index.stride(0)) * sizeof(I),
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
  offsets = stream_buffer<index_t>(off.size(), stream, fn);
  offsets.upload(off.data(), off.size(), fn);
  rows = stream_buffer<index_t>(flat.size(), stream, fn);
  rows.upload(flat.data(), flat.size(), fn);
}

/// The outcome estimators: scores, groups, the per-group rule, broadcast.
/// `prepare(s, aux)` may fill aux (B doubles) from the scores on the device
/// before the rule runs; `min_group` is checked on the host.
template <class T, class M, class I, class Rule, class Prepare>
void group_estimator(cuda_t tag, const char* fn, tensor_view<T, 2, device_space> r,
                     tensor_view<M, 2, device_space> mask, tensor_view<I, 1, device_space> index, Rule rule,
                     const dev_outputs<value_t<T>>& out, Prepare&& prepare, index_t min_group = 1,
                     const char* empty_group_message = nullptr) {
  check_rewards_dev(fn, r, mask, out);
  const index_t B = r.extent(0), T_ = r.extent(1);
  stream_buffer<index_t> offsets, rows;
  index_t groups = 0;
  build_groups(tag.stream, fn, index, B, offsets, rows, groups);
  if (min_group > 1) {
    std::vector<index_t> off(static_cast<std::size_t>(groups + 1));
    offsets.download(off.data(), off.size(), fn);
    for (index_t g = 0; g < groups; ++g)
      if (off[static_cast<std::size_t>(g + 1)] - off[static_cast<std::size_t>(g)] < min_group)
        rlhf::detail::fail(error_kind::empty, fn, "index",
                           "has a group of one response: pass@k needs at least 2 per group");
  }
  scratch s(static_cast<std::size_t>(B), tag.stream, fn), aux(static_cast<std::size_t>(B), tag.stream, fn);
  stream_buffer<double> a(static_cast<std::size_t>(B), tag.stream, fn);
  stream_buffer<int> err(1, tag.stream, fn);
  rlhf::detail::check_cuda(cudaMemsetAsync(err.data(), 0, sizeof(int), tag.stream), fn, "cudaMemsetAsync");
  // the outcome score: the sum of every position (verl sums without the mask)
  row_sums<value_t<T>><<<grid_bt(B, T_), block_threads, 0, tag.stream>>>(in(r), T_, s.data());
  check_launch(fn, "row_sums (scores)");
  prepare(s.data(), aux.data());
  group_advantages<Rule><<<grid_1d(groups), block_threads, 0, tag.stream>>>(
      s.data(), aux.data(), offsets.data(), rows.data(), groups, rule, a.data(), err.data());
  check_launch(fn, "group_advantages");
  broadcast_rows<value_t<M>, value_t<T>><<<grid_1d(B * T_), block_threads, 0, tag.stream>>>(
      a.data(), in(mask), out2<value_t<T>>{out.advantages.data(), out.advantages.stride(0), out.advantages.stride(1)},
      out2<value_t<T>>{out.returns.data(), out.returns.stride(0), out.returns.stride(1)}, B, T_);
  check_launch(fn, "broadcast_rows");
  int e = 0;
  rlhf::detail::check_cuda(cudaMemcpyAsync(&e, err.data(), sizeof(int), cudaMemcpyDeviceToHost, tag.stream), fn,
                           "cudaMemcpyAsync (flag)");
  rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");
  if (e != 0 && empty_group_message) rlhf::detail::fail(error_kind::empty, fn, "response_mask", empty_group_message);
}

template <class T, class M, class I, class Rule>
void group_estimator(cuda_t tag, const char* fn, tensor_view<T, 2, device_space> r,
                     tensor_view<M, 2, device_space> mask, tensor_view<I, 1, device_space> index, Rule rule,
                     const dev_outputs<value_t<T>>& out) {
  group_estimator(tag, fn, r, mask, index, rule, out, [](double*, double*) {});
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
                  tensor_view<M, 2, device_space> response_mask, const gae_params& p,
                  const dev_outputs<value_t<T>>& out) {
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
  detail::check_params(p, fn);
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  using V = value_t<T>;
  const auto adv = ck::out(out.advantages), ret = ck::out(out.returns);
  ck::returns_scan<V, value_t<M>, V><<<ck::grid_1d(B), ck::block_threads, 0, tag.stream>>>(
      ck::in(token_level_rewards), ck::in(response_mask), ret, B, T_, p.gamma);
  ck::check_launch(fn, "returns_scan");
  ck::scratch acc(4, tag.stream, fn);
  ck::whiten_async(tag, fn, ck::in2<V>{ret.p, ret.s0, ret.s1}, ck::in(response_mask), adv, B, T_, p.whitening,
                   acc.data());
  ck::mask_scale<value_t<M>, V>
      <<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(ck::in(response_mask), adv, B, T_);
  ck::check_launch(fn, "mask_scale");
  if (!(acc.read()[0] >= 2))
    rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has fewer than 2 valid tokens: cannot whiten");
}

/// adv::grpo on device views; `index` (device) holds a group id per response.
template <class T, class M, class I>
void advantage_on(cuda_t tag, grpo_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  tensor_view<M, 2, device_space> response_mask, tensor_view<I, 1, device_space> index,
                  const grpo_params& p, const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::grpo (cuda)";
  rlhf::detail::require_nonneg_param(p.epsilon, fn, "epsilon");
  cuda_kernels::group_estimator(tag, fn, token_level_rewards, response_mask, index, cuda_kernels::grpo_rule{p}, out);
}

/// adv::rloo on device views.
template <class T, class M, class I>
void advantage_on(cuda_t tag, rloo_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  tensor_view<M, 2, device_space> response_mask, tensor_view<I, 1, device_space> index,
                  const rloo_params& p, const dev_outputs<value_t<T>>& out) {
  cuda_kernels::group_estimator(tag, "adv::rloo (cuda)", token_level_rewards, response_mask, index,
                                cuda_kernels::rloo_rule{p}, out);
}

/// adv::opo on device views: the length-weighted group baseline.
template <class T, class M, class I>
void advantage_on(cuda_t tag, opo_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  tensor_view<M, 2, device_space> response_mask, tensor_view<I, 1, device_space> index,
                  const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::opo (cuda)";
  namespace ck = cuda_kernels;
  const index_t T_ = token_level_rewards.extent(1);
  ck::group_estimator(
      tag, fn, token_level_rewards, response_mask, index, ck::opo_rule{}, out,
      [&](double*, double* len) {
        ck::row_sums<value_t<M>><<<ck::grid_bt(response_mask.extent(0), T_), ck::block_threads, 0, tag.stream>>>(
            ck::in(response_mask), T_, len);
        ck::check_launch(fn, "row_sums (lengths)");
      },
      1, "has a group whose responses have no valid token: the length-weighted baseline is undefined");
}

/// adv::gpg on device views.
template <class T, class M, class I>
void advantage_on(cuda_t tag, gpg_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  tensor_view<M, 2, device_space> response_mask, tensor_view<I, 1, device_space> index,
                  const gpg_params& p, const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::gpg (cuda)";
  rlhf::detail::require_positive_param(p.f_norm, fn, "f_norm");
  namespace ck = cuda_kernels;
  const index_t B = token_level_rewards.extent(0);
  ck::group_estimator(tag, fn, token_level_rewards, response_mask, index, ck::gpg_rule{p.f_norm}, out,
                      [&](double* s, double* alpha) {
                        ck::gpg_alpha<><<<1, ck::block_threads, 0, tag.stream>>>(s, B, alpha);
                        ck::check_launch(fn, "gpg_alpha");
                      });
}

/// adv::grpo_passk on device views.
template <class T, class M, class I>
void advantage_on(cuda_t tag, grpo_passk_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  tensor_view<M, 2, device_space> response_mask, tensor_view<I, 1, device_space> index,
                  const grpo_params& p, const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::grpo_passk (cuda)";
  rlhf::detail::require_nonneg_param(p.epsilon, fn, "epsilon");
  namespace ck = cuda_kernels;
  ck::group_estimator(
      tag, fn, token_level_rewards, response_mask, index, ck::passk_rule{p}, out, [](double*, double*) {}, 2);
}

/// adv::reinforce_pp_baseline on device views: group baseline, then whitening.
template <class T, class M, class I>
void advantage_on(cuda_t tag, reinforce_pp_baseline_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  tensor_view<M, 2, device_space> response_mask, tensor_view<I, 1, device_space> index,
                  const whiten_params& w, const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::reinforce_pp_baseline (cuda)";
  namespace ck = cuda_kernels;
  using V = value_t<T>;
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  // advantages = a[b] m (the tiled baseline-subtracted scores), then whitened in place, masked, copied to returns
  ck::group_estimator(tag, fn, token_level_rewards, response_mask, index, ck::rpp_baseline_rule{}, out);
  const auto adv = ck::out(out.advantages), ret = ck::out(out.returns);
  ck::scratch acc(4, tag.stream, fn);
  ck::whiten_async(tag, fn, ck::in2<V>{adv.p, adv.s0, adv.s1}, ck::in(response_mask), adv, B, T_, w, acc.data());
  ck::mask_scale<value_t<M>, V>
      <<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(ck::in(response_mask), adv, B, T_);
  ck::check_launch(fn, "mask_scale");
  ck::copy_2d<V>
      <<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(ck::in2<V>{adv.p, adv.s0, adv.s1}, ret, B, T_);
  ck::check_launch(fn, "copy_2d");
  if (!(acc.read()[0] >= 2))
    rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has fewer than 2 valid tokens: cannot whiten");
}

/// adv::remax on device views (reward_baselines: one per response, device).
template <class T, class M>
void advantage_on(cuda_t tag, remax_fn, tensor_view<T, 2, device_space> token_level_rewards,
                  in_dview<T, 1> reward_baselines, tensor_view<M, 2, device_space> response_mask,
                  const dev_outputs<value_t<T>>& out) {
  constexpr const char* fn = "adv::remax (cuda)";
  namespace ck = cuda_kernels;
  ck::check_rewards_dev(fn, token_level_rewards, response_mask, out);
  rlhf::detail::require_extent(fn, "reward_baselines", reward_baselines, 0, token_level_rewards.extent(0),
                               "one baseline per response");
  using V = value_t<T>;
  const index_t B = token_level_rewards.extent(0), T_ = token_level_rewards.extent(1);
  ck::remax_scan<V, value_t<M>, V><<<ck::grid_1d(B), ck::block_threads, 0, tag.stream>>>(
      ck::in(token_level_rewards), reward_baselines.data(), reward_baselines.stride(0), ck::in(response_mask),
      ck::out(out.advantages), ck::out(out.returns), B, T_);
  ck::check_launch(fn, "remax_scan");
  rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");
}

/// adv::zero_variance_fraction on the device: the row scores summed there,
/// the B scores and group ids read back, the CPU's rule (detail::zero_variance_of).
template <class T, class I>
double zero_variance_fraction(cuda_t tag, tensor_view<T, 2, device_space> rewards,
                              tensor_view<I, 1, device_space> index) {
  constexpr const char* fn = "adv::zero_variance_fraction (cuda)";
  rlhf::detail::require_nonempty(fn, "token_level_rewards", rewards);
  rlhf::detail::require_extent(fn, "index", index, 0, rewards.extent(0), "one group id per response");
  namespace ck = cuda_kernels;
  const index_t B = rewards.extent(0), T_ = rewards.extent(1);
  ck::scratch s(static_cast<std::size_t>(B), tag.stream, fn);
  ck::row_sums<<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(ck::in(rewards), T_, s.data());
  ck::check_launch(fn, "row_sums");
  const std::vector<double> scores = s.read();
  std::vector<std::remove_const_t<I>> ids(static_cast<std::size_t>(B));
  rlhf::detail::check_cuda(
      cudaMemcpy2D(ids.data(), sizeof(I), index.data(), static_cast<std::size_t>(index.stride(0)) * sizeof(I),
                   sizeof(I), static_cast<std::size_t>(B), cudaMemcpyDeviceToHost),
      fn, "cudaMemcpy2D (group ids)");
  return detail::zero_variance_of(scores,
                                  detail::groups(tensor_view<const std::remove_const_t<I>, 1>(ids.data(), {B})));
}

}  // namespace rlhf::adv
