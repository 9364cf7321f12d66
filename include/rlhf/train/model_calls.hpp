// rlhf++ — the boundary between the trainers and a user's models: every call
// into a model, and every view of what it returned.
//
// A model's outputs are viewed where they are (core/viewable.hpp). The
// [B, T] objectives run in the trainer's working precision W and memory
// space Space (its backend tag's: host for rlhf::cpu, device for
// rlhf::cuda); logits and hidden states are processed in the model's own
// element type E (the fused kernels accumulate in float or double), where
// they are (they must be in the trainer's space: they are never copied),
// and gradients go back in E and in the model's space. Where E == W and the
// spaces agree nothing is copied; otherwise the [B, T] (or [B*T]) vectors
// are converted / copied (memory.hpp: bring) and the bytes are counted in
// step_profile.
//
// What a model returns must stay valid until the trainer calls the same
// member of the same model again (a model that reuses one output buffer is
// fine). Handles returned by forward() are kept until their backward.
#pragma once

// the device trainers' header (backend/cuda/train.cuh) must come before this one
#define RLHF_TRAINERS_INCLUDED

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../concepts/model_concepts.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../ops/fused_linear_params.hpp"
#include "../ops/fused_logits.hpp"
#include "../ops/logits.hpp"
#include "memory.hpp"

