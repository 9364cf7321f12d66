// A host test model seen as a CUDA engine: every output the trainers read
// (log-probs, logits, hidden states, the LM head, values) is a device tensor,
// and every gradient comes back in device memory. The device trainer tests
// run the trainers with backend rlhf::cuda on these and compare with the
// same host models on rlhf::cpu. Each member exists only when the wrapped
// model has its host counterpart (so the concepts see the same paths).
#pragma once

#include <rlhf/cuda.hpp>
#include <type_traits>
#include <utility>

namespace device_test {

using rlhf::index_t;

template <class T>
rlhf::device_tensor<T, 2> upload(rlhf::tensor_view<const T, 2> h) {
  rlhf::tensor<T, 2> c(h.shape());  // contiguous first (the host view may be strided)
  for (index_t i = 0; i < h.extent(0); ++i)
    for (index_t j = 0; j < h.extent(1); ++j) c(i, j) = h(i, j);
  rlhf::device_tensor<T, 2> d(h.shape());
  rlhf::detail::check_cuda(
      cudaMemcpy(d.data(), c.data(), static_cast<std::size_t>(c.size()) * sizeof(T), cudaMemcpyHostToDevice),
      "device_test", "upload");
  return d;
}
template <class T>
rlhf::tensor<T, 2> download(rlhf::tensor_view<const T, 2, rlhf::device_space> d) {
  rlhf::tensor<T, 2> h(d.shape());
  rlhf::detail::check_cuda(cudaDeviceSynchronize(), "device_test", "synchronize");
  rlhf::detail::check_cuda(
      cudaMemcpy(h.data(), d.data(), static_cast<std::size_t>(d.size()) * sizeof(T), cudaMemcpyDeviceToHost),
      "device_test", "download");
  return h;
}
template <class X>
auto upload_of(const X& x) {
  const auto v = rlhf::as_view(x);
  using T = typename decltype(v)::value_type;
  return upload<T>(v);
}
template <class X>
using elem_of = typename decltype(rlhf::as_view(std::declval<const X&>()))::value_type;

template <class M>
class device_model {
 public:
  using token_type = rlhf::token_type_of_t<M>;
  using batch = rlhf::basic_batch<token_type>;
  M m;

  template <class... A>
  explicit device_model(A&&... a) : m(std::forward<A>(a)...) {}

  // Policy
  auto generate(const rlhf::basic_prompt_batch<token_type>& x, const rlhf::sampling& s,
                rlhf::rng_t& g) const requires requires {
    m.generate(x, s, g);
  }
  { return m.generate(x, s, g); }
  void step() requires requires { m.step(); }
  { m.step(); }

  // the stateless forms
  const auto& log_probs(const batch& b) requires requires { m.log_probs(b); }
  { return keep(logp_out, m.log_probs(b)); }
  template <class G>
  requires requires(M& q, const batch& b, rlhf::tensor_view<const G, 2> g) { q.backward(b, g); }
  void backward(const batch& b, rlhf::tensor_view<const G, 2, rlhf::device_space> g) {
    const auto h = download<G>(g);
    m.backward(b, h.view());
  }
  const auto& logits(const batch& b) requires requires { m.logits(b); }
  { return keep(logits_out, m.logits(b)); }
  template <class G>
  requires requires(M& q, const batch& b, rlhf::tensor_view<const G, 2> g) { q.backward_logits(b, g); }
  void backward_logits(const batch& b, rlhf::tensor_view<const G, 2, rlhf::device_space> dz) {
    const auto h = download<G>(dz);
    m.backward_logits(b, h.view());
  }
  const auto& hidden_states(const batch& b) requires requires { m.hidden_states(b); }
  { return keep(hidden_out, m.hidden_states(b)); }
  const auto& lm_head() requires requires { m.lm_head(); }
  { return keep(head_out, m.lm_head()); }

  // the handle form: the host handle and the device copy of its output
  template <class Inner, class T>
  struct logp_handle {
    Inner inner;
    rlhf::device_tensor<T, 2> lp;
    rlhf::tensor_view<const T, 2, rlhf::device_space> log_probs() const { return lp.view(); }
  };
  template <class Inner, class T>
  struct hidden_handle {
    Inner inner;
    rlhf::device_tensor<T, 2> h;
    rlhf::tensor_view<const T, 2, rlhf::device_space> hidden_states() const { return h.view(); }
  };
  auto forward(const batch& b) requires requires { m.forward(b); }
  {
    auto f = m.forward(b);
    using Inner = decltype(f);
    if constexpr (requires { f.log_probs(); }) {
      auto d = upload_of(f.log_probs());
      return logp_handle<Inner, elem_of<decltype(f.log_probs())>>{std::move(f), std::move(d)};
    } else {
      auto d = upload_of(f.hidden_states());
      return hidden_handle<Inner, elem_of<decltype(f.hidden_states())>>{std::move(f), std::move(d)};
    }
  }
  template <class Inner, class T, class G>
  void backward(logp_handle<Inner, T>& f, rlhf::tensor_view<const G, 2, rlhf::device_space> g) {
    const auto h = download<G>(g);
    m.backward(f.inner, h.view());
  }
  template <class Inner, class T, class G>
  void backward_hidden(hidden_handle<Inner, T>& f, rlhf::tensor_view<const G, 2, rlhf::device_space> dh,
                       rlhf::tensor_view<const G, 2, rlhf::device_space> dw) {
    const auto hh = download<G>(dh), hw = download<G>(dw);
    m.backward_hidden(f.inner, hh.view(), hw.view());
  }

  // ValueFunction (stateless form)
  const auto& values(const batch& b) requires requires { m.values(b); }
  { return keep(values_out, m.values(b)); }

  // Blendable (reference updates) and Checkpointable
  template <class O>
  requires requires(M& q, const O& o) { q.blend_from(o, 0.5); }
  void blend_from(const device_model<O>& o, double a) { m.blend_from(o.m, a); }
  void save(std::ostream& os) const requires requires { m.save(os); }
  { m.save(os); }
  void load(std::istream& in) requires requires { m.load(in); }
  { m.load(in); }

 private:
  /// One output buffer per member and element type (each stays valid until
  /// the same member is called again, as the trainers require).
  enum which { logp_out, logits_out, hidden_out, head_out, values_out, n_out };
  template <class X>
  auto& keep(which w, const X& x) {
    using T = elem_of<X>;
    auto& slot = [&]() -> auto& {
      if constexpr (std::is_same_v<T, float>)
        return f_[w];
      else
        return d_[w];
    }
    ();
    slot = upload_of(x);
    return slot;
  }
  rlhf::device_tensor<float, 2> f_[n_out];
  rlhf::device_tensor<double, 2> d_[n_out];
};

}  // namespace device_test
