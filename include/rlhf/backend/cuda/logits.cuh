// rlhf++ — log-probabilities of labels, entropy, and their backward from
// [N, V] logits on the device, in float, double, half and bfloat16.
//
// One row per block (512 threads). Pass 1 streams the row once with 16-byte
// vector loads and keeps, per thread, an online (max m, sum e^(z - m),
// sum e^(z - m) z) of z = logits / temperature; a block reduction merges
// them: lse = m + log s, E[z] = t / s, H = lse - E[z], logp = z_label - lse.
// The softmax is never stored. The backward's pass 2 streams the row again
// and writes
//   dlogits_j = (g_logp (1[j = label] - p_j) - g_H p_j (z_j - E[z])) / temperature,
// p_j = e^(z_j - lse), in the logits' type (it may overwrite the logits: in
// place). Half and bfloat16 accumulate in float; double in double.
// fused_token_objective runs pass 1, the objective of each row (a device
// functor: loss, d/dlogp, d/dH from logp and H), and pass 2 in one kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>

#include "../../ops/fused_logits.hpp"
#include "common.cuh"

namespace rlhf::cuda_kernels {

inline constexpr int logits_threads = 512;

template <class T>
struct acc_type {
  using type = float;
};
template <>
struct acc_type<double> {
  using type = double;
};
template <class T>
using acc_t = typename acc_type<T>::type;

__device__ inline float to_acc(__half x) { return __half2float(x); }
__device__ inline float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float to_acc(float x) { return x; }
__device__ inline double to_acc(double x) { return x; }
template <class T>
__device__ T from_acc(double x) {
  if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(static_cast<float>(x));
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16_rn(static_cast<float>(x));
  else
    return static_cast<T>(x);
}
__device__ inline float fast_exp(float x) { return __expf(x); }
__device__ inline double fast_exp(double x) { return exp(x); }

/// Online softmax statistics of a set of z: max, sum e^(z - max), sum e^(z - max) z.
template <class A>
struct row_stats {
  A m, s, t;
  __device__ void add(A z) {
    if (z == -INFINITY) return;  // a masked-out vocabulary entry
    if (z > m) {
      const A r = fast_exp(m - z);  // m = -inf: r = 0
      s *= r;
      t *= r;
      m = z;
    }
    const A e = fast_exp(z - m);
    s += e;
    t += e * z;
  }
  __device__ void merge(const row_stats& o) {
    if (o.m == -INFINITY) return;
    if (m == -INFINITY) {
      *this = o;
      return;
    }
    const A M = m > o.m ? m : o.m;
    const A a = fast_exp(m - M), b = fast_exp(o.m - M);
    s = s * a + o.s * b;
    t = t * a + o.t * b;
    m = M;
  }
};

/// Block-wide merge of the per-thread statistics (warp shuffles, then shared memory).
template <class A>
__device__ row_stats<A> block_stats(row_stats<A> st) {
  __shared__ A sm[32], ss[32], stt[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    row_stats<A> o{__shfl_down_sync(0xffffffffu, st.m, off), __shfl_down_sync(0xffffffffu, st.s, off),
                   __shfl_down_sync(0xffffffffu, st.t, off)};
    st.merge(o);
  }
  if (lane == 0) {
    sm[warp] = st.m;
    ss[warp] = st.s;
    stt[warp] = st.t;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = (blockDim.x + 31) / 32;
    row_stats<A> w = lane < nw ? row_stats<A>{sm[lane], ss[lane], stt[lane]} : row_stats<A>{-INFINITY, 0, 0};
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
      row_stats<A> o{__shfl_down_sync(0xffffffffu, w.m, off), __shfl_down_sync(0xffffffffu, w.s, off),
                     __shfl_down_sync(0xffffffffu, w.t, off)};
      w.merge(o);
    }
    if (lane == 0) {
      sm[0] = w.m;
      ss[0] = w.s;
      stt[0] = w.t;
    }
  }
  __syncthreads();
  const row_stats<A> r{sm[0], ss[0], stt[0]};
  __syncthreads();  // the shared slots may be reused by the caller
  return r;
}

