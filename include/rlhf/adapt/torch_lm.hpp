// rlhf++ — a libtorch causal LM as a policy, a reference, a critic and a
// reward model.
//
//   rlhf::torch::causal_lm<Module, E>    any module with forward(tokens [B, L]) -> logits [B, L, V]:
//                                        a LogitsPolicy (forward handle keeps the autograd graph),
//                                        ReferenceModel, Checkpointable, BlendableFrom
//   rlhf::torch::value_model<Module, E>  forward(tokens [B, L]) -> values [B, L]: a ValueFunction
//   rlhf::torch::reward_model<Module, E> forward(tokens [B, L]) -> scores [B, L]: a RewardModel
//                                        (the score at the last token of each sequence)
//
// The layout (docs/torch.md): row i of the module's input is the prompt,
// then the response, then padding,
//   [ p_0 ... p_{len-1}  y_0 ... y_{T-1}  pad ... ]        (length P + T)
// so every row starts at position 0 and, the module being causal, a row's
// outputs never depend on the other rows or on its own padding. The logits
// that predict y_t are those at position len - 1 + t (the label shift);
// values and scores are read at the same positions. Token ids are int64
// (torch's), E is the module's floating type (float or double).
//
// Generation samples from softmax(logits / temperature), optionally within
// the top k and the top-p nucleus, with the trainer's random engine (one
// uniform per token): a resumed run samples exactly what the uninterrupted
// one did. Checkpoints are torch::serialize archives of the parameters,
// the buffers and the optimizer's state.
//
// Include where libtorch is available (CMake target rlhf::torch).
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <istream>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../concepts/batch.hpp"
#include "../core/check.hpp"
#include "torch.hpp"

