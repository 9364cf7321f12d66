// rlhf++ — what the trainers need from a user's models.
//
//   ReferenceModel  m.log_probs(batch) -> tensor<double, 2>          [B, T] log pi(y_t | x, y_<t)
//   Policy          a ReferenceModel that also
//                     p.generate(prompt_batch, sampling, rng_t&) -> rollout
//                     p.backward(batch, tensor_view<const double, 2> dlogp)   accumulate dL/dlogp
//                     p.step()                                         optimizer step, clears grads
//   RewardModel     r.score(batch) -> std::vector<double>             [B] sequence scores
//   ValueFunction   v.values(batch) -> tensor<double, 2>              [B, T]
//                   v.backward(batch, tensor_view<const double, 2> dv); v.step()
// Refinements, detected with `if constexpr`:
//   EntropyPolicy   p.entropy(batch) -> tensor<double, 2> and
//                   p.backward(batch, dlogp, dentropy)                 enables the entropy bonus
//   LogitsPolicy    p.logits(batch) -> tensor<double, 2>              [B*T, V] rows of next-token logits
//                   p.backward_logits(batch, tensor_view<const double, 2> dlogits)
//                   -> the library computes log-probs and entropy (ops/logits.hpp)
//   TokenRewardModel r.token_scores(batch) -> tensor<double, 2>       [B, T] per-token rewards
//   BlendableFrom<R, P>  r.blend_from(const P&, double alpha)         theta <- (1-a) theta + a theta_P
//                                                                     (alpha = 1: copy) — reference updates
//   Checkpointable  m.save(std::ostream&) const; m.load(std::istream&)
//
// Each check_*() below turns a missing member into one static_assert with a
// sentence that names it (tests/compile_fail).
#pragma once

#include <concepts>
#include <istream>
#include <ostream>
#include <vector>

#include "batch.hpp"

namespace rlhf {

template <class M>
concept ReferenceModel = requires(M& m, const batch& b) {
  { m.log_probs(b) } -> std::convertible_to<tensor<double, 2>>;
};

template <class P>
concept Policy = ReferenceModel<P> &&
                 requires(P& p, const batch& b, const prompt_batch& x, const sampling& s, rng_t& g,
                          tensor_view<const double, 2> dlogp) {
                   { p.generate(x, s, g) } -> std::convertible_to<rollout>;
                   p.backward(b, dlogp);
                   p.step();
                 };

template <class P>
concept EntropyPolicy = Policy<P> && requires(P& p, const batch& b, tensor_view<const double, 2> d) {
  { p.entropy(b) } -> std::convertible_to<tensor<double, 2>>;
  p.backward(b, d, d);
};

template <class P>
concept LogitsPolicy = Policy<P> && requires(P& p, const batch& b, tensor_view<const double, 2> d) {
  { p.logits(b) } -> std::convertible_to<tensor<double, 2>>;
  p.backward_logits(b, d);
};

template <class R>
concept RewardModel = requires(R& r, const batch& b) {
  { r.score(b) } -> std::convertible_to<std::vector<double>>;
};

template <class R>
concept TokenRewardModel = RewardModel<R> && requires(R& r, const batch& b) {
  { r.token_scores(b) } -> std::convertible_to<tensor<double, 2>>;
};

template <class V>
concept ValueFunction = requires(V& v, const batch& b, tensor_view<const double, 2> d) {
  { v.values(b) } -> std::convertible_to<tensor<double, 2>>;
  v.backward(b, d);
  v.step();
};

template <class R, class P>
concept BlendableFrom = requires(R& r, const P& p, double alpha) { r.blend_from(p, alpha); };

template <class M>
concept Checkpointable = requires(M& m, const M& cm, std::ostream& o, std::istream& i) {
  cm.save(o);
  m.load(i);
};

/// One readable error per missing member (instead of a template backtrace).
template <class M>
consteval bool check_reference_model() {
  static_assert(requires(M& m, const batch& b) { m.log_probs(b); },
                "rlhf: a ReferenceModel needs log_probs(const rlhf::batch&) returning the [B, T] log-probabilities "
                "of the responses (docs/concepts.md)");
  static_assert(!requires(M& m, const batch& b) { m.log_probs(b); } || ReferenceModel<M>,
                "rlhf: ReferenceModel::log_probs(batch) must return something convertible to "
                "rlhf::tensor<double, 2> (docs/concepts.md)");
  return true;
}

template <class P>
consteval bool check_policy() {
  check_reference_model<P>();
  static_assert(requires(P& p, const prompt_batch& x, const sampling& s, rng_t& g) { p.generate(x, s, g); },
                "rlhf: a Policy needs generate(const rlhf::prompt_batch&, const rlhf::sampling&, rlhf::rng_t&) "
                "returning an rlhf::rollout (docs/concepts.md)");
  static_assert(requires(P& p, const batch& b, tensor_view<const double, 2> g) { p.backward(b, g); },
                "rlhf: a Policy needs backward(const rlhf::batch&, rlhf::tensor_view<const double, 2> dlogp) "
                "to accumulate dL/dlogp (docs/concepts.md)");
  static_assert(requires(P& p) { p.step(); },
                "rlhf: a Policy needs step() to apply its optimizer and clear its gradients (docs/concepts.md)");
  constexpr bool members = requires(P& p, const batch& b, const prompt_batch& x, const sampling& s, rng_t& g,
                                    tensor_view<const double, 2> d) {
    p.generate(x, s, g);
    p.backward(b, d);
    p.step();
  };
  static_assert(!members || !ReferenceModel<P> || Policy<P>,
                "rlhf: a Policy's generate() must return an rlhf::rollout (docs/concepts.md)");
  return true;
}

template <class R>
consteval bool check_reward_model() {
  static_assert(requires(R& r, const batch& b) { r.score(b); },
                "rlhf: a RewardModel needs score(const rlhf::batch&) returning one score per sequence "
                "(std::vector<double>) (docs/concepts.md)");
  static_assert(!requires(R& r, const batch& b) { r.score(b); } || RewardModel<R>,
                "rlhf: RewardModel::score must return std::vector<double> (docs/concepts.md)");
  return true;
}

template <class V>
consteval bool check_value_function() {
  static_assert(requires(V& v, const batch& b) { v.values(b); },
                "rlhf: a ValueFunction needs values(const rlhf::batch&) returning [B, T] values (docs/concepts.md)");
  static_assert(requires(V& v, const batch& b, tensor_view<const double, 2> g) { v.backward(b, g); },
                "rlhf: a ValueFunction needs backward(const rlhf::batch&, rlhf::tensor_view<const double, 2>) "
                "(docs/concepts.md)");
  static_assert(requires(V& v) { v.step(); }, "rlhf: a ValueFunction needs step() (docs/concepts.md)");
  constexpr bool members = requires(V& v, const batch& b, tensor_view<const double, 2> g) {
    v.values(b);
    v.backward(b, g);
    v.step();
  };
  static_assert(!members || ValueFunction<V>, "rlhf: ValueFunction::values must return rlhf::tensor<double, 2>");
  return true;
}

/// A stand-in for "no value function" (critic-free estimators).
struct no_value_function {};

}  // namespace rlhf