/// Elements per 16-byte load.
template <class T>
inline constexpr int pack_of = static_cast<int>(16 / sizeof(T));

template <class T>
struct alignas(16) pack16 {
  T v[pack_of<T>];
};

/// Calls f(j, z_j) for every element of a row, 16-byte loads when the row is
/// aligned. The first `ncache` vectors are also kept in `cache` (shared
/// memory) for the row's second pass: each thread caches and re-reads the
/// same vectors, so no barrier is needed.
template <class T, class A, class F>
__device__ void for_row(const T* row, index_t V, A inv_tau, bool aligned, F&& f, pack16<T>* cache = nullptr,
                        index_t ncache = 0) {
  constexpr int P = pack_of<T>;
  index_t head = 0;
  if (aligned) {
    const index_t nv = V / P;
    const auto* vrow = reinterpret_cast<const pack16<T>*>(row);
    for (index_t k = threadIdx.x; k < nv; k += blockDim.x) {
      const pack16<T> x = vrow[k];
      if (k < ncache) cache[k] = x;
#pragma unroll
      for (int q = 0; q < P; ++q) f(k * P + q, to_acc(x.v[q]) * inv_tau);
    }
    head = nv * P;
  }
  for (index_t j = head + threadIdx.x; j < V; j += blockDim.x) f(j, to_acc(row[j]) * inv_tau);
}

/// The same with a write: out[j] = g(j, z_j), 16-byte loads and stores when
/// both rows are aligned; the first `ncache` vectors come from the cache.
template <class T, class A, class G>
__device__ void map_row(const T* row, T* out, index_t V, A inv_tau, bool aligned, G&& g,
                        const pack16<T>* cache = nullptr, index_t ncache = 0) {
  constexpr int P = pack_of<T>;
  index_t head = 0;
  if (aligned) {
    const index_t nv = V / P;
    const auto* vrow = reinterpret_cast<const pack16<T>*>(row);
    auto* vout = reinterpret_cast<pack16<T>*>(out);
    for (index_t k = threadIdx.x; k < nv; k += blockDim.x) {
      const pack16<T> x = k < ncache ? cache[k] : vrow[k];
      pack16<T> y;
#pragma unroll
      for (int q = 0; q < P; ++q) y.v[q] = from_acc<T>(g(k * P + q, to_acc(x.v[q]) * inv_tau));
      vout[k] = y;
    }
    head = nv * P;
  }
  for (index_t j = head + threadIdx.x; j < V; j += blockDim.x) out[j] = from_acc<T>(g(j, to_acc(row[j]) * inv_tau));
}

/// Row i's results of pass 1.
template <class A>
struct row_result {
  A lse, mean_z, logp, entropy;
};

template <class T, class L>
__device__ row_result<acc_t<T>> row_forward(const T* row, index_t V, const L* labels, index_t ls, index_t i,
                                            acc_t<T> inv_tau, bool aligned, pack16<T>* cache = nullptr,
                                            index_t ncache = 0) {
  using A = acc_t<T>;
  row_stats<A> st{-INFINITY, 0, 0};
  for_row(
      row, V, inv_tau, aligned, [&](index_t, A z) { st.add(z); }, cache, ncache);
  // the label's logit is read before the block's last barrier: in place, a
  // thread may start overwriting the row as soon as it leaves block_stats
  const A z_label = labels ? to_acc(row[static_cast<index_t>(labels[i * ls])]) * inv_tau : A(0);
  st = block_stats(st);
  row_result<A> r;
  r.lse = st.m + log(st.s);
  r.mean_z = st.t / st.s;
  r.entropy = r.lse - r.mean_z;
  r.logp = labels ? z_label - r.lse : A(0);
  return r;
}

struct logits_launch {
  index_t N, V, row_stride, drow_stride, label_stride, out_stride, gin_stride;
  bool aligned, daligned;
  index_t cache_vecs = 0;  ///< 16-byte vectors of each row kept in shared memory between the passes
};

