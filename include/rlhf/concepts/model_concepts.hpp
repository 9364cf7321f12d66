// rlhf++ — what the trainers need from a user's models (docs/concepts.md).
//
// Every output is "viewable" (core/viewable.hpp): an rlhf::tensor, a
// tensor_view over the model's own host or device memory, an Eigen or
// xtensor object, a torch tensor — float or double (logits and hidden
// states also half / bfloat16 on the device). The trainer views it without a
// copy, and hands gradients back in the same element type and memory.
// `B` is the batch type: rlhf::basic_batch<M::token_type> (int32 unless the
// model declares `using token_type = std::int64_t;`).
//
// No-gradient outputs (the reference model, and the policy's old log-probs):
//   m.log_probs(b)      [B, T]    log pi(y_t | x, y_<t) at b.temperature
//   m.logits(b)         [B*T, V]  next-token logits, row i*T + t predicts y_t
//   m.hidden_states(b)  [B*T, H]  final hidden states (same rows), and
//   m.lm_head()         [V, H]    the LM-head weight: logits = h W^T
// A ReferenceModel gives at least one of the three; where it gives more, the
// trainer takes the hidden states (fused linear path: logits never built),
// then the logits, then the log-probs.
//
// A Policy is a ReferenceModel that also has
//   p.generate(prompt_batch, sampling, rng_t&) -> basic_rollout<token_type>
//   p.step()                                      optimizer step, clears grads
// and a forward with gradient, in one of two forms:
//   handle form (autograd engines): auto f = p.forward(b) returns a handle F
//   that keeps what the backward needs (the graph) and exposes the output:
//     f.log_probs()      -> p.backward(f, dlogp)           [, dentropy with f.entropy()]
//     f.logits()         -> p.backward_logits(f, dlogits)
//     f.hidden_states()  -> p.backward_hidden(f, dhidden, dweight)
//   stateless form (models that recompute): the no-gradient member, then
//     p.backward(b, dlogp) / p.backward_logits(b, dlogits) / p.backward_hidden(b, dhidden, dweight)
//     (and p.entropy(b) with p.backward(b, dlogp, dentropy) for an entropy bonus)
// Gradients are tensor_view<const E, 2, Space> with E and Space those of the
// output they belong to (dweight: those of lm_head()). The trainer calls
// backward once per forward, with the handle that forward returned; handles
// of several forwards may be alive at once (DPO: forward chosen, forward
// rejected, backward chosen, backward rejected).
//
//   RewardModel      r.score(b) -> [B] scores (std::vector<double> or viewable rank 1)
//   TokenRewardModel r.token_scores(b) -> [B, T]
//   ComponentRewardModel r.components(b) -> [K, B] (GDPO's per-component scores)
//   ValueFunction    v.values(b) -> [B, T]; v.backward(b, dv) or the handle form
//                    auto f = v.forward(b); f.values(); v.backward(f, dv); v.step()
//   BlendableFrom<R, P>  r.blend_from(const P&, double alpha)   reference updates
//   Checkpointable   m.save(std::ostream&) const; m.load(std::istream&)
//
// Each check_*() below turns a missing member into one static_assert with a
// sentence that names it (tests/compile_fail).
#pragma once

#include <concepts>
#include <istream>
#include <ostream>
#include <type_traits>
#include <vector>

#include "../core/viewable.hpp"
#include "batch.hpp"

