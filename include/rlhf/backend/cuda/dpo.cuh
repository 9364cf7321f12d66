// rlhf++ — the DPO family on the device: one thread per pair evaluates every
// weighted loss term with dpo::detail::pair_loss (the function the CPU
// loop calls), writes the per-pair outputs, and block sums (CUB) give the
// mean loss and the implicit-reward statistics. aot / aot_unpaired sort the
// batch's log-ratios: for them the B pairs are staged through the host and
// the CPU code runs (one copy each way).
#pragma once

#include "../../objectives/dpo.hpp"
#include "common.cuh"

namespace rlhf::dpo {

/// Optional device outputs; null views are skipped. Gradients are of the mean loss.
template <class T>
using dev_outputs = outputs<T, device_space>;

}  // namespace rlhf::dpo

namespace rlhf::cuda_kernels {

template <class T>
struct in1 {
  const T* p = nullptr;
  index_t s = 0;
  __device__ double operator()(index_t i) const { return static_cast<double>(p[i * s]); }
};
template <class T>
struct out1 {
  T* p = nullptr;
  index_t s = 0;
  __device__ void set(index_t i, double v) const {
    if (p) p[i * s] = static_cast<T>(v);
  }
};
template <class T, class S>
in1<std::remove_const_t<T>> in_1d(const tensor_view<T, 1, S>& v) {
  return {v.data(), v.null() ? 0 : v.stride(0)};
}
template <class T, class S>
out1<T> out_1d(const tensor_view<T, 1, S>& v) {
  return {v.data(), v.null() ? 0 : v.stride(0)};
}

template <class T>
__global__ void dpo_pairs(in1<T> c, in1<T> r, in1<T> rc, in1<T> rr, in1<T> lc, in1<T> lr, const dpo::weighted* terms,
                          int n_terms, index_t B, out1<T> losses, out1<T> crw, out1<T> rrw, out1<T> dc, out1<T> dr,
                          double* acc) {
  sums<4> s{{0.0, 0.0, 0.0, 0.0}};
  const double beta = terms[0].p.beta;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < B;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const double ci = c(i), ri = r(i), rci = rc(i), rri = rr(i);
    const double li_c = lc.p ? lc(i) : 1.0, li_r = lr.p ? lr(i) : 1.0;
    double l = 0, gc = 0, gr = 0;
    for (int k = 0; k < n_terms; ++k) {
      const auto t = dpo::detail::pair_loss(terms[k].p, ci, ri, rci, rri, li_c, li_r);
      l += terms[k].weight * t.loss;
      gc += terms[k].weight / static_cast<double>(B) * t.dc;
      gr += terms[k].weight / static_cast<double>(B) * t.dr;
    }
    const double cr = beta * (ci - rci), rj = beta * (ri - rri);
    losses.set(i, l);
    crw.set(i, cr);
    rrw.set(i, rj);
    dc.set(i, gc);
    dr.set(i, gr);
    s.v[0] += l;
    s.v[1] += cr;
    s.v[2] += rj;
    s.v[3] += cr > rj ? 1.0 : 0.0;
  }
  block_accumulate<4>(s, acc);
}

}  // namespace rlhf::cuda_kernels