template <class T, class L, class O>
__global__ void __launch_bounds__(logits_threads)
    logits_forward(const T* logits, const L* labels, O* logp, O* entropy, O* lse, logits_launch k, acc_t<T> inv_tau) {
  for (index_t i = blockIdx.x; i < k.N; i += gridDim.x) {
    const auto r = row_forward(logits + i * k.row_stride, k.V, labels, k.label_stride, i, inv_tau, k.aligned);
    if (threadIdx.x == 0) {
      if (logp) logp[i * k.out_stride] = static_cast<O>(r.logp);
      if (entropy) entropy[i * k.out_stride] = static_cast<O>(r.entropy);
      if (lse) lse[i * k.out_stride] = static_cast<O>(r.lse);
    }
  }
}

/// Pass 2 of row i: dlogits from the row's statistics and upstream gradients.
template <class T, class L>
__device__ void row_backward(const T* row, T* drow, index_t V, const L* labels, index_t ls, index_t i,
                             const row_result<acc_t<T>>& r, acc_t<T> g_lp, acc_t<T> g_h, acc_t<T> inv_tau, bool aligned,
                             const pack16<T>* cache = nullptr, index_t ncache = 0) {
  using A = acc_t<T>;
  const index_t label = labels ? static_cast<index_t>(labels[i * ls]) : -1;
  map_row(
      row, drow, V, inv_tau, aligned,
      [&](index_t j, A z) -> A {
        const A onehot = j == label ? A(1) : A(0);
        const A p = fast_exp(z - r.lse);
        // p = 0 (z = -inf, a masked-out entry): no entropy term, and no 0 * inf
        const A dz = p == A(0) ? g_lp * onehot : g_lp * (onehot - p) - g_h * p * (z - r.mean_z);
        return dz * inv_tau;
      },
      cache, ncache);
}

extern __shared__ uint4 logits_cache_smem[];

template <class T, class L, class O>
__global__ void __launch_bounds__(1024)
    logits_backward(const T* logits, const L* labels, const O* dlogp, const O* dentropy, T* dlogits, logits_launch k,
                    acc_t<T> inv_tau) {
  using A = acc_t<T>;
  auto* cache = reinterpret_cast<pack16<T>*>(logits_cache_smem);
  for (index_t i = blockIdx.x; i < k.N; i += gridDim.x) {
    const T* row = logits + i * k.row_stride;
    const auto r = row_forward(row, k.V, labels, k.label_stride, i, inv_tau, k.aligned, cache, k.cache_vecs);
    const A g_lp = dlogp ? static_cast<A>(dlogp[i * k.gin_stride]) : A(0);
    const A g_h = dentropy ? static_cast<A>(dentropy[i * k.gin_stride]) : A(0);
    row_backward(row, dlogits + i * k.drow_stride, k.V, labels, k.label_stride, i, r, g_lp, g_h, inv_tau,
                 k.aligned && k.daligned, cache, k.cache_vecs);
    __syncthreads();  // the next row's pass 1 refills the cache
  }
}

/// Pass 1, the row objective, pass 2; row_loss[i] receives l_i.
template <class T, class L, class O, class Objective>
__global__ void __launch_bounds__(1024)
    logits_fused(const T* logits, const L* labels, Objective obj, T* dlogits, O* logp, O* entropy, double* row_loss,
                 logits_launch k, acc_t<T> inv_tau) {
  using A = acc_t<T>;
  auto* cache = reinterpret_cast<pack16<T>*>(logits_cache_smem);
  const index_t ncache = dlogits ? k.cache_vecs : 0;
  for (index_t i = blockIdx.x; i < k.N; i += gridDim.x) {
    const T* row = logits + i * k.row_stride;
    const auto r = row_forward(row, k.V, labels, k.label_stride, i, inv_tau, k.aligned, cache, ncache);
    const ops::token_terms t = obj(i, static_cast<double>(r.logp), static_cast<double>(r.entropy));
    if (threadIdx.x == 0) {
      row_loss[i] = t.loss;
      if (logp) logp[i * k.out_stride] = static_cast<O>(r.logp);
      if (entropy) entropy[i * k.out_stride] = static_cast<O>(r.entropy);
    }
    if (dlogits)
      row_backward(row, dlogits + i * k.drow_stride, k.V, labels, k.label_stride, i, r, static_cast<A>(t.dlogp),
                   static_cast<A>(t.dentropy), inv_tau, k.aligned && k.daligned, cache, ncache);
    __syncthreads();  // in place: the row is rewritten before the next row's reads of shared slots
  }
}

