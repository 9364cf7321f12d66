// rlhf++ — masked statistics on the device (ops/masked.hpp): sum, count,
// mean, variance (two passes, as the CPU: centred on the masked mean), and
// whitening. Reductions are CUB block sums added atomically in double.
#pragma once

#include "../../ops/masked.hpp"
#include "common.cuh"

namespace rlhf::cuda_kernels {

/// acc[0] += sum m, acc[1] += sum m v (masked-out v never read into the
/// sum); over the whole batch, or per row into acc[2 b], acc[2 b + 1].
template <class T, class M>
__global__ void masked_moments(in2<T> v, in2<M> mask, index_t T_, double* acc, bool per_row = false) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  sums<2> s{{0.0, 0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double m = mask(b, t);
    s.v[0] += m;
    if (m != 0) s.v[1] += m * v(b, t);
  }
  block_accumulate<2>(s, per_row ? acc + 2 * b : acc);
}

/// With mu = acc[1] / (acc[0] + eps): acc[2] += sum m (v - mu)^2, acc[3] += sum m (v - mu).
template <class T, class M>
__global__ void masked_centred(in2<T> v, in2<M> mask, index_t T_, double eps, double* acc) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  const double mu = acc[1] / (acc[0] + eps);
  sums<2> s{{0.0, 0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double m = mask(b, t);
    if (m == 0) continue;
    const double c = v(b, t) - mu;
    s.v[0] += m * c * c;
    s.v[1] += m * c;
  }
  block_accumulate<2>(s, acc + 2);
}

/// The variance from the accumulators (the CPU's formula).
__device__ inline double acc_variance(const double* acc, double eps, bool unbiased) {
  const double n = acc[0], D = n + eps;
  return acc[2] / D * (unbiased ? n / (n - 1) : 1.0);
}

/// out = (v - mu) / sqrt(var + var_eps) (+ mu unless shift_mean); out may alias v.
template <class T, class M, class O>
__global__ void whiten_apply(in2<T> v, in2<M> mask, out2<O> out, index_t B, index_t T_, whiten_params p,
                             const double* acc) {
  const double mu = acc[1] / (acc[0] + p.mean_eps);
  const double s = 1.0 / sqrt(acc_variance(acc, p.mean_eps, p.unbiased) + p.var_eps);
  const index_t n = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    const double w = (v(b, t) - mu) * s;
    out.set(b, t, p.shift_mean ? w : w + mu);
  }
}

/// d var / d v (the CPU's formula), from the accumulators.
template <class M, class O>
__global__ void var_grad(in2<M> mask, out2<O> out, index_t B, index_t T_, in2<O> v, double eps, bool unbiased,
                         const double* acc) {
  const double n = acc[0], D = n + eps, mu = acc[1] / D, sd = acc[3];
  const double bessel = unbiased ? n / (n - 1) : 1.0;
  const index_t N = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < N;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    const double m = mask(b, t);
    const double c = m != 0 ? v(b, t) - mu : 0.0;
    out.set(b, t, bessel / D * (2 * m * c - 2 * sd * m / D));
  }
}

/// out = m / denom (d mean / d v), denom = acc[0] + eps.
template <class M, class O>
__global__ void mean_grad(in2<M> mask, out2<O> out, index_t B, index_t T_, double eps, const double* acc) {
  const double denom = acc[0] + eps;
  const index_t N = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < N;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    out.set(b, t, mask(b, t) / denom);
  }
}

/// With mu from acc: acc[4] += sum cot, acc[5] += sum cot (v - mu) (every element, as the CPU).
template <class T, class C>
__global__ void cot_sums(in2<T> v, in2<C> cot, index_t T_, double eps, double* acc) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  const double mu = acc[1] / (acc[0] + eps);
  sums<2> s{{0.0, 0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    s.v[0] += cot(b, t);
    s.v[1] += cot(b, t) * (v(b, t) - mu);
  }
  block_accumulate<2>(s, acc + 4);
}