namespace rlhf::torch {

using token_type = std::int64_t;
using batch = basic_batch<token_type>;
using prompt_batch = basic_prompt_batch<token_type>;
using rollout = basic_rollout<token_type>;

/// Sampling beyond the trainer's temperature and length.
struct lm_options {
  std::int64_t top_k = 0;  ///< keep the k most likely tokens (0 = all)
  double top_p = 1.0;      ///< keep the smallest set whose probability reaches top_p (1 = all)
  std::int64_t eos = -1;   ///< a token that ends a response (its own mask is 1); -1 = none
  std::int64_t pad = 0;    ///< the id written after a response ends
};

namespace detail {
/// [B, T]: len_i + t + offset, the position of y_t (offset 0) or of its predictor (offset -1).
inline at::Tensor positions(const batch& b, std::int64_t offset) {
  const index_t B = b.size(), T = b.length();
  auto pos = at::empty({B, T}, at::kLong);
  auto acc = pos.accessor<std::int64_t, 2>();
  for (index_t i = 0; i < B; ++i) {
    const auto len = b.prompts.lengths[static_cast<std::size_t>(i)];
    if (len < 1)
      rlhf::detail::fail(
          error_kind::empty, "torch::causal_lm", "prompts",
          "row " + std::to_string(i) + " has an empty prompt: a causal LM needs one token to start from");
    for (index_t t = 0; t < T; ++t) acc[i][t] = len + t + offset;
  }
  return pos;
}
/// The module's input [B, P + T]: prompt, response, padding (see the file comment).
inline at::Tensor lm_input(const batch& b, std::int64_t pad) {
  const index_t B = b.size(), P = b.prompts.tokens.extent(1), T = b.length();
  if (b.prompts.lengths.size() != static_cast<std::size_t>(B))
    rlhf::detail::fail(
        error_kind::shape, "torch::causal_lm", "prompts.lengths",
        "has " + std::to_string(b.prompts.lengths.size()) + " entries for " + std::to_string(B) + " rows");
  auto in = at::full({B, P + T}, pad, at::kLong);
  if (P > 0) in.narrow(1, 0, P).copy_(to_torch(b.prompts.tokens.view()));
  if (T > 0) in.scatter_(1, positions(b, 0), to_torch(b.responses.view()));
  return in;
}
/// out[i, t, :] = x[i, pos[i, t], :] for x [B, L, C].
inline at::Tensor gather_positions(const at::Tensor& x, const at::Tensor& pos) {
  const auto C = x.size(2);
  return x.gather(1, pos.unsqueeze(-1).expand({pos.size(0), pos.size(1), C}));
}
template <class E>
constexpr at::ScalarType float_dtype() {
  static_assert(std::is_same_v<E, float> || std::is_same_v<E, double>, "rlhf::torch: E is float or double");
  return std::is_same_v<E, float> ? at::kFloat : at::kDouble;
}
/// Checks a module's output: rank, leading extents, dtype.
template <class E>
void check_output(const at::Tensor& y, const char* fn, const char* what, std::int64_t rank, std::int64_t B,
                  std::int64_t L) {
  if (y.dim() != rank || y.size(0) != B || y.size(1) != L)
    rlhf::detail::fail(error_kind::shape, fn, what,
                       "has shape " + rlhf::detail::torch_shape(y) + ": expected [" + std::to_string(B) + ", " +
                           std::to_string(L) + (rank == 3 ? ", V]" : "]") + " for an input of [B, L] tokens");
  if (y.scalar_type() != float_dtype<E>())
    rlhf::detail::fail(error_kind::param, fn, what,
                       std::string("has dtype ") + c10::toString(y.scalar_type()) + ", the wrapper's E is " +
                           c10::toString(float_dtype<E>()));
}

/// parameters and buffers of `dst` <- (1 - alpha) dst + alpha src.
template <class M>
void blend_modules(M& dst, const M& src, double alpha, const char* fn) {
  rlhf::detail::require_param(alpha >= 0.0 && alpha <= 1.0, fn, "alpha", "must be in [0, 1]");
  at::NoGradGuard ng;
  auto d = dst->parameters();
  const auto s = src->parameters();
  if (d.size() != s.size())
    rlhf::detail::fail(error_kind::shape, fn, "policy", "has another number of parameters than this model");
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (!d[i].sizes().equals(s[i].sizes()))
      rlhf::detail::fail(error_kind::shape, fn, "policy", "parameter " + std::to_string(i) + " has another shape");
  }
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (alpha == 1.0)
      d[i].copy_(s[i]);
    else
      d[i].mul_(1.0 - alpha).add_(s[i], alpha);
  }
}

/// A module (and an optimizer) into / out of a stream, as torch archives.
template <class M>
void save_module(const M& m, const std::shared_ptr<::torch::optim::Optimizer>& opt, std::ostream& os) {
  ::torch::serialize::OutputArchive a;
  m->save(a);
  if (opt) {
    ::torch::serialize::OutputArchive oa;
    opt->save(oa);
    a.write("rlhf_optimizer", oa);
  }
  a.save_to(os);
}
template <class M>
void load_module(M& m, const std::shared_ptr<::torch::optim::Optimizer>& opt, std::istream& is, const char* fn) {
  try {
    std::stringstream bytes;
    bytes << is.rdbuf();
    ::torch::serialize::InputArchive a;
    a.load_from(bytes);
    m->load(a);
    if (opt) {
      ::torch::serialize::InputArchive oa;
      if (!a.try_read("rlhf_optimizer", oa))
        rlhf::detail::fail(error_kind::param, fn, "checkpoint", "holds no optimizer state for this model's optimizer");
      opt->load(oa);
    }
  } catch (const rlhf::error&) {
    throw;
  } catch (const std::exception& e) {  // c10::Error: a corrupt or foreign archive
    rlhf::detail::fail(error_kind::param, fn, "checkpoint", std::string("is not this model's archive: ") + e.what());
  }
}