namespace rlhf::train {

/// Where a step's time went, and what crossed the model boundary (the
/// `BM_trainer_step` counters). Not part of the metrics records (those hold
/// no wall-clock time, so a resumed run writes the same lines).
struct step_profile {
  double total_s = 0;              ///< the whole step
  double model_s = 0;              ///< inside the user's models (generate, forward, backward, step, score)
  double ops_s = 0;                ///< inside the library's ops
  std::size_t boundary_bytes = 0;  ///< bytes converted between the models' outputs / gradients and the ops
  std::size_t gather_bytes = 0;    ///< minibatch rows gathered into the trainer's reused buffers
  std::size_t batch_bytes = 0;     ///< the batches' masks and labels copied to the ops' memory (device trainers)
  [[nodiscard]] double overhead_s() const noexcept { return total_s - model_s - ops_s; }
};

namespace detail {

/// Adds the wall time of f() to `acc`.
template <class F>
decltype(auto) timed(double& acc, F&& f) {
  struct guard {
    double& acc;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    ~guard() { acc += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
  } g{acc};
  return f();
}

/// Runs one trainer step: the profile is reset and timed, and when the step
/// throws, every piece of `state` gets its value from before the step back
/// (the data cursor, the random engine, ...) and `models` (a model_rollback)
/// gives the models it kept their state back.
template <class F, class Models, class... State>
auto guarded_step(step_profile& prof, F&& f, Models& models, bool keep_models, State&... state) {
  const auto t0 = std::chrono::steady_clock::now();
  prof = {};
  auto saved = std::make_tuple(state...);
  models.begin(keep_models);
  try {
    auto r = f();
    models.begin(keep_models);  // nothing kept past the step
    prof.total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  } catch (const std::exception& e) {
    std::tie(state...) = std::move(saved);
    if (const std::string lost = models.restore(); !lost.empty())
      rlhf::detail::fail(error_kind::param, "train::step", "rollback",
                         std::string(e.what()) + "; and these models could not be given their state back: " + lost);
    throw;
  } catch (...) {
    std::tie(state...) = std::move(saved);
    (void)models.restore();
    throw;
  }
}

/// Holds what a model returned (guaranteed copy elision: no move needed).
template <class R>
struct held {
  R value;
  template <class F>
  explicit held(F&& f) : value(f()) {}
};

template <class X>
using view_t = decltype(rlhf::as_view(std::declval<X&>()));

/// The view of what f() returns, keeping a returned temporary alive (an
/// owning tensor returned by value) and only viewing a returned reference.
template <class R>
class kept {
  using T = std::remove_cvref_t<R>;
  static constexpr bool by_ref = std::is_lvalue_reference_v<R>;
  using view_type = decltype(rlhf::as_view(std::declval<std::remove_reference_t<R>&>()));

 public:
  template <class F>
  view_type set(F&& f) {
    own_.reset();
    if constexpr (by_ref) {
      v_ = rlhf::as_view(f());
    } else {
      own_.emplace(std::forward<F>(f));
      v_ = rlhf::as_view(own_->value);
    }
    return v_;
  }
  [[nodiscard]] view_type view() const noexcept { return v_; }
  void clear() { own_.reset(); }

 private:
  std::optional<held<T>> own_;
  view_type v_{};
};

/// Adds a boundary crossing (memory.hpp: bring) to the step's boundary bytes.
template <class X, class Space, class Tag, class E, std::size_t R, class S1>
tensor_view<const X, R, Space> boundary(Tag be, tensor_view<E, R, S1> x, boundary_buf<X, R, Space>& buf,
                                        step_profile& prof) {
  return bring<X, Space>(be, x, buf, prof.boundary_bytes);
}

/// The element type the log-probs / entropy of E logits are computed in:
/// E itself for float and double, float for half and bfloat16.
template <class E>
using row_elem_t = std::conditional_t<std::is_floating_point_v<E>, E, float>;

/// Logits and hidden states are processed where they are: in the trainer's space.
template <class Space, class V>
constexpr void require_space() {
  static_assert(std::is_same_v<typename V::space, Space>,
                "rlhf: logits / hidden states / the LM head must be in the trainer's memory space (never copied): a "
                "device model needs the experiment's backend rlhf::cuda, a host model rlhf::cpu (docs/cuda.md)");
}

template <class B>
void check_rows(const char* fn, const char* what, index_t rows, const B& b) {
  if (rows != b.size() * b.length())
    rlhf::detail::fail(error_kind::shape, fn, what,
                       "has " + std::to_string(rows) + " rows; expected one per response token (B*T = " +
                           std::to_string(b.size() * b.length()) + ")");
}

/// The per-row outputs of the logits and hidden-state paths, in element
/// type E and memory space Space: log-probs and entropy [B*T], seen as [B, T].
template <class E, class Space>
struct row_outputs {
  work_t<E, 1, Space> logp, entropy;
  void resize(index_t n) {
    if (logp.size() != n) {
      logp.resize({n});
      entropy.resize({n});
    }
  }
  tensor_view<const E, 2, Space> logp_2d(index_t B, index_t T) const { return {logp.data(), {B, T}}; }
  tensor_view<const E, 2, Space> entropy_2d(index_t B, index_t T) const { return {entropy.data(), {B, T}}; }
};

/// The device kernels do not check labels: the trainer checks the batch's
/// tokens (host memory) against the vocabulary before a device launch.
template <class Tag, class B>
void check_labels(const char* fn, const B& b, index_t V) {
  if constexpr (!is_host_backend_v<Tag>) {
    const auto* y = b.responses.data();
    for (index_t i = 0; i < b.size() * b.length(); ++i)
      if (y[i] < 0 || static_cast<long long>(y[i]) >= static_cast<long long>(V))
        rlhf::detail::fail(error_kind::shape, fn, "responses",
                           "holds " + std::to_string(static_cast<long long>(y[i])) + " at [" +
                               std::to_string(i / b.length()) + ", " + std::to_string(i % b.length()) +
                               "], outside the vocabulary [0, " + std::to_string(V) + ")");
  }
}

/// Log-probs (and entropy) from logits [B*T, V] of element type E.
template <class Tag, class E, class Space, class Tok, class O, class B>
void logits_rows(Tag be, tensor_view<E, 2, Space> logits, tensor_view<const Tok, 1, Space> labels, const B& b,
                 row_outputs<O, Space>& out, double& ops_s) {
  check_rows("train: model logits", "logits", logits.extent(0), b);
  check_labels<Tag>("train: model logits", b, logits.extent(1));
  out.resize(logits.extent(0));
  timed(ops_s, [&] {
    ops::logprobs_entropy(be, logits, labels, out.logp.view(), out.entropy.view(), tensor_view<O, 1, Space>{},
                          ops::logits_params{b.temperature});
  });
}

/// Log-probs (and entropy) from hidden states [B*T, H] and the LM head [V, H].
template <class Tag, class E, class EW, class Space, class Tok, class O, class B>
void hidden_rows(Tag be, tensor_view<E, 2, Space> hidden, tensor_view<EW, 2, Space> weight,
                 tensor_view<const Tok, 1, Space> labels, const B& b, row_outputs<O, Space>& out, double& ops_s) {
  static_assert(
      requires { ops::fused_linear_impl<Tag>::available; },
      "rlhf: a HiddenStatePolicy / HiddenStateModel uses the fused linear path: #include "
      "<rlhf/ops/fused_linear.hpp> (Eigen; rlhf::cpu) or <rlhf/backend/cuda/train.cuh> (rlhf::cuda) "
      "before instantiating the trainer (docs/concepts.md)");
  static_assert(std::is_same_v<value_t<E>, value_t<EW>>,
                "rlhf: hidden_states() and lm_head() must have the same element type");
  check_rows("train: model hidden_states", "hidden_states", hidden.extent(0), b);
  check_labels<Tag>("train: model hidden_states", b, weight.extent(0));
  out.resize(hidden.extent(0));
  ops::fused_linear_params fp;
  fp.logits.temperature = b.temperature;
  timed(ops_s, [&] {
    ops::fused_linear_impl<Tag>::logprobs(be, tensor_view<const value_t<E>, 2, Space>(hidden),
                                          tensor_view<const value_t<E>, 2, Space>(weight), labels, out.logp.view(),
                                          out.entropy.view(), fp);
  });
}

/// The objective of a given gradient (the trainers' hidden-state backward):
/// row i contributes dL/dlogp_i = g[i] and dL/dH_i = gh[i] (gh may be null).
/// A plain functor so that both backends run it (the device one on the GPU).
template <class G>
struct given_gradient {
  const G* g = nullptr;
  const G* gh = nullptr;
  RLHF_HD ops::token_terms operator()(index_t i, double, double) const {
    return ops::token_terms{0.0, static_cast<double>(g[i]), gh ? static_cast<double>(gh[i]) : 0.0};
  }
};

/// The LM head of a hidden-state model, viewed (a reference or a view: the
/// weight itself, never a copy).
template <class M>
auto head_view(M& m) {
  using R = decltype(m.lm_head());
  static_assert(std::is_lvalue_reference_v<R> || is_tensor_view<std::remove_cvref_t<R>>::value,
                "rlhf: lm_head() must return a reference to the LM-head weight or a tensor_view of it, not a copy "
                "(docs/concepts.md)");
  decltype(auto) w = m.lm_head();
  return rlhf::as_view(w);
}

/// The [B, T] log-probs and entropy of a logits or hidden-state output `v`
/// of model m: the rows in the model's row type, then in precision W.
template <model_path Path, class Tag, class V, class M, class B, class O, class W, class Space>
void rows_of(Tag be, V v, M& m, const B& b, const batch_mirror<typename B::token_type, Space>& bm,
             row_outputs<O, Space>& rows, boundary_buf<W, 2, Space>& conv_logp, boundary_buf<W, 2, Space>& conv_h,
             tensor_view<const W, 2, Space>& logp, tensor_view<const W, 2, Space>& entropy, step_profile& prof) {
  require_space<Space, V>();
  if constexpr (Path == model_path::logits) {
    logits_rows(be, v, bm.labels(), b, rows, prof.ops_s);
  } else {
    const auto w = head_view(m);
    require_space<Space, decltype(w)>();
    hidden_rows(be, v, w, bm.labels(), b, rows, prof.ops_s);
  }
  logp = boundary<W, Space>(be, rows.logp_2d(b.size(), b.length()), conv_logp, prof);
  entropy = boundary<W, Space>(be, rows.entropy_2d(b.size(), b.length()), conv_h, prof);
}

/// The [B, T] log-probs (and entropy) of a batch under a model, with no
/// gradient (the reference model; the policy's old log-probs), in precision
/// W and memory space Space.
template <class W, class M, class B, class Space = host_space>
class nograd_eval {
  static constexpr model_path path = nograd_path<M, B>();
  static decltype(auto) call(M& m, const B& b) {
    if constexpr (path == model_path::hidden_states)
      return m.hidden_states(b);
    else if constexpr (path == model_path::logits)
      return m.logits(b);
    else
      return m.log_probs(b);
  }
  using ret_t = decltype(call(std::declval<M&>(), std::declval<const B&>()));
  using view_type = view_t<std::remove_reference_t<ret_t>>;
  using elem_t = typename view_type::value_type;
  using row_t = row_elem_t<elem_t>;
  using Tok = typename B::token_type;

 public:
  static constexpr bool gives_entropy = path != model_path::log_probs;

  /// Runs the model; the views stay valid until the next run().
  template <class Tag>
  void run(Tag be, M& m, const B& b, const batch_mirror<Tok, Space>& bm, step_profile& prof) {
    auto v = timed(prof.model_s, [&] { return out_.set([&]() -> decltype(auto) { return call(m, b); }); });
    if constexpr (path == model_path::log_probs) {
      rlhf::detail::require_same_shape("train: model log_probs", "log_probs", v, "responses", b.responses.view());
      logp_ = boundary<W, Space>(be, v, conv_logp_, prof);
    } else {
      rows_of<path>(be, v, m, b, bm, rows_, conv_logp_, conv_h_, logp_, entropy_, prof);
    }
  }
  [[nodiscard]] tensor_view<const W, 2, Space> logp() const noexcept { return logp_; }
  /// Null unless the path gives it (logits, hidden states).
  [[nodiscard]] tensor_view<const W, 2, Space> entropy() const noexcept { return entropy_; }

 private:
  kept<ret_t> out_;
  row_outputs<row_t, Space> rows_;
  boundary_buf<W, 2, Space> conv_logp_, conv_h_;
  tensor_view<const W, 2, Space> logp_{}, entropy_{};
};

/// One forward of the policy with gradient, kept until its backward. Handle
/// form: the model's forward() result; stateless form: the batch.
template <class W, class P, class B, class Space = host_space>
class grad_pass {
  static constexpr bool handle = HasForward<P, B>;
  static constexpr model_path path = grad_path<P, B>();
  using Tok = typename B::token_type;

  // handle form: F = forward(b); stateless form: the no-gradient member's result
  static decltype(auto) call(P& p, const B& b) {
    if constexpr (handle)
      return p.forward(b);
    else if constexpr (path == model_path::hidden_states)
      return p.hidden_states(b);
    else if constexpr (path == model_path::logits)
      return p.logits(b);
    else
      return p.log_probs(b);
  }
  using call_t = decltype(call(std::declval<P&>(), std::declval<const B&>()));
  struct no_handle {};
  using handle_type = std::conditional_t<handle, call_t, no_handle>;

  template <class F>
  static decltype(auto) output_of(F& f) {
    if constexpr (path == model_path::hidden_states)
      return f.hidden_states();
    else if constexpr (path == model_path::logits)
      return f.logits();
    else
      return f.log_probs();
  }
  template <class Q, bool H>
  struct out_type {
    using type = call_t;
  };
  template <class Q>
  struct out_type<Q, true> {
    using type = decltype(output_of(std::declval<std::remove_reference_t<call_t>&>()));
  };
  using out_ret_t = typename out_type<P, handle>::type;
  using out_view_t = view_t<std::remove_reference_t<out_ret_t>>;
  using elem_t = typename out_view_t::value_type;
  /// the model's memory space (its gradients go back there)
  using model_space = typename out_view_t::space;
  using row_t = row_elem_t<elem_t>;

  template <class Q, bool E>
  struct entropy_type {
    using type = const tensor<W, 2>&;
  };
  template <class Q>
  struct entropy_type<Q, true> {
    using type = decltype(std::declval<Q&>().entropy(std::declval<const B&>()));
  };
  template <class Q>
  requires HasForward<Q, B>
  struct entropy_type<Q, true> {
    using type = decltype(std::declval<std::remove_reference_t<call_t>&>().entropy());
  };
  using entropy_ret_t = typename entropy_type<P, EntropyPolicy<P, B>>::type;

 public:
  /// The forward; `want_entropy` asks a log-prob policy for its entropy.
  template <class Tag>
  void forward(Tag be, P& p, const B& b, const batch_mirror<Tok, Space>& bm, bool want_entropy, step_profile& prof) {
    b_ = &b;
    bm_ = &bm;
    if constexpr (handle) {
      handle_.reset();
      timed(prof.model_s, [&] { handle_.emplace([&]() -> decltype(auto) { return p.forward(b); }); });
      out_.set([&]() -> decltype(auto) { return output_of(handle_->value); });
    } else {
      timed(prof.model_s, [&] { out_.set([&]() -> decltype(auto) { return call(p, b); }); });
    }
    auto v = out_.view();
    has_entropy_ = false;
    if constexpr (path == model_path::log_probs) {
      rlhf::detail::require_same_shape("train: policy forward", "log_probs", v, "responses", b.responses.view());
      logp_ = boundary<W, Space>(be, v, conv_logp_, prof);
      if constexpr (EntropyPolicy<P, B>) {
        if (want_entropy) {
          auto h = timed(prof.model_s, [&] {
            return h_.set([&]() -> decltype(auto) {
              if constexpr (handle)
                return handle_->value.entropy();
              else
                return p.entropy(b);
            });
          });
          rlhf::detail::require_same_shape("train: policy forward", "entropy", h, "responses", b.responses.view());
          entropy_ = boundary<W, Space>(be, h, conv_h_, prof);
          has_entropy_ = true;
        }
      }
    } else {
      rows_of<path>(be, v, p, b, bm, rows_, conv_logp_, conv_h_, logp_, entropy_, prof);
      has_entropy_ = true;
    }
  }

  [[nodiscard]] tensor_view<const W, 2, Space> logp() const noexcept { return logp_; }
  [[nodiscard]] tensor_view<const W, 2, Space> entropy() const noexcept { return entropy_; }
  [[nodiscard]] bool has_entropy() const noexcept { return has_entropy_; }

  /// dL/dlogp (and dL/dH when not null) back through the model, in its own
  /// element type and memory, through the handle its forward returned.
  template <class Tag>
  void backward(Tag be, P& p, tensor_view<const W, 2, Space> dlogp, tensor_view<const W, 2, Space> dentropy,
                step_profile& prof) {
    const B& b = *b_;
    if constexpr (path == model_path::log_probs) {
      using E = elem_t;
      const auto g = boundary<E, model_space>(be, dlogp, conv_g_, prof);
      const auto gh = dentropy.null() ? tensor_view<const E, 2, model_space>{}
                                      : boundary<E, model_space>(be, dentropy, conv_gh_, prof);
      bool done = false;
      if constexpr (EntropyPolicy<P, B>) {
        if (!gh.null()) {
          timed(prof.model_s, [&] { p.backward(target(), g, gh); });
          done = true;
        }
      }
      if (!done) timed(prof.model_s, [&] { p.backward(target(), g); });
    } else {
      // the row gradients in the rows' type, where the logits are
      using G = row_t;
      using E = elem_t;
      const auto g = boundary<G, Space>(be, dlogp, conv_rg_, prof);
      const auto gh =
          dentropy.null() ? tensor_view<const G, 2, Space>{} : boundary<G, Space>(be, dentropy, conv_rgh_, prof);
      const index_t N = b.size() * b.length();
      const tensor_view<const G, 1, Space> g1(g.data(), {N});
      const tensor_view<const G, 1, Space> gh1 =
          gh.null() ? tensor_view<const G, 1, Space>{} : tensor_view<const G, 1, Space>(gh.data(), {N});
      const auto v = out_.view();
      if constexpr (path == model_path::logits) {
        dlogits_.resize(v.shape());
        timed(prof.ops_s, [&] {
          ops::logprobs_entropy_backward(be, v, bm_->labels(), g1, gh1, dlogits_.view(),
                                         ops::logits_params{b.temperature});
        });
        timed(prof.model_s, [&] { p.backward_logits(target(), tensor_view<const E, 2, Space>(dlogits_.view())); });
      } else {
        const auto w = head_view(p);
        dhidden_.resize(v.shape());
        dweight_.resize(w.shape());
        ops::fused_linear_params fp;
        fp.logits.temperature = b.temperature;
        timed(prof.ops_s, [&] {
          // the given gradient through the chunks: dZ = softmax backward, dX = dZ W, dW = dZ^T X
          ops::fused_linear_impl<Tag>::objective(
              be, tensor_view<const E, 2, Space>(v), tensor_view<const E, 2, Space>(w), bm_->labels(),
              given_gradient<G>{g1.data(), gh1.null() ? nullptr : gh1.data()}, dhidden_.view(), dweight_.view(),
              tensor_view<G, 1, Space>{}, tensor_view<G, 1, Space>{}, fp);
        });
        timed(prof.model_s, [&] {
          p.backward_hidden(target(), tensor_view<const E, 2, Space>(dhidden_.view()),
                            tensor_view<const E, 2, Space>(dweight_.view()));
        });
      }
    }
    out_.clear();
    h_.clear();
    if constexpr (handle) handle_.reset();
  }

 private:
  decltype(auto) target() {
    if constexpr (handle)
      return (handle_->value);
    else
      return (*b_);
  }

  const B* b_ = nullptr;
  const batch_mirror<Tok, Space>* bm_ = nullptr;
  std::optional<held<handle_type>> handle_;
  kept<out_ret_t> out_;
  kept<entropy_ret_t> h_;
  row_outputs<row_t, Space> rows_;
  boundary_buf<W, 2, Space> conv_logp_, conv_h_;
  boundary_buf<elem_t, 2, model_space> conv_g_, conv_gh_;
  boundary_buf<row_t, 2, Space> conv_rg_, conv_rgh_;
  work_t<elem_t, 2, Space> dlogits_, dhidden_, dweight_;
  tensor_view<const W, 2, Space> logp_{}, entropy_{};
  bool has_entropy_ = false;
};

/// The value function's forward (with gradient) and backward, in precision W.
template <class W, class V, class B, class Space = host_space>
class value_pass {
  static constexpr bool handle = requires(V & v, const B& b) { v.forward(b); };
  static decltype(auto) call(V& v, const B& b) {
    if constexpr (handle)
      return v.forward(b);
    else
      return v.values(b);
  }
  using call_t = decltype(call(std::declval<V&>(), std::declval<const B&>()));
  struct no_handle {};
  using handle_type = std::conditional_t<handle, call_t, no_handle>;
  template <class Q, bool H>
  struct out_type {
    using type = call_t;
  };
  template <class Q>
  struct out_type<Q, true> {
    using type = decltype(std::declval<std::remove_reference_t<call_t>&>().values());
  };
  using out_ret_t = typename out_type<V, handle>::type;
  using out_view_t = view_t<std::remove_reference_t<out_ret_t>>;
  using elem_t = typename out_view_t::value_type;
  using model_space = typename out_view_t::space;

 public:
  template <class Tag>
  void forward(Tag be, V& v, const B& b, step_profile& prof) {
    b_ = &b;
    if constexpr (handle) {
      handle_.reset();
      timed(prof.model_s, [&] { handle_.emplace([&]() -> decltype(auto) { return v.forward(b); }); });
      out_.set([&]() -> decltype(auto) { return handle_->value.values(); });
    } else {
      timed(prof.model_s, [&] { out_.set([&]() -> decltype(auto) { return v.values(b); }); });
    }
    const auto vv = out_.view();
    rlhf::detail::require_same_shape("train: value forward", "values", vv, "responses", b.responses.view());
    values_ = boundary<W, Space>(be, vv, conv_, prof);
  }
  [[nodiscard]] tensor_view<const W, 2, Space> values() const noexcept { return values_; }
  template <class Tag>
  void backward(Tag be, V& v, tensor_view<const W, 2, Space> dv, step_profile& prof) {
    const auto g = boundary<elem_t, model_space>(be, dv, conv_g_, prof);
    timed(prof.model_s, [&] {
      if constexpr (handle)
        v.backward(handle_->value, g);
      else
        v.backward(*b_, g);
    });
    out_.clear();
    if constexpr (handle) handle_.reset();
  }

 private:
  const B* b_ = nullptr;
  std::optional<held<handle_type>> handle_;
  kept<out_ret_t> out_;
  boundary_buf<W, 2, Space> conv_;
  boundary_buf<elem_t, 2, model_space> conv_g_;
  tensor_view<const W, 2, Space> values_{};
};

/// A value function's no-gradient values (the critic's old values), in precision W.
template <class W, class V, class B, class Space = host_space>
class value_eval {
  using ret_t = decltype(std::declval<V&>().values(std::declval<const B&>()));

 public:
  template <class Tag>
  void run(Tag be, V& v, const B& b, step_profile& prof) {
    const auto vv = timed(prof.model_s, [&] { return out_.set([&]() -> decltype(auto) { return v.values(b); }); });
    rlhf::detail::require_same_shape("train: value function", "values", vv, "responses", b.responses.view());
    values_ = boundary<W, Space>(be, vv, conv_, prof);
  }
  [[nodiscard]] tensor_view<const W, 2, Space> values() const noexcept { return values_; }

 private:
  kept<ret_t> out_;
  boundary_buf<W, 2, Space> conv_;
  tensor_view<const W, 2, Space> values_{};
};

}  // namespace detail
}  // namespace rlhf::train