namespace rlhf::dpo {

/// dpo::weighted_loss on device views (the CPU's contract and results).
template <class T>
summary weighted_loss(cuda_t tag, tensor_view<T, 1, device_space> chosen, in_dview<T, 1> rejected,
                      in_dview<T, 1> ref_chosen, in_dview<T, 1> ref_rejected, std::span<const weighted> terms,
                      dev_outputs<value_t<T>> out = {}, in_dview<T, 1> chosen_lengths = {},
                      in_dview<T, 1> rejected_lengths = {}) {
  constexpr const char* fn = "dpo::loss (cuda)";
  const auto needs = detail::check_args(tag, fn, chosen, rejected, ref_chosen, ref_rejected, terms, out);
  if (needs.need_lengths) detail::check_lengths(fn, chosen, chosen_lengths, rejected_lengths);
  const bool sorted = needs.sorted;
  using V = value_t<T>;
  const index_t B = chosen.extent(0);
  namespace ck = cuda_kernels;
  if (sorted) {
    // aot: a sort across the batch; the B pairs go through the host
    rlhf::detail::check_cuda(cudaStreamSynchronize(tag.stream), fn, "cudaStreamSynchronize");
    auto down = [&](const tensor_view<const V, 1, device_space>& v) {
      std::vector<V> h(static_cast<std::size_t>(v.null() ? 0 : B));
      if (!v.null())
        rlhf::detail::check_cuda(
            cudaMemcpy2D(h.data(), sizeof(V), v.data(), static_cast<std::size_t>(v.stride(0)) * sizeof(V), sizeof(V),
                         static_cast<std::size_t>(B), cudaMemcpyDeviceToHost),
            fn, "cudaMemcpy2D (to host)");
      return h;
    };
    const auto c = down(chosen), r = down(rejected), rc = down(ref_chosen), rr = down(ref_rejected);
    const auto lc = down(chosen_lengths), lr = down(rejected_lengths);
    std::vector<V> o[5];
    outputs<V> ho;
    tensor_view<V, 1>* slots[5] = {&ho.losses, &ho.chosen_rewards, &ho.rejected_rewards, &ho.dchosen, &ho.drejected};
    const tensor_view<V, 1, device_space>* dev[5] = {&out.losses, &out.chosen_rewards, &out.rejected_rewards,
                                                     &out.dchosen, &out.drejected};
    for (int k = 0; k < 5; ++k)
      if (!dev[k]->null()) {
        o[k].resize(static_cast<std::size_t>(B));
        *slots[k] = tensor_view<V, 1>(o[k].data(), {B});
      }
    auto hv = [&](const std::vector<V>& x) {
      return x.empty() ? tensor_view<const V, 1>{} : tensor_view<const V, 1>(x.data(), {B});
    };
    const summary s = weighted_loss(cpu, hv(c), hv(r), hv(rc), hv(rr), terms, ho, hv(lc), hv(lr));
    for (int k = 0; k < 5; ++k)
      if (!dev[k]->null())
        rlhf::detail::check_cuda(
            cudaMemcpy2D(dev[k]->data(), static_cast<std::size_t>(dev[k]->stride(0)) * sizeof(V), o[k].data(),
                         sizeof(V), sizeof(V), static_cast<std::size_t>(B), cudaMemcpyHostToDevice),
            fn, "cudaMemcpy2D (to device)");
    return s;
  }
  stream_buffer<weighted> d_terms(terms.size(), tag.stream, fn);
  d_terms.upload(terms.data(), terms.size(), fn);
  ck::scratch acc(4, tag.stream, fn);
  ck::dpo_pairs<V><<<ck::grid_1d(B), ck::block_threads, 0, tag.stream>>>(
      ck::in_1d(chosen), ck::in_1d(rejected), ck::in_1d(ref_chosen), ck::in_1d(ref_rejected), ck::in_1d(chosen_lengths),
      ck::in_1d(rejected_lengths), d_terms.data(), static_cast<int>(terms.size()), B, ck::out_1d(out.losses),
      ck::out_1d(out.chosen_rewards), ck::out_1d(out.rejected_rewards), ck::out_1d(out.dchosen),
      ck::out_1d(out.drejected), acc.data());
  ck::check_launch(fn, "dpo_pairs");
  const auto h = acc.read();
  const double nb = static_cast<double>(B);
  summary s{};
  s.loss = h[0] / nb;
  s.chosen_reward = h[1] / nb;
  s.rejected_reward = h[2] / nb;
  s.reward_margin = (h[1] - h[2]) / nb;
  s.reward_accuracy = h[3] / nb;
  if (!std::isfinite(s.loss))
    rlhf::detail::fail(error_kind::non_finite, fn, "chosen_logps",
                       "gives a non-finite loss (log-probabilities out of the range this loss type can represent)");
  return s;
}

/// One loss type on device views.
template <class T>
summary loss(cuda_t tag, tensor_view<T, 1, device_space> chosen, in_dview<T, 1> rejected, in_dview<T, 1> ref_chosen,
             in_dview<T, 1> ref_rejected, const params& p, dev_outputs<value_t<T>> out = {},
             in_dview<T, 1> chosen_lengths = {}, in_dview<T, 1> rejected_lengths = {}) {
  const weighted one[] = {{p, 1.0}};
  return weighted_loss(tag, chosen, rejected, ref_chosen, ref_rejected, std::span<const weighted>(one), out,
                       chosen_lengths, rejected_lengths);
}

}  // namespace rlhf::dpo