inline bool aligned16(const void* p, index_t row_stride, std::size_t elem) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && (static_cast<std::size_t>(row_stride) * elem) % 16 == 0;
}

/// How a two-pass kernel runs: threads per block and the row cache in shared
/// memory. Rows of 64 KiB or more are cached (as much as one block may hold,
/// at most 200 KiB): the second pass then reads them from shared memory
/// instead of L2 / HBM, one 1024-thread block per SM. rlhf::cuda.cache_rows(false)
/// turns the cache off (512 threads, the second read from L2 / HBM).
struct two_pass_plan {
  int threads = logits_threads;
  std::size_t smem = 0;
  index_t cache_vecs = 0;
};
inline two_pass_plan plan_two_pass(const void* kernel, index_t V, std::size_t elem, bool aligned, bool cache,
                                   const char* fn) {
  two_pass_plan p;
  if (!aligned || !cache) return p;
  const index_t nv = V / static_cast<index_t>(16 / elem);
  const std::size_t row = static_cast<std::size_t>(nv) * 16;
  if (row < (std::size_t{64} << 10)) return p;
  int dev = 0, optin = 0;
  rlhf::detail::check_cuda(cudaGetDevice(&dev), fn, "cudaGetDevice");
  rlhf::detail::check_cuda(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), fn,
                           "cudaDeviceGetAttribute");
  const std::size_t limit =
      std::min<std::size_t>(std::size_t{200} << 10, optin > 8192 ? static_cast<std::size_t>(optin) - 8192 : 0);
  const std::size_t bytes = std::min(row, limit) / 16 * 16;
  if (bytes < (std::size_t{48} << 10)) return p;
  rlhf::detail::check_cuda(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), fn,
      "cudaFuncSetAttribute");
  p.threads = 1024;
  p.smem = bytes;
  p.cache_vecs = static_cast<index_t>(bytes / 16);
  return p;
}

inline unsigned logits_grid(index_t N) { return static_cast<unsigned>(N < 1 ? 1 : (N > 1048576 ? 1048576 : N)); }

