// rlhf++ — loss aggregation (ops/aggregate.hpp) on the device.
//
// One block per row reduces the row's masked sum and valid count in double
// (shared memory); the B row results come back to the host, where the rules
// of every mode (ops::detail::agg_finish, shared with the CPU backend) give
// the value and the row weights; a second kernel writes the per-token
// weights d loss / d loss_mat.
#pragma once

#ifndef __CUDACC__
#  error "rlhf/backend/cuda/*.cuh must be compiled by nvcc; include <rlhf/cuda.hpp> from a .cu file"
#endif

#include <vector>

#include "../../cuda.hpp"
#include "../../ops/aggregate.hpp"

namespace rlhf::cuda_kernels {

template <class T, class M>
__global__ void row_sums(const T* L, const M* m, index_t B, index_t T_, index_t ls0, index_t ls1, index_t ms0,
                         index_t ms1, double* sum, double* count) {
  __shared__ double s_sum[256], s_cnt[256];
  const index_t b = blockIdx.x;
  double s = 0, c = 0;
  for (index_t t = threadIdx.x; t < T_; t += blockDim.x) {
    const double mk = static_cast<double>(m[b * ms0 + t * ms1]);
    c += mk;
    if (mk != 0) s += mk * static_cast<double>(L[b * ls0 + t * ls1]);
  }
  s_sum[threadIdx.x] = s;
  s_cnt[threadIdx.x] = c;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      s_sum[threadIdx.x] += s_sum[threadIdx.x + w];
      s_cnt[threadIdx.x] += s_cnt[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    sum[b] = s_sum[0];
    count[b] = s_cnt[0];
  }
}

template <class T, class M>
__global__ void row_weights(const M* m, const double* row_w, T* out, index_t B, index_t T_, index_t ms0, index_t ms1,
                            index_t os0, index_t os1) {
  const index_t n = B * T_;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / T_, t = i % T_;
    out[b * os0 + t * os1] = static_cast<T>(static_cast<double>(m[b * ms0 + t * ms1]) * row_w[b]);
  }
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::ops {

/// ops::aggregate on device views (loss_mat and mask in device memory);
/// dloss_mat (device, optional) receives the per-token weights.
template <class T, class M>
double aggregate(cuda_t tag, tensor_view<T, 2, device_space> loss_mat, tensor_view<M, 2, device_space> mask,
                 const agg_params& p, tensor_view<value_t<T>, 2, device_space> dloss_mat = {}) {
  constexpr const char* fn = "ops::aggregate (cuda)";
  rlhf::detail::require_same_shape(fn, "loss_mask", mask, "loss_mat", loss_mat);
  rlhf::detail::require_nonempty(fn, "loss_mat", loss_mat);
  rlhf::detail::require_output(fn, "dloss_mat", dloss_mat, "loss_mat", loss_mat);
  const index_t B = loss_mat.extent(0), T_ = loss_mat.extent(1);
  device_buffer<double> d_sum(static_cast<std::size_t>(B)), d_cnt(static_cast<std::size_t>(B));
  cuda_kernels::row_sums<value_t<T>, value_t<M>><<<static_cast<unsigned>(B), 256, 0, tag.stream>>>(
      loss_mat.data(), mask.data(), B, T_, loss_mat.stride(0), loss_mat.stride(1), mask.stride(0), mask.stride(1),
      d_sum.data(), d_cnt.data());
  rlhf::detail::check_cuda(cudaGetLastError(), fn, "row_sums launch");
  std::vector<double> sum(static_cast<std::size_t>(B)), cnt(static_cast<std::size_t>(B));
  rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "synchronize");
  d_sum.copy_to_host(sum.data(), sum.size());
  d_cnt.copy_to_host(cnt.data(), cnt.size());
  // the rules of every mode, shared with the CPU backend
  std::vector<double> w;
  const double value = detail::agg_finish(sum, cnt, T_, p, w, fn);
  if (!dloss_mat.null()) {
    device_buffer<double> d_w(static_cast<std::size_t>(B));
    d_w.copy_from_host(w.data(), w.size());
    const index_t n_el = B * T_;
    cuda_kernels::row_weights<value_t<T>, value_t<M>>
        <<<static_cast<unsigned>(n_el / 256 + 1 < 4096 ? n_el / 256 + 1 : 4096), 256, 0, tag.stream>>>(
            mask.data(), d_w.data(), dloss_mat.data(), B, T_, mask.stride(0), mask.stride(1), dloss_mat.stride(0),
            dloss_mat.stride(1));
    rlhf::detail::check_cuda(cudaGetLastError(), fn, "row_weights launch");
    rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "synchronize");
  }
  return value;
}

}  // namespace rlhf::ops