/// What a forward with gradient keeps: an output with its autograd graph,
/// and a view of its memory for the trainer. The backward runs once.
template <class E>
struct kept_graph {
  at::Tensor out_;
  torch_view<E, 2> view_;
  static kept_graph keep(at::Tensor t) {
    if (!t.is_contiguous()) t = t.contiguous();
    return {t, torch_view<E, 2>{t.detach()}};
  }
  void backward(tensor_view<const E, 2> g, const char* fn, const char* arg) {
    if (!out_.defined())
      rlhf::detail::fail(error_kind::param, fn, "handle", "was already used: a handle's backward runs once");
    const auto gt = to_torch(g);
    if (!gt.sizes().equals(out_.sizes()))
      rlhf::detail::fail(
          error_kind::shape, fn, arg,
          "has shape " + rlhf::detail::torch_shape(gt) + " but the output " + rlhf::detail::torch_shape(out_));
    out_.backward(gt);
    out_ = at::Tensor();  // the graph is freed
  }
};

/// Samples one token from probabilities p[0..V) with the top-k / top-p rules and one uniform u in [0, 1).
inline std::int64_t sample_token(std::vector<double>& p, const lm_options& o, double u) {
  const auto V = static_cast<std::int64_t>(p.size());
  std::vector<std::int64_t> idx(static_cast<std::size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  // most likely first; ties by id, so the order (and the sample) is deterministic
  std::stable_sort(idx.begin(), idx.end(), [&](auto a, auto b) { return p[a] > p[b]; });
  std::int64_t keep = V;
  if (o.top_k > 0) keep = std::min(keep, o.top_k);
  if (o.top_p < 1.0) {
    double c = 0;
    for (std::int64_t j = 0; j < keep; ++j) {
      c += p[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])];
      if (c >= o.top_p) {
        keep = j + 1;
        break;
      }
    }
  }
  double z = 0;
  for (std::int64_t j = 0; j < keep; ++j) z += p[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])];
  double c = 0;
  const double target = u * z;
  for (std::int64_t j = 0; j < keep; ++j) {
    c += p[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])];
    if (target < c) return idx[static_cast<std::size_t>(j)];
  }
  return idx[static_cast<std::size_t>(keep - 1)];
}
}  // namespace detail

/// A causal LM module as a policy (with an optimizer) or a reference (without).
template <class Module, class E = float>
class causal_lm {
 public:
  using token_type = rlhf::torch::token_type;

  explicit causal_lm(Module m, std::shared_ptr<::torch::optim::Optimizer> opt = nullptr, lm_options o = {})
      : m_(std::move(m)), opt_(std::move(opt)), o_(o) {
    rlhf::detail::require_param(o_.top_k >= 0, "torch::causal_lm", "top_k", "must be >= 0 (0 = all tokens)");
    rlhf::detail::require_param(o_.top_p > 0.0 && o_.top_p <= 1.0, "torch::causal_lm", "top_p", "must be in (0, 1]");
  }

  Module& module() noexcept { return m_; }
  const Module& module() const noexcept { return m_; }
  const std::shared_ptr<::torch::optim::Optimizer>& optimizer() const noexcept { return opt_; }

  /// What a forward with gradient keeps: the [B*T, V] logits of the
  /// response positions, with their autograd graph.
  struct handle : detail::kept_graph<E> {
    const torch_view<E, 2>& logits() const noexcept { return this->view_; }
  };

  /// [B*T, V] raw next-token logits of the response positions, no gradient.
  torch_view<E, 2> logits(const batch& b) const {
    at::NoGradGuard ng;
    return {response_logits(b).contiguous()};
  }
  handle forward(const batch& b) { return {detail::kept_graph<E>::keep(response_logits(b))}; }
  /// dL/dlogits of the handle's forward, into the parameters' gradients.
  void backward_logits(handle& f, tensor_view<const E, 2> dlogits) {
    f.backward(dlogits, "torch::causal_lm::backward_logits", "dlogits");
  }

