// rlhf++ — KL estimators on the device: the same formula (math/kl.hpp,
// RLHF_HD) as the CPU loop, one thread per element, grid-stride.
#pragma once

#ifndef __CUDACC__
#  error "rlhf/backend/cuda/*.cuh must be compiled by nvcc; include <rlhf/cuda.hpp> from a .cu file"
#endif

#include "../../core/args.hpp"
#include "../../cuda.hpp"
#include "../../kl/estimators.hpp"
#include "../../math/kl.hpp"

namespace rlhf::cuda_kernels {

template <class T>
__global__ void kl_estimate(const T* logp, const T* ref, T* kl, T* dkl, index_t n, index_t cols, index_t s0, index_t s1,
                            index_t r0, index_t r1, index_t k0, index_t k1, index_t d0, index_t d1, kl_params p) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t b = i / cols, t = i % cols;
    const auto k =
        math::kl_token(static_cast<double>(logp[b * s0 + t * s1]), static_cast<double>(ref[b * r0 + t * r1]), p);
    if (kl) kl[b * k0 + t * k1] = static_cast<T>(k.value);
    if (dkl) dkl[b * d0 + t * d1] = static_cast<T>(k.dlogp);
  }
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::kl {

/// kl::estimate on device views: the same contract as the CPU overload.
template <class T>
void estimate(cuda_t tag, tensor_view<T, 2, device_space> logp, tensor_view<const value_t<T>, 2, device_space> ref_logp,
              const kl_params& p, tensor_view<value_t<T>, 2, device_space> kl_out,
              tensor_view<value_t<T>, 2, device_space> dkl_dlogp = {}) {
  constexpr const char* fn = "kl::estimate (cuda)";
  detail::require_same_shape(fn, "ref_logp", ref_logp, "logp", logp);
  detail::require_nonempty(fn, "logp", logp);
  detail::require_output(fn, "kl", kl_out, "logp", logp);
  detail::require_output(fn, "dkl_dlogp", dkl_dlogp, "logp", logp);
  check_params(p, fn);
  const index_t n = logp.size(), cols = logp.extent(1);
  const int threads = 256;
  const int blocks = static_cast<int>(n / threads + 1 < 4096 ? n / threads + 1 : 4096);
  cuda_kernels::kl_estimate<value_t<T>><<<blocks, threads, 0, tag.stream>>>(
      logp.data(), ref_logp.data(), kl_out.data(), dkl_dlogp.data(), n, cols, logp.stride(0), logp.stride(1),
      ref_logp.stride(0), ref_logp.stride(1), kl_out.null() ? 0 : kl_out.stride(0),
      kl_out.null() ? 0 : kl_out.stride(1), dkl_dlogp.null() ? 0 : dkl_dlogp.stride(0),
      dkl_dlogp.null() ? 0 : dkl_dlogp.stride(1), p);
  detail::check_cuda(cudaGetLastError(), fn, "kernel launch");
}

}  // namespace rlhf::kl
