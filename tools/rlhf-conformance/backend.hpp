// rlhf-conformance — running an op on the CPU or, with --backend cuda, on
// the device.
//
// A handler writes its op call once, as a generic lambda of (tag, map):
//   on_backend(c, [&](auto tag, auto& d) { return ppo::policy_loss(tag, d(lp), d(old), ..., d.out(g)); });
// On the CPU, tag = rlhf::cpu and d is the identity. With --backend cuda
// (a runner built by nvcc: main.cu), tag = rlhf::cuda and d copies each input
// view to the device (contiguous) and each output view's device buffer back
// into it after the call. Ops without a device implementation run on the
// CPU and mark the case "not on the device" (c.on_device = false).
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "runner.hpp"

#ifdef RLHF_CONFORMANCE_CUDA
#  include <rlhf/backend/cuda/advantage.cuh>
#  include <rlhf/backend/cuda/dpo.cuh>
#  include <rlhf/backend/cuda/kl.cuh>
#  include <rlhf/backend/cuda/logits.cuh>
#  include <rlhf/backend/cuda/objectives.cuh>
#  include <rlhf/backend/cuda/variants.cuh>
#endif

namespace rlhf_conformance {

struct host_map {
  template <class V>
  V operator()(V v) const {
    return v;
  }
  template <class V>
  V out(V v) const {
    return v;
  }
  template <class O>
  O outputs(O o) const {
    return o;
  }
  void finish() {}
};

#ifdef RLHF_CONFORMANCE_CUDA
struct device_map {
  std::vector<std::shared_ptr<void>> keep;
  std::vector<std::function<void()>> back;

  template <class T, std::size_t R>
  static std::vector<std::remove_const_t<T>> gather(const rlhf::tensor_view<T, R>& v) {
    std::vector<std::remove_const_t<T>> h;
    h.reserve(static_cast<std::size_t>(v.size()));
    if constexpr (R == 1) {
      for (index_t i = 0; i < v.extent(0); ++i) h.push_back(v(i));
    } else {
      for (index_t i = 0; i < v.extent(0); ++i)
        for (index_t j = 0; j < v.extent(1); ++j) h.push_back(v(i, j));
    }
    return h;
  }
  template <class T, std::size_t R>
  rlhf::tensor_view<const std::remove_const_t<T>, R, rlhf::device_space> operator()(const rlhf::tensor_view<T, R>& v) {
    using U = std::remove_const_t<T>;
    if (v.null()) return {};
    const auto h = gather(v);
    auto buf = std::make_shared<rlhf::device_buffer<U>>(h.size());
    if (!h.empty()) buf->copy_from_host(h.data(), h.size());
    keep.push_back(buf);
    return {buf->data(), v.shape()};
  }
  template <class T, std::size_t R>
  rlhf::tensor_view<T, R, rlhf::device_space> out(const rlhf::tensor_view<T, R>& v) {
    if (v.null()) return {};
    const auto h = gather(v);  // the current contents (accumulating outputs)
    auto buf = std::make_shared<rlhf::device_buffer<T>>(h.size());
    if (!h.empty()) buf->copy_from_host(h.data(), h.size());
    keep.push_back(buf);
    back.push_back([buf, v] {
      std::vector<T> h2(buf->size());
      if (!h2.empty()) buf->copy_to_host(h2.data(), h2.size());
      std::size_t k = 0;
      if constexpr (R == 1) {
        for (index_t i = 0; i < v.extent(0); ++i) v(i) = h2[k++];
      } else {
        for (index_t i = 0; i < v.extent(0); ++i)
          for (index_t j = 0; j < v.extent(1); ++j) v(i, j) = h2[k++];
      }
    });
    return {buf->data(), v.shape()};
  }
  template <class T>
  rlhf::adv::dev_outputs<T> outputs(const rlhf::adv::outputs<T>& o) {
    return {out(o.advantages), out(o.returns)};
  }
  template <class T>
  rlhf::dpo::dev_outputs<T> outputs(const rlhf::dpo::outputs<T>& o) {
    return {out(o.losses), out(o.chosen_rewards), out(o.rejected_rewards), out(o.dchosen), out(o.drejected)};
  }
  void finish() {
    rlhf::detail::check_cuda(cudaDeviceSynchronize(), "conformance", "synchronize");
    for (auto& f : back) f();
  }
};
#endif

/// Runs f(tag, map) on the selected backend; returns what f returns.
template <class T, class F>
decltype(auto) on_backend(ctx<T>& c, F&& f) {
#ifdef RLHF_CONFORMANCE_CUDA
  if (use_cuda) {
    device_map d;
    if constexpr (std::is_void_v<decltype(f(rlhf::cpu, std::declval<host_map&>()))>) {
      f(rlhf::cuda, d);
      d.finish();
      return;
    } else {
      auto r = f(rlhf::cuda, d);
      d.finish();
      return r;
    }
  }
#endif
  (void)c;
  host_map h;
  return f(rlhf::cpu, h);
}

/// An op with no device implementation: runs on the CPU; the case is not a device check.
template <class T>
void cpu_only(ctx<T>& c) {
  if (use_cuda) c.on_device = false;
}

}  // namespace rlhf_conformance