  rollout generate(const prompt_batch& x, const sampling& s, rng_t& g) const {
    constexpr const char* fn = "torch::causal_lm::generate";
    rlhf::detail::require_param(s.temperature > 0.0, fn, "temperature", "must be > 0");
    rlhf::detail::require_param(s.max_new_tokens >= 1, fn, "max_new_tokens", "must be >= 1");
    at::NoGradGuard ng;
    const index_t B = x.size(), P = x.tokens.extent(1), T = s.max_new_tokens;
    rollout r;
    r.seqs.prompts = x;
    r.seqs.responses = tensor<token_type, 2>({B, T}, o_.pad);
    r.seqs.response_mask = tensor<double, 2>({B, T}, 0.0);
    r.seqs.temperature = s.temperature;
    if (x.lengths.size() != static_cast<std::size_t>(B))
      rlhf::detail::fail(error_kind::shape, fn, "prompts.lengths", "needs one length per prompt");
    for (index_t i = 0; i < B; ++i)
      if (x.lengths[static_cast<std::size_t>(i)] < 1)
        rlhf::detail::fail(error_kind::empty, fn, "prompts", "row " + std::to_string(i) + " is empty");
    auto seq = at::full({B, P + T}, o_.pad, at::kLong);
    if (P > 0) seq.narrow(1, 0, P).copy_(to_torch(x.tokens.view()));
    std::vector<bool> done(static_cast<std::size_t>(B), false);
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    auto sacc = seq.accessor<std::int64_t, 2>();
    for (index_t k = 0; k < T; ++k) {
      const at::Tensor z = m_->forward(seq.narrow(1, 0, P + k + 1));
      detail::check_output<E>(z, fn, "forward(tokens)", 3, B, P + k + 1);
      auto last = at::empty({B}, at::kLong);
      auto lacc = last.accessor<std::int64_t, 1>();
      for (index_t i = 0; i < B; ++i) lacc[i] = x.lengths[static_cast<std::size_t>(i)] + k - 1;
      const auto zl = z.gather(1, last.view({B, 1, 1}).expand({B, 1, z.size(2)})).squeeze(1);
      const auto pr = at::softmax(zl.to(at::kDouble) / s.temperature, -1).contiguous();
      const auto pacc = pr.accessor<double, 2>();
      bool any = false;
      for (index_t i = 0; i < B; ++i) {
        if (done[static_cast<std::size_t>(i)]) continue;
        std::vector<double> p(static_cast<std::size_t>(pr.size(1)));
        for (std::size_t v = 0; v < p.size(); ++v) p[v] = pacc[i][static_cast<std::int64_t>(v)];
        const std::int64_t tok = detail::sample_token(p, o_, unif(g));
        sacc[i][x.lengths[static_cast<std::size_t>(i)] + k] = tok;
        r.seqs.responses(i, k) = tok;
        r.seqs.response_mask(i, k) = 1.0;
        if (tok == o_.eos) done[static_cast<std::size_t>(i)] = true;
        any = true;
      }
      if (!any) break;
    }
    return r;
  }

  /// The optimizer's step, then its gradients cleared.
  void step() {
    if (!opt_)
      rlhf::detail::fail(error_kind::param, "torch::causal_lm::step", "optimizer",
                         "is not set: a policy needs one (a reference does not)");
    opt_->step();
    opt_->zero_grad();
  }

  /// theta <- (1 - alpha) theta + alpha theta_policy (hard sync: alpha = 1; EMA).
  void blend_from(const causal_lm& policy, double alpha) {
    detail::blend_modules(m_, policy.m_, alpha, "torch::causal_lm::blend_from");
  }

  void save(std::ostream& os) const { detail::save_module(m_, opt_, os); }
  void load(std::istream& is) { detail::load_module(m_, opt_, is, "torch::causal_lm::load"); }

 private:
  /// [B*T, V] logits at the positions that predict y_0 .. y_{T-1}.
  at::Tensor response_logits(const batch& b) const {
    const auto in = detail::lm_input(b, o_.pad);
    const at::Tensor z = m_->forward(in);
    detail::check_output<E>(z, "torch::causal_lm", "forward(tokens)", 3, in.size(0), in.size(1));
    const auto zr = detail::gather_positions(z, detail::positions(b, -1));
    return zr.reshape({b.size() * b.length(), z.size(2)});
  }