template <class T, class L>
void check_logits_dev(const char* fn, const tensor_view<T, 2, device_space>& logits,
                      const tensor_view<L, 1, device_space>& labels, bool need_labels, double temperature) {
  rlhf::detail::require_nonempty(fn, "logits", logits);
  rlhf::detail::require_param(logits.stride(1) == 1, fn, "logits", "must have contiguous rows (stride 1 along V)");
  rlhf::detail::require_positive_param(temperature, fn, "temperature");
  if (need_labels) rlhf::detail::require_extent(fn, "labels", labels, 0, logits.extent(0), "one label per logits row");
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::ops {

/// Forward on the device: logp [N], entropy [N], lse [N] (any may be null;
/// float or double outputs for any logits type). Labels must lie in [0, V):
/// they are not checked on the device.
template <class T, class L, class O>
void logprobs_entropy(cuda_t tag, tensor_view<T, 2, device_space> logits, tensor_view<L, 1, device_space> labels,
                      tensor_view<O, 1, device_space> logp, tensor_view<O, 1, device_space> entropy = {},
                      tensor_view<O, 1, device_space> lse = {}, const logits_params& p = {}) {
  constexpr const char* fn = "ops::logprobs_entropy (cuda)";
  namespace ck = cuda_kernels;
  ck::check_logits_dev(fn, logits, labels, !logp.null(), p.temperature);
  const index_t N = logits.extent(0);
  for (const auto* o : {&logp, &entropy, &lse})
    if (!o->null()) rlhf::detail::require_out_extent(fn, "output", *o, 0, N, "one value per logits row");
  const index_t os = !logp.null()      ? logp.stride(0)
                     : !entropy.null() ? entropy.stride(0)
                     : !lse.null()     ? lse.stride(0)
                                       : 1;
  rlhf::detail::require_param((logp.null() || logp.stride(0) == os) && (entropy.null() || entropy.stride(0) == os) &&
                                  (lse.null() || lse.stride(0) == os),
                              fn, "logp", "the outputs must share one stride");
  using V = value_t<T>;
  const ck::logits_launch k{N,
                            logits.extent(1),
                            logits.stride(0),
                            0,
                            labels.null() ? 0 : labels.stride(0),
                            os,
                            0,
                            ck::aligned16(logits.data(), logits.stride(0), sizeof(V)),
                            false};
  ck::logits_forward<V, value_t<L>, O><<<ck::logits_grid(N), ck::logits_threads, 0, tag.stream>>>(
      logits.data(), logp.null() ? nullptr : labels.data(), logp.data(), entropy.data(), lse.data(), k,
      static_cast<ck::acc_t<V>>(1.0 / p.temperature));
  ck::check_launch(fn, "logits_forward");
}

/// Backward on the device: dlogits (may be the logits' memory: in place)
/// from d/dlogp and d/dentropy (either may be null).
template <class T, class L, class O>
void logprobs_entropy_backward(cuda_t tag, tensor_view<T, 2, device_space> logits,
                               tensor_view<L, 1, device_space> labels, tensor_view<O, 1, device_space> dlogp,
                               tensor_view<O, 1, device_space> dentropy,
                               tensor_view<value_t<T>, 2, device_space> dlogits, const logits_params& p = {}) {
  constexpr const char* fn = "ops::logprobs_entropy_backward (cuda)";
  namespace ck = cuda_kernels;
  ck::check_logits_dev(fn, logits, labels, !dlogp.null(), p.temperature);
  rlhf::detail::require_same_shape(fn, "dlogits", dlogits, "logits", logits);
  rlhf::detail::require_param(dlogits.stride(1) == 1, fn, "dlogits", "must have contiguous rows");
  const index_t N = logits.extent(0);
  if (!dlogp.null()) rlhf::detail::require_extent(fn, "dlogp", dlogp, 0, N, "one value per logits row");
  if (!dentropy.null()) rlhf::detail::require_extent(fn, "dentropy", dentropy, 0, N, "one value per logits row");
  const index_t gs = !dlogp.null() ? dlogp.stride(0) : !dentropy.null() ? dentropy.stride(0) : 1;
  rlhf::detail::require_param(dlogp.null() || dentropy.null() || dlogp.stride(0) == dentropy.stride(0), fn, "dentropy",
                              "must have the stride of dlogp");
  using V = value_t<T>;
  const ck::logits_launch k{N,
                            logits.extent(1),
                            logits.stride(0),
                            dlogits.stride(0),
                            labels.null() ? 0 : labels.stride(0),
                            0,
                            gs,
                            ck::aligned16(logits.data(), logits.stride(0), sizeof(V)),
                            ck::aligned16(dlogits.data(), dlogits.stride(0), sizeof(V))};
  auto kernel = ck::logits_backward<V, value_t<L>, value_t<O>>;
  const auto plan = ck::plan_two_pass(reinterpret_cast<const void*>(kernel), k.V, sizeof(V), k.aligned && k.daligned,
                                      tag.row_cache, fn);
  ck::logits_launch kc = k;
  kc.cache_vecs = plan.cache_vecs;
  kernel<<<ck::logits_grid(N), static_cast<unsigned>(plan.threads), plan.smem, tag.stream>>>(
      logits.data(), dlogp.null() ? nullptr : labels.data(), dlogp.data(), dentropy.data(), dlogits.data(), kc,
      static_cast<ck::acc_t<V>>(1.0 / p.temperature));
  ck::check_launch(fn, "logits_backward");
}

namespace detail {
/// Queues fused_token_objective without reading anything back: row i's loss
/// goes to row_loss[i] (device). The fused linear path calls it per chunk.
template <class T, class L, class Objective, class O>
void launch_fused_token_objective(cuda_t tag, const char* fn, tensor_view<T, 2, device_space> logits,
                                  tensor_view<L, 1, device_space> labels, const Objective& objective,
                                  tensor_view<value_t<T>, 2, device_space> dlogits,
                                  tensor_view<O, 1, device_space> logp, tensor_view<O, 1, device_space> entropy,
                                  const logits_params& p, double* row_loss) {
  namespace ck = cuda_kernels;
  ck::check_logits_dev(fn, logits, labels, true, p.temperature);
  const index_t N = logits.extent(0);
  if (!dlogits.null()) {
    rlhf::detail::require_same_shape(fn, "dlogits", dlogits, "logits", logits);
    rlhf::detail::require_param(dlogits.stride(1) == 1, fn, "dlogits", "must have contiguous rows");
  }
  if (!logp.null()) rlhf::detail::require_out_extent(fn, "logp", logp, 0, N, "one value per logits row");
  if (!entropy.null()) rlhf::detail::require_out_extent(fn, "entropy", entropy, 0, N, "one value per logits row");
  rlhf::detail::require_param(logp.null() || entropy.null() || logp.stride(0) == entropy.stride(0), fn, "entropy",
                              "must have the stride of logp");
  using V = value_t<T>;
  ck::logits_launch k{N,
                      logits.extent(1),
                      logits.stride(0),
                      dlogits.null() ? 0 : dlogits.stride(0),
                      labels.stride(0),
                      !logp.null()      ? logp.stride(0)
                      : !entropy.null() ? entropy.stride(0)
                                        : 1,
                      0,
                      ck::aligned16(logits.data(), logits.stride(0), sizeof(V)),
                      dlogits.null() ? false : ck::aligned16(dlogits.data(), dlogits.stride(0), sizeof(V))};
  auto kernel = ck::logits_fused<V, value_t<L>, O, Objective>;
  const auto plan = ck::plan_two_pass(reinterpret_cast<const void*>(kernel), k.V, sizeof(V),
                                      !dlogits.null() && k.aligned && k.daligned, tag.row_cache, fn);
  k.cache_vecs = plan.cache_vecs;
  kernel<<<ck::logits_grid(N), static_cast<unsigned>(plan.threads), plan.smem, tag.stream>>>(
      logits.data(), labels.data(), objective, dlogits.data(), logp.data(), entropy.data(), row_loss, k,
      static_cast<ck::acc_t<V>>(1.0 / p.temperature));
  ck::check_launch(fn, "logits_fused");
}

/// The sum of n device doubles, read back (synchronizes the stream).
inline double sum_on_device(cuda_t tag, const char* fn, const double* x, index_t n) {
  namespace ck = cuda_kernels;
  ck::scratch total(1, tag.stream, fn);
  ck::sum_vector<><<<1, ck::block_threads, 0, tag.stream>>>(x, n, total.data());
  ck::check_launch(fn, "sum_vector");
  return total.read()[0];
}
}  // namespace detail

/// fused_token_objective on the device: `objective` is a device-callable
/// functor (RLHF_HD operator()(index_t i, double logp, double H) ->
/// token_terms) whose pointers are device pointers, e.g. ppo::pg_entropy_objective,
/// ppo::ppo_token_objective (objectives/fused.hpp). Returns the sum of the row losses.
template <class T, class L, class Objective, class O = float>
double fused_token_objective(cuda_t tag, tensor_view<T, 2, device_space> logits, tensor_view<L, 1, device_space> labels,
                             const Objective& objective, tensor_view<value_t<T>, 2, device_space> dlogits,
                             tensor_view<O, 1, device_space> logp = {}, tensor_view<O, 1, device_space> entropy = {},
                             const logits_params& p = {}) {
  constexpr const char* fn = "ops::fused_token_objective (cuda)";
  stream_buffer<double> row_loss(static_cast<std::size_t>(logits.extent(0)), tag.stream, fn);
  detail::launch_fused_token_objective(tag, fn, logits, labels, objective, dlogits, logp, entropy, p, row_loss.data());
  const double v = detail::sum_on_device(tag, fn, row_loss.data(), logits.extent(0));
  rlhf::detail::require_finite_result(v, fn, "logits", "the objective is not finite");
  return v;
}

}  // namespace rlhf::ops