namespace rlhf {

/// The batch type a model reads.
template <class M>
using batch_for = basic_batch<token_type_of_t<M>>;
template <class M>
using prompt_batch_for = basic_prompt_batch<token_type_of_t<M>>;
template <class M>
using rollout_for = basic_rollout<token_type_of_t<M>>;

/// The read-only gradient view that goes back for an output of type X.
template <class X>
using grad_view_t = tensor_view<const element_of_t<X>, 2, space_of_t<X>>;

// ---------------------------------------------------------------------------
// No-gradient outputs

template <class M, class B = batch_for<M>>
concept LogProbModel = requires(M& m, const B& b) {
  { m.log_probs(b) } -> viewable<2>;
};
template <class M, class B = batch_for<M>>
concept LogitsModel = requires(M& m, const B& b) {
  { m.logits(b) } -> viewable<2>;
};
template <class M, class B = batch_for<M>>
concept HiddenStateModel = requires(M& m, const B& b) {
  { m.hidden_states(b) } -> viewable<2>;
  { m.lm_head() } -> viewable<2>;
};
template <class M, class B = batch_for<M>>
concept ReferenceModel = LogProbModel<M, B> || LogitsModel<M, B> || HiddenStateModel<M, B>;

// ---------------------------------------------------------------------------
// The forward with gradient

/// Which output the policy's gradient flows through.
enum class model_path { log_probs, logits, hidden_states };

template <class P, class B = batch_for<P>>
concept HasForward = requires(P& p, const B& b) {
  p.forward(b);
};

template <class P, class B>
using handle_t = decltype(std::declval<P&>().forward(std::declval<const B&>()));

namespace detail {
// The types of the outputs (aliases rather than requires-parameters that name
// earlier parameters, which nvcc's front end does not take).
template <class X>
using lm_head_t = decltype(std::declval<X&>().lm_head());
template <class P, class B>
using hidden_t = decltype(std::declval<P&>().hidden_states(std::declval<const B&>()));
template <class P, class B>
using logits_t = decltype(std::declval<P&>().logits(std::declval<const B&>()));
template <class P, class B>
using log_probs_t = decltype(std::declval<P&>().log_probs(std::declval<const B&>()));
template <class P, class B>
using entropy_t = decltype(std::declval<P&>().entropy(std::declval<const B&>()));
template <class P, class B>
using values_t = decltype(std::declval<P&>().values(std::declval<const B&>()));
template <class F>
using f_hidden_t = decltype(std::declval<F&>().hidden_states());
template <class F>
using f_logits_t = decltype(std::declval<F&>().logits());
template <class F>
using f_log_probs_t = decltype(std::declval<F&>().log_probs());
template <class F>
using f_values_t = decltype(std::declval<F&>().values());

// the stateless forms
template <class P, class B>
concept stateless_hidden = HiddenStateModel<P, B> &&
    requires(P& p, const B& b, grad_view_t<hidden_t<P, B>> dh, grad_view_t<lm_head_t<P>> dw) {
  p.backward_hidden(b, dh, dw);
};
template <class P, class B>
concept stateless_logits = LogitsModel<P, B> && requires(P& p, const B& b, grad_view_t<logits_t<P, B>> d) {
  p.backward_logits(b, d);
};
template <class P, class B>
concept stateless_logp = LogProbModel<P, B> && requires(P& p, const B& b, grad_view_t<log_probs_t<P, B>> d) {
  p.backward(b, d);
};
// the handle forms
template <class P, class F>
concept handle_hidden = requires(P& p, F& f) {
  { f.hidden_states() } -> viewable<2>;
  { p.lm_head() } -> viewable<2>;
}
&&requires(P& p, F& f, grad_view_t<f_hidden_t<F>> dh, grad_view_t<lm_head_t<P>> dw) { p.backward_hidden(f, dh, dw); };
template <class P, class F>
concept handle_logits = requires(F& f) {
  { f.logits() } -> viewable<2>;
}
&&requires(P& p, F& f, grad_view_t<f_logits_t<F>> d) { p.backward_logits(f, d); };
template <class P, class F>
concept handle_logp = requires(F& f) {
  { f.log_probs() } -> viewable<2>;
}
&&requires(P& p, F& f, grad_view_t<f_log_probs_t<F>> d) { p.backward(f, d); };

template <class P, class B>
consteval bool has_grad_path() {
  if constexpr (HasForward<P, B>) {
    using F = handle_t<P, B>;
    return handle_hidden<P, F> || handle_logits<P, F> || handle_logp<P, F>;
  } else {
    return stateless_hidden<P, B> || stateless_logits<P, B> || stateless_logp<P, B>;
  }
}
}  // namespace detail

/// The path of the policy's gradient (hidden states, then logits, then log-probs).
template <class P, class B = batch_for<P>>
consteval model_path grad_path() {
  if constexpr (HasForward<P, B>) {
    using F = handle_t<P, B>;
    if constexpr (detail::handle_hidden<P, F>)
      return model_path::hidden_states;
    else if constexpr (detail::handle_logits<P, F>)
      return model_path::logits;
    else
      return model_path::log_probs;
  } else {
    if constexpr (detail::stateless_hidden<P, B>)
      return model_path::hidden_states;
    else if constexpr (detail::stateless_logits<P, B>)
      return model_path::logits;
    else
      return model_path::log_probs;
  }
}

/// The path of a no-gradient call (hidden states, then logits, then log-probs).
template <class M, class B = batch_for<M>>
consteval model_path nograd_path() {
  if constexpr (HiddenStateModel<M, B>)
    return model_path::hidden_states;
  else if constexpr (LogitsModel<M, B>)
    return model_path::logits;
  else
    return model_path::log_probs;
}

template <class P, class B = batch_for<P>>
concept Policy = ReferenceModel<P, B> && detail::has_grad_path<P, B>() &&
    requires(P& p, const basic_prompt_batch<typename B::token_type>& x, const sampling& s, rng_t& g) {
  { p.generate(x, s, g) } -> std::convertible_to<basic_rollout<typename B::token_type>>;
  p.step();
};

template <class P, class B = batch_for<P>>
concept LogitsPolicy = Policy<P, B> &&(grad_path<P, B>() == model_path::logits);
template <class P, class B = batch_for<P>>
concept HiddenStatePolicy = Policy<P, B> &&(grad_path<P, B>() == model_path::hidden_states);

/// A log-prob policy that also gives its entropy (for the entropy bonus):
/// f.entropy() and p.backward(f, dlogp, dentropy), or p.entropy(b) and
/// p.backward(b, dlogp, dentropy).
namespace detail {
template <class P, class B>
consteval bool gives_entropy() {
  if constexpr (HasForward<P, B>) {
    using F = handle_t<P, B>;
    if constexpr (requires(F & f) {
                    { f.entropy() } -> viewable<2>;
                    f.log_probs();
                  })
      return requires(P & p, F & f, grad_view_t<f_log_probs_t<F>> d) { p.backward(f, d, d); };
    else
      return false;
  } else {
    if constexpr (requires(P & p, const B& b) {
                    { p.entropy(b) } -> viewable<2>;
                    p.log_probs(b);
                  })
      return requires(P & p, const B& b, grad_view_t<log_probs_t<P, B>> d) { p.backward(b, d, d); };
    else
      return false;
  }
}
}  // namespace detail

template <class P, class B = batch_for<P>>
concept EntropyPolicy = Policy<P, B> &&(grad_path<P, B>() == model_path::log_probs) && detail::gives_entropy<P, B>();

// ---------------------------------------------------------------------------
// Reward and value models

template <class R, class B = batch_for<R>>
concept RewardModel = requires(R& r, const B& b) {
  {r.score(b)};
  requires std::convertible_to<decltype(r.score(b)), std::vector<double>> || viewable<decltype(r.score(b)), 1>;
};

/// A reward model that also scores each response by K components (GDPO's
/// reward keys: correctness, format, length, ...): components(b) -> [K, B].
template <class R, class B = batch_for<R>>
concept ComponentRewardModel = RewardModel<R, B> && requires(R& r, const B& b) {
  { r.components(b) } -> viewable<2>;
};

template <class R, class B = batch_for<R>>
concept TokenRewardModel = RewardModel<R, B> && requires(R& r, const B& b) {
  { r.token_scores(b) } -> viewable<2>;
};

namespace detail {
template <class V, class B>
consteval bool value_backward() {
  if constexpr (requires(V & v, const B& b) { v.forward(b); }) {
    using F = handle_t<V, B>;
    if constexpr (requires(F & f) {
                    { f.values() } -> viewable<2>;
                  })
      return requires(V & v, F & f, grad_view_t<f_values_t<F>> d) { v.backward(f, d); };
    else
      return false;
  } else if constexpr (requires(V & v, const B& b) {
                         { v.values(b) } -> viewable<2>;
                       }) {
    return requires(V & v, const B& b, grad_view_t<values_t<V, B>> d) { v.backward(b, d); };
  } else {
    return false;
  }
}
}  // namespace detail

template <class V, class B = batch_for<V>>
concept ValueFunction = requires(V& v, const B& b) {
  { v.values(b) } -> viewable<2>;
  v.step();
}
&&detail::value_backward<V, B>();

template <class R, class P>
concept BlendableFrom = requires(R& r, const P& p, double alpha) {
  r.blend_from(p, alpha);
};

template <class M>
concept Checkpointable = requires(M& m, const M& cm, std::ostream& o, std::istream& i) {
  cm.save(o);
  m.load(i);
};

// ---------------------------------------------------------------------------
// One readable error per missing member (instead of a template backtrace).

template <class M, class B = batch_for<M>>
consteval bool check_reference_model() {
  static_assert(
      requires(M & m, const B& b) { m.log_probs(b); } || requires(M & m, const B& b) { m.logits(b); } ||
          requires(M & m, const B& b) { m.hidden_states(b); },
      "rlhf: a ReferenceModel needs log_probs(const rlhf::batch&) returning the [B, T] log-probabilities "
      "of the responses, or logits(batch) [B*T, V], or hidden_states(batch) [B*T, H] with lm_head() "
      "[V, H] (docs/concepts.md)");
  static_assert(
      !requires(M & m, const B& b) { m.log_probs(b); } || LogProbModel<M, B> || LogitsModel<M, B> ||
          HiddenStateModel<M, B>,
      "rlhf: ReferenceModel::log_probs(batch) must return something the library can view as [B, T]: "
      "an rlhf::tensor or tensor_view of float or double, an Eigen matrix, an xtensor (docs/concepts.md)");
  static_assert(
      !requires(M & m, const B& b) { m.hidden_states(b); } || HiddenStateModel<M, B> || LogProbModel<M, B> ||
          LogitsModel<M, B>,
      "rlhf: a model with hidden_states(batch) needs lm_head() returning the [V, H] LM-head weight, both "
      "viewable (docs/concepts.md)");
  return true;
}

template <class P, class B = batch_for<P>>
consteval bool check_policy() {
  check_reference_model<P, B>();
  using Tok = typename B::token_type;
  static_assert(
      requires(P & p, const basic_prompt_batch<Tok>& x, const sampling& s, rng_t& g) { p.generate(x, s, g); },
      "rlhf: a Policy needs generate(const rlhf::prompt_batch&, const rlhf::sampling&, rlhf::rng_t&) "
      "returning an rlhf::rollout (docs/concepts.md)");
  static_assert(detail::has_grad_path<P, B>(),
                "rlhf: a Policy needs a backward: backward(const rlhf::batch&, rlhf::tensor_view<const E, 2> dlogp) "
                "to accumulate dL/dlogp (E: the element type log_probs returns), or backward_logits(batch, dlogits), "
                "or backward_hidden(batch, dhidden, dweight); with forward(batch) -> F, the same members take the "
                "handle F (docs/concepts.md)");
  static_assert(
      requires(P & p) { p.step(); },
      "rlhf: a Policy needs step() to apply its optimizer and clear its gradients (docs/concepts.md)");
  constexpr bool members = requires(P & p, const basic_prompt_batch<Tok>& x, const sampling& s, rng_t& g) {
    p.generate(x, s, g);
    p.step();
  };
  static_assert(!members || !ReferenceModel<P, B> || !detail::has_grad_path<P, B>() || Policy<P, B>,
                "rlhf: a Policy's generate() must return an rlhf::rollout (rlhf::basic_rollout<token_type>) "
                "(docs/concepts.md)");
  return true;
}

template <class R, class B = batch_for<R>>
consteval bool check_reward_model() {
  static_assert(
      requires(R & r, const B& b) { r.score(b); },
      "rlhf: a RewardModel needs score(const rlhf::batch&) returning one score per sequence "
      "(std::vector<double> or a viewable [B]) (docs/concepts.md)");
  static_assert(
      !requires(R & r, const B& b) { r.score(b); } || RewardModel<R, B>,
      "rlhf: RewardModel::score must return std::vector<double> or a viewable rank-1 tensor "
      "(docs/concepts.md)");
  return true;
}

template <class V, class B = batch_for<V>>
consteval bool check_value_function() {
  static_assert(
      requires(V & v, const B& b) { v.values(b); },
      "rlhf: a ValueFunction needs values(const rlhf::batch&) returning [B, T] values (docs/concepts.md)");
  static_assert(
      requires(V & v, const B& b) { v.forward(b); } ||
          requires(V & v, const B& b, grad_view_t<detail::values_t<V, B>> g) { v.backward(b, g); },
      "rlhf: a ValueFunction needs backward(const rlhf::batch&, rlhf::tensor_view<const E, 2> dvalues) "
      "(E: the element type values returns), or forward(batch) -> F and backward(F&, dvalues) "
      "(docs/concepts.md)");
  static_assert(
      requires(V & v) { v.step(); }, "rlhf: a ValueFunction needs step() (docs/concepts.md)");
  static_assert(ValueFunction<V, B>,
                "rlhf: ValueFunction::values must return something the library can view as [B, T] (an rlhf::tensor "
                "or tensor_view, Eigen, xtensor), and backward must take its gradient (docs/concepts.md)");
  return true;
}

/// A stand-in for "no value function" (critic-free estimators).
struct no_value_function {};

}  // namespace rlhf