  mutable Module m_;
  std::shared_ptr<::torch::optim::Optimizer> opt_;
  lm_options o_;
};

/// A critic: forward(tokens [B, L]) -> values [B, L]; values(b)[i, t] is
/// the value at the position that predicts y_t (verl's alignment).
template <class Module, class E = float>
class value_model {
 public:
  using token_type = rlhf::torch::token_type;
  explicit value_model(Module m, std::shared_ptr<::torch::optim::Optimizer> opt, std::int64_t pad = 0)
      : m_(std::move(m)), opt_(std::move(opt)), pad_(pad) {}
  Module& module() noexcept { return m_; }

  struct handle : detail::kept_graph<E> {
    const torch_view<E, 2>& values() const noexcept { return this->view_; }
  };
  torch_view<E, 2> values(const batch& b) const {
    at::NoGradGuard ng;
    return {at_positions(b).contiguous()};
  }
  handle forward(const batch& b) { return {detail::kept_graph<E>::keep(at_positions(b))}; }
  void backward(handle& f, tensor_view<const E, 2> dv) { f.backward(dv, "torch::value_model::backward", "dv"); }
  void step() {
    opt_->step();
    opt_->zero_grad();
  }
  void save(std::ostream& os) const { detail::save_module(m_, opt_, os); }
  void load(std::istream& is) { detail::load_module(m_, opt_, is, "torch::value_model::load"); }

 private:
  at::Tensor at_positions(const batch& b) const {
    const auto in = detail::lm_input(b, pad_);
    const at::Tensor v = m_->forward(in);
    detail::check_output<E>(v, "torch::value_model", "forward(tokens)", 2, in.size(0), in.size(1));
    return v.gather(1, detail::positions(b, -1));
  }
  mutable Module m_;
  std::shared_ptr<::torch::optim::Optimizer> opt_;
  std::int64_t pad_;
};

/// A reward model: forward(tokens [B, L]) -> scores [B, L]; a sequence's
/// score is the one at its last token (the last response token with mask
/// 1, or the prompt's last token for an empty response), as TRL's and
/// OpenRLHF's reward models read it.
template <class Module, class E = float>
class reward_model {
 public:
  using token_type = rlhf::torch::token_type;
  explicit reward_model(Module m, std::int64_t pad = 0) : m_(std::move(m)), pad_(pad) {}
  Module& module() noexcept { return m_; }

  std::vector<double> score(const batch& b) const {
    at::NoGradGuard ng;
    const at::Tensor s = last_scores(b).to(at::kDouble).contiguous();
    const auto acc = s.accessor<double, 1>();
    std::vector<double> out(static_cast<std::size_t>(b.size()));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = acc[static_cast<std::int64_t>(i)];
    return out;
  }
  /// [B] scores with their graph (training the reward model itself).
  at::Tensor last_scores(const batch& b) const {
    const auto in = detail::lm_input(b, pad_);
    const at::Tensor s = m_->forward(in);
    detail::check_output<E>(s, "torch::reward_model", "forward(tokens)", 2, in.size(0), in.size(1));
    auto last = at::empty({b.size(), 1}, at::kLong);
    auto acc = last.accessor<std::int64_t, 2>();
    for (index_t i = 0; i < b.size(); ++i) {
      index_t k = 0;
      for (index_t t = 0; t < b.length(); ++t)
        if (b.response_mask(i, t) != 0.0) k = t + 1;
      acc[i][0] = b.prompts.lengths[static_cast<std::size_t>(i)] + k - 1;
    }
    return s.gather(1, last).squeeze(1);
  }
  void save(std::ostream& os) const { detail::save_module(m_, nullptr, os); }
  void load(std::istream& is) { detail::load_module(m_, nullptr, is, "torch::reward_model::load"); }

 private:
  mutable Module m_;
  std::int64_t pad_;
};

}  // namespace rlhf::torch