/// dvalues of masked_whiten (the CPU's masked_whiten_backward formula).
template <class T, class M, class O>
__global__ void whiten_backward_apply(in2<T> v, in2<M> mask, in2<O> cot, out2<O> out, index_t B, index_t T_,
                                      whiten_params p, const double* acc) {
  const double n = acc[0], D = n + p.mean_eps, mu = acc[1] / D, sd = acc[3];
  const double bessel = p.unbiased ? n / (n - 1) : 1.0;
  const double var = acc[2] / D * bessel;
  const double s = 1.0 / sqrt(var + p.var_eps), ds = -0.5 * s * s * s;
  const double G = acc[4], Gc = acc[5];
  const index_t N = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < N;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    const double m = mask(b, t);
    const double c = m != 0 ? v(b, t) - mu : 0.0;
    const double dvar = bessel / D * (2 * m * c - 2 * sd * m / D);
    const double dmu = m / D;
    double g = cot(b, t) * s - s * dmu * G + Gc * ds * dvar;
    if (!p.shift_mean) g += G * dmu;
    out.set(b, t, g);
  }
}

/// dvalues[b, t] = cot[b] m[b, t] / (count_b + eps).
template <class M, class O>
__global__ void mean_rows_grad(in2<M> mask, const O* cot, index_t cs, out2<O> out, index_t B, index_t T_, double eps,
                               const double* counts) {
  const index_t N = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < N;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    const double c = counts[b];
    out.set(b, t, c + eps > 0 ? static_cast<double>(cot[b * cs]) * mask(b, t) / (c + eps) : 0.0);
  }
}

/// The argument checks of the masked statistics.
template <class V, class M, class O>
void check_stat_args(const char* fn, const V& values, const M& mask, double eps, const O& dvalues) {
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_nonneg_param(eps, fn, "eps");
  rlhf::detail::require_output(fn, "dvalues", dvalues, "values", values);
}

/// Launches the moments (and centred sums when `centred`) into acc[0..4) (zeroed by the caller).
template <class T, class M>
void launch_moments(cuda_t tag, const char* fn, in2<T> v, in2<M> mask, index_t B, index_t T_, double eps, bool centred,
                    double* acc) {
  masked_moments<T, M><<<grid_bt(B, T_), block_threads, 0, tag.stream>>>(v, mask, T_, acc);
  check_launch(fn, "masked_moments");
  if (centred) {
    masked_centred<T, M><<<grid_bt(B, T_), block_threads, 0, tag.stream>>>(v, mask, T_, eps, acc);
    check_launch(fn, "masked_centred");
  }
}

/// Whitening of a device [B, T] array without a read-back (used inside the
/// advantage estimators): acc must hold 4 zeroed doubles; returns nothing,
/// the caller validates acc[0] >= 2 after its own read-back.
template <class T, class M, class O>
void whiten_async(cuda_t tag, const char* fn, in2<T> v, in2<M> mask, out2<O> out, index_t B, index_t T_,
                  const whiten_params& p, double* acc) {
  launch_moments(tag, fn, v, mask, B, T_, p.mean_eps, true, acc);
  whiten_apply<T, M, O><<<grid_1d(B * T_), block_threads, 0, tag.stream>>>(v, mask, out, B, T_, p, acc);
  check_launch(fn, "whiten_apply");
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::ops {

template <class T, class M>
double masked_sum(cuda_t tag, tensor_view<T, 2, device_space> v, tensor_view<M, 2, device_space> m) {
  constexpr const char* fn = "ops::masked_sum (cuda)";
  rlhf::detail::require_same_shape(fn, "mask", m, "values", v);
  namespace ck = cuda_kernels;
  ck::scratch acc(2, tag.stream, fn);
  ck::launch_moments(tag, fn, ck::in(v), ck::in(m), v.extent(0), v.extent(1), 0.0, false, acc.data());
  return acc.read()[1];
}

template <class M>
double mask_count(cuda_t tag, tensor_view<M, 2, device_space> m) {
  constexpr const char* fn = "ops::mask_count (cuda)";
  namespace ck = cuda_kernels;
  ck::scratch acc(2, tag.stream, fn);
  ck::launch_moments(tag, fn, ck::in(m), ck::in(m), m.extent(0), m.extent(1), 0.0, false, acc.data());
  return acc.read()[0];
}

template <class T, class M>
double masked_mean(cuda_t tag, tensor_view<T, 2, device_space> values, tensor_view<M, 2, device_space> mask,
                   double eps = 1e-8, out_dview<T, 2> dvalues = {}) {
  constexpr const char* fn = "ops::masked_mean (cuda)";
  cuda_kernels::check_stat_args(fn, values, mask, eps, dvalues);
  namespace ck = cuda_kernels;
  const index_t B = values.extent(0), T_ = values.extent(1);
  ck::scratch acc(2, tag.stream, fn);
  ck::launch_moments(tag, fn, ck::in(values), ck::in(mask), B, T_, eps, false, acc.data());
  if (!dvalues.null()) {
    ck::mean_grad<value_t<M>, value_t<T>><<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(
        ck::in(mask), ck::out(dvalues), B, T_, eps, acc.data());
    ck::check_launch(fn, "mean_grad");
  }
  const auto h = acc.read();
  if (!(h[0] > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  return h[1] / (h[0] + eps);
}

template <class T, class M>
masked_var_result masked_var(cuda_t tag, tensor_view<T, 2, device_space> values, tensor_view<M, 2, device_space> mask,
                             bool unbiased = true, double eps = 1e-8, out_dview<T, 2> dvalues = {}) {
  constexpr const char* fn = "ops::masked_var (cuda)";
  cuda_kernels::check_stat_args(fn, values, mask, eps, dvalues);
  namespace ck = cuda_kernels;
  const index_t B = values.extent(0), T_ = values.extent(1);
  ck::scratch acc(4, tag.stream, fn);
  ck::launch_moments(tag, fn, ck::in(values), ck::in(mask), B, T_, eps, true, acc.data());
  if (!dvalues.null()) {
    ck::var_grad<value_t<M>, value_t<T>><<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(
        ck::in(mask), ck::out(dvalues), B, T_, ck::in(values), eps, unbiased, acc.data());
    ck::check_launch(fn, "var_grad");
  }
  const auto h = acc.read();
  const double n = h[0];
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  if (unbiased && !(n > 1))
    rlhf::detail::fail(error_kind::empty, fn, "mask",
                       "has fewer than 2 valid elements: the unbiased variance is undefined");
  const double D = n + eps;
  return {h[2] / D * (unbiased ? n / (n - 1) : 1.0), h[1] / D};
}

template <class T, class M>
whiten_stats masked_whiten(cuda_t tag, tensor_view<T, 2, device_space> values, tensor_view<M, 2, device_space> mask,
                           const whiten_params& p, out_dview<T, 2> out) {
  constexpr const char* fn = "ops::masked_whiten (cuda)";
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_same_shape(fn, "out", out, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_nonneg_param(p.var_eps, fn, "var_eps");
  namespace ck = cuda_kernels;
  const index_t B = values.extent(0), T_ = values.extent(1);
  ck::scratch acc(4, tag.stream, fn);
  ck::whiten_async(tag, fn, ck::in(values), ck::in(mask), ck::out(out), B, T_, p, acc.data());
  const auto h = acc.read();
  const double n = h[0];
  if (!(n >= 2)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has fewer than 2 valid elements: cannot whiten");
  const double D = n + p.mean_eps;
  const double var = h[2] / D * (p.unbiased ? n / (n - 1) : 1.0);
  if (!std::isfinite(1.0 / std::sqrt(var + p.var_eps)))
    rlhf::detail::fail(error_kind::empty, fn, "values",
                       "has zero variance and var_eps = 0: the whitening is undefined");
  return {h[1] / D, var};
}

/// VJP of masked_mean_rows on the device.
template <class T, class M>
void masked_mean_rows_backward(cuda_t tag, tensor_view<M, 2, device_space> mask, double eps,
                               tensor_view<T, 1, device_space> cot, out_dview<T, 2> dvalues) {
  constexpr const char* fn = "ops::masked_mean_rows_backward (cuda)";
  rlhf::detail::require_same_shape(fn, "dvalues", dvalues, "mask", mask);
  rlhf::detail::require_extent(fn, "cot", cot, 0, mask.extent(0), "one cotangent per row");
  namespace ck = cuda_kernels;
  const index_t B = mask.extent(0), T_ = mask.extent(1);
  ck::scratch counts(static_cast<std::size_t>(B), tag.stream, fn);
  ck::row_sums<value_t<M>><<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(ck::in(mask), T_, counts.data());
  ck::check_launch(fn, "row_sums");
  ck::mean_rows_grad<value_t<M>, value_t<T>><<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(
      ck::in(mask), cot.data(), cot.stride(0), ck::out(dvalues), B, T_, eps, counts.data());
  ck::check_launch(fn, "mean_rows_grad");
  rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");
}

/// VJP of masked_whiten on the device (the CPU's formula).
template <class T, class M>
void masked_whiten_backward(cuda_t tag, tensor_view<T, 2, device_space> values, tensor_view<M, 2, device_space> mask,
                            const whiten_params& p, in_dview<T, 2> cot, out_dview<T, 2> dvalues) {
  constexpr const char* fn = "ops::masked_whiten_backward (cuda)";
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_same_shape(fn, "cot", cot, "values", values);
  rlhf::detail::require_same_shape(fn, "dvalues", dvalues, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  namespace ck = cuda_kernels;
  using V = value_t<T>;
  const index_t B = values.extent(0), T_ = values.extent(1);
  ck::scratch acc(6, tag.stream, fn);
  ck::launch_moments(tag, fn, ck::in(values), ck::in(mask), B, T_, p.mean_eps, true, acc.data());
  ck::cot_sums<V, V><<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(ck::in(values), ck::in(cot), T_,
                                                                               p.mean_eps, acc.data());
  ck::check_launch(fn, "cot_sums");
  ck::whiten_backward_apply<V, value_t<M>, V><<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(
      ck::in(values), ck::in(mask), ck::in(cot), ck::out(dvalues), B, T_, p, acc.data());
  ck::check_launch(fn, "whiten_backward_apply");
  const auto h = acc.read();
  if (!(h[0] > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  if (p.unbiased && !(h[0] > 1))
    rlhf::detail::fail(error_kind::empty, fn, "mask",
                       "has fewer than 2 valid elements: the unbiased variance is undefined");
}

/// Per-row masked means (out [B]) on the device; a row without a valid
/// element gives 0 (its denominator is eps); an all-empty mask is an error.
template <class T, class M>
void masked_mean_rows(cuda_t tag, tensor_view<T, 2, device_space> values, tensor_view<M, 2, device_space> mask,
                      double eps, out_dview<T, 1> out) {
  constexpr const char* fn = "ops::masked_mean_rows (cuda)";
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_nonempty(fn, "values", values);
  rlhf::detail::require_nonneg_param(eps, fn, "eps");
  rlhf::detail::require_out_extent(fn, "out", out, 0, values.extent(0), "one mean per row");
  namespace ck = cuda_kernels;
  const index_t B = values.extent(0), T_ = values.extent(1);
  ck::scratch rows(static_cast<std::size_t>(2 * B), tag.stream, fn);
  ck::masked_moments<value_t<T>, value_t<M>>
      <<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(ck::in(values), ck::in(mask), T_, rows.data(), true);
  ck::check_launch(fn, "masked_moments (rows)");
  const auto h = rows.read();
  std::vector<value_t<T>> res(static_cast<std::size_t>(B));
  double n = 0;
  for (index_t b = 0; b < B; ++b) {
    const double c = h[static_cast<std::size_t>(2 * b)], s = h[static_cast<std::size_t>(2 * b + 1)];
    n += c;
    res[static_cast<std::size_t>(b)] = static_cast<value_t<T>>(c + eps > 0 ? s / (c + eps) : 0.0);
  }
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element in any row");
  rlhf::detail::check_cuda(
      cudaMemcpy2D(out.data(), static_cast<std::size_t>(out.stride(0)) * sizeof(value_t<T>), res.data(),
                   sizeof(value_t<T>), sizeof(value_t<T>), static_cast<std::size_t>(B), cudaMemcpyHostToDevice),
      fn, "cudaMemcpy2D (row means)");
}

}  // namespace rlhf::ops

// ---- the small ops of the trainers, on the device (ops/masked.hpp) ----

namespace rlhf::cuda_kernels {

/// out[b * so] = acc[2 b + 1] (the per-row masked sums of masked_moments).
template <class O>
__global__ void take_row_sums(const double* acc, index_t B, O* out, index_t so) {
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<index_t>(gridDim.x) * blockDim.x)
    out[b * so] = static_cast<O>(acc[2 * b + 1]);
}

/// dvalues[b, t] = cot[b] m[b, t].
template <class M, class C, class O>
__global__ void row_broadcast(in2<M> mask, const C* cot, index_t sc, out2<O> dv, index_t B, index_t T_) {
  const index_t n = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    dv.set(b, t, static_cast<double>(cot[b * sc]) * mask(b, t));
  }
}

/// acc[0] += sum x^2 over grid_bt.
template <class T>
__global__ void sum_sq(in2<T> x, index_t T_, double* acc) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  sums<1> s{{0.0}};
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double v = x(b, t);
    s.v[0] += v * v;
  }
  block_accumulate<1>(s, acc);
}

/// out = 0 and last[b] = the largest valid t of row b (last starts at -1).
template <class M, class O>
__global__ void zero_and_last(in2<M> mask, out2<O> out, index_t B, index_t T_, int* last) {
  const index_t n = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    out.set(b, t, 0.0);
    if (mask(b, t) != 0) atomicMax(last + b, static_cast<int>(t));
  }
}

/// out[b, last[b]] = scores[b]; empty[0] += rows without a valid token.
template <class S, class O>
__global__ void put_last(const S* scores, index_t ss, const int* last, out2<O> out, index_t B, int* empty) {
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    if (last[b] < 0)
      atomicAdd(empty, 1);
    else
      out.set(b, last[b], static_cast<double>(scores[b * ss]));
  }
}

struct max_op {
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
};

/// acc[0] += sum m |e^a - e^b|, acc[1] += sum m; *mx = max |e^a - e^b| on valid
/// tokens (non-negative doubles order as their bits: an integer atomicMax).
template <class A, class Bv, class M>
__global__ void prob_diff_kernel(in2<A> a, in2<Bv> bb, in2<M> mask, index_t T_, double* acc, unsigned long long* mx) {
  const index_t b = blockIdx.x, t0 = static_cast<index_t>(blockIdx.y) * row_chunk;
  const index_t t1 = t0 + row_chunk < T_ ? t0 + row_chunk : T_;
  sums<2> s{{0.0, 0.0}};
  double m_local = 0;
  for (index_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const double m = mask(b, t);
    if (m == 0) continue;
    const double d = fabs(exp(a(b, t)) - exp(bb(b, t)));
    s.v[0] += m * d;
    s.v[1] += m;
    m_local = fmax(m_local, d);
  }
  block_accumulate<2>(s, acc);
  using reduce = cub::BlockReduce<double, block_threads>;
  __shared__ typename reduce::TempStorage tmp;
  const double top = reduce(tmp).Reduce(m_local, max_op{});
  if (threadIdx.x == 0) atomicMax(mx, static_cast<unsigned long long>(__double_as_longlong(top)));
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::ops {

/// ops::masked_sum_rows on the device: out[b] = sum_t m[b, t] v[b, t].
template <class T, class M>
void masked_sum_rows(cuda_t tag, tensor_view<T, 2, device_space> values, tensor_view<M, 2, device_space> mask,
                     out_dview<T, 1> out) {
  constexpr const char* fn = "ops::masked_sum_rows (cuda)";
  rlhf::detail::require_same_shape(fn, "mask", mask, "values", values);
  rlhf::detail::require_out_extent(fn, "out", out, 0, values.extent(0), "one sum per row");
  namespace ck = cuda_kernels;
  const index_t B = values.extent(0), T_ = values.extent(1);
  if (B == 0) return;
  ck::scratch rows(static_cast<std::size_t>(2 * B), tag.stream, fn);
  if (T_ > 0) {
    ck::masked_moments<value_t<T>, value_t<M>>
        <<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(ck::in(values), ck::in(mask), T_, rows.data(), true);
    ck::check_launch(fn, "masked_moments (rows)");
  }
  ck::take_row_sums<<<ck::grid_1d(B), ck::block_threads, 0, tag.stream>>>(rows.data(), B, out.data(), out.stride(0));
  ck::check_launch(fn, "take_row_sums");
}

/// VJP of masked_sum_rows on the device: dvalues[b, t] = cot[b] m[b, t].
template <class T, class M>
void masked_sum_rows_backward(cuda_t tag, tensor_view<M, 2, device_space> mask, tensor_view<T, 1, device_space> cot,
                              out_dview<T, 2> dvalues) {
  constexpr const char* fn = "ops::masked_sum_rows_backward (cuda)";
  rlhf::detail::require_same_shape(fn, "dvalues", dvalues, "mask", mask);
  rlhf::detail::require_extent(fn, "cot", cot, 0, mask.extent(0), "one cotangent per row");
  namespace ck = cuda_kernels;
  const index_t B = mask.extent(0), T_ = mask.extent(1);
  if (B * T_ == 0) return;
  ck::row_broadcast<<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(ck::in(mask), cot.data(), cot.stride(0),
                                                                               ck::out(dvalues), B, T_);
  ck::check_launch(fn, "row_broadcast");
}

/// ops::sum_squares on the device.
template <class T>
double sum_squares(cuda_t tag, tensor_view<T, 2, device_space> v) {
  constexpr const char* fn = "ops::sum_squares (cuda)";
  namespace ck = cuda_kernels;
  if (v.size() == 0) return 0.0;
  ck::scratch acc(1, tag.stream, fn);
  ck::sum_sq<<<ck::grid_bt(v.extent(0), v.extent(1)), ck::block_threads, 0, tag.stream>>>(ck::in(v), v.extent(1),
                                                                                          acc.data());
  ck::check_launch(fn, "sum_sq");
  return acc.read()[0];
}

/// ops::place_at_last_token on the device (a row without a valid token is an
/// `empty` error, found after the pass: the outputs then hold zeros there).
template <class T, class M>
void place_at_last_token(cuda_t tag, tensor_view<T, 1, device_space> scores, tensor_view<M, 2, device_space> mask,
                         out_dview<T, 2> out) {
  constexpr const char* fn = "ops::place_at_last_token (cuda)";
  rlhf::detail::require_extent(fn, "scores", scores, 0, mask.extent(0), "one score per row of the mask");
  rlhf::detail::require_same_shape(fn, "out", out, "mask", mask);
  namespace ck = cuda_kernels;
  const index_t B = mask.extent(0), T_ = mask.extent(1);
  if (B == 0) return;
  stream_buffer<int> last(static_cast<std::size_t>(B) + 1, tag.stream, fn);
  rlhf::detail::check_cuda(cudaMemsetAsync(last.data(), 0xff, static_cast<std::size_t>(B) * sizeof(int), tag.stream),
                           fn, "cudaMemsetAsync");
  rlhf::detail::check_cuda(cudaMemsetAsync(last.data() + B, 0, sizeof(int), tag.stream), fn, "cudaMemsetAsync");
  if (T_ > 0) {
    ck::zero_and_last<<<ck::grid_1d(B * T_), ck::block_threads, 0, tag.stream>>>(ck::in(mask), ck::out(out), B, T_,
                                                                                 last.data());
    ck::check_launch(fn, "zero_and_last");
  }
  ck::put_last<<<ck::grid_1d(B), ck::block_threads, 0, tag.stream>>>(scores.data(), scores.stride(0), last.data(),
                                                                     ck::out(out), B, last.data() + B);
  ck::check_launch(fn, "put_last");
  int empty = 0;
  rlhf::detail::check_cuda(cudaMemcpyAsync(&empty, last.data() + B, sizeof(int), cudaMemcpyDeviceToHost, tag.stream),
                           fn, "cudaMemcpyAsync");
  rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");
  if (empty > 0)
    rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has " + std::to_string(empty) + " empty response(s)");
}

/// ops::prob_diff on the device: max and mean of |exp(a) - exp(b)| on valid tokens.
template <class T, class U, class M>
prob_diff_stats prob_diff(cuda_t tag, tensor_view<T, 2, device_space> logp_a, tensor_view<U, 2, device_space> logp_b,
                          tensor_view<M, 2, device_space> mask) {
  constexpr const char* fn = "ops::prob_diff (cuda)";
  rlhf::detail::require_same_shape(fn, "mask", mask, "logp_a", logp_a);
  rlhf::detail::require_same_shape(fn, "logp_b", logp_b, "logp_a", logp_a);
  namespace ck = cuda_kernels;
  const index_t B = mask.extent(0), T_ = mask.extent(1);
  if (B * T_ == 0) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  ck::scratch acc(3, tag.stream, fn);  // acc[2]: the max, as bits
  ck::prob_diff_kernel<<<ck::grid_bt(B, T_), ck::block_threads, 0, tag.stream>>>(
      ck::in(logp_a), ck::in(logp_b), ck::in(mask), T_, acc.data(),
      reinterpret_cast<unsigned long long*>(acc.data() + 2));
  ck::check_launch(fn, "prob_diff");
  const auto h = acc.read();
  if (!(h[1] > 0)) rlhf::detail::fail(error_kind::empty, fn, "mask", "has no valid element");
  return prob_diff_stats{h[2], h[0] / h[1]};
}

}  // namespace rlhf::ops
