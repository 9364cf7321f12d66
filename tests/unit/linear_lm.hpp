// A tiny linear language model for the trainer tests, in three interfaces
// over the same parameters and the same math:
//
//   h_t = E[prev_t] + P[t]       prev_0 = the prompt's last token, prev_t = y_{t-1}
//   z_t = W h_t                  logits [V], W the LM head [V, H]
//   token 0 is the end of a response (its mask is 1, the rest of the row 0)
//
//   kind::log_probs  handle form:    forward(b) -> F{log_probs()}; backward(F&, dlogp)
//   kind::logits     stateless form: logits(b); backward_logits(b, dlogits)
//   kind::hidden     handle form:    forward(b) -> F{hidden_states()}; lm_head(); backward_hidden(F&, dh, dw)
// Element type F (float or double); plain SGD; Checkpointable (hexfloat,
// exact); generate() samples at the sampling temperature and returns the
// sampled tokens' log-probs. `grad_log` keeps the gradient of every step()
// (the tests compare gradients of the three paths).
#pragma once

#include <cmath>
#include <cstdint>
#include <iomanip>
#include <istream>
#include <ostream>
#include <random>
#include <rlhf/rlhf.hpp>
#include <string>
#include <vector>

namespace lin {

using rlhf::index_t;
using rlhf::tensor;
using rlhf::tensor_view;

enum class kind { log_probs, logits, hidden };

inline constexpr index_t V = 6, H = 4, TMAX = 4;

template <class F>
struct params {
  std::vector<F> E, P, W;  // [V, H], [TMAX, H], [V, H]
  explicit params(unsigned seed) {
    std::mt19937_64 g(seed);
    std::normal_distribution<double> n(0, 0.7);
    for (auto* v : {&E, &P, &W}) v->resize(static_cast<std::size_t>((v == &P ? TMAX : V) * H));
    for (auto* v : {&E, &P, &W})
      for (auto& x : *v) x = static_cast<F>(n(g));
  }
};

/// The shared core of the three interfaces. Tok: the token type (int32 or int64).
template <class F, kind K, class Tok = std::int32_t>
class model {
 public:
  using token_type = Tok;
  using batch = rlhf::basic_batch<Tok>;
  F lr = F(0.03);
  std::vector<std::vector<F>> grad_log;  // the gradient (dE, dP, dW concatenated) of each step

  explicit model(unsigned seed = 1) : p_(seed), gE_(p_.E.size()), gP_(p_.P.size()), gW_(p_.W.size()) {}

  // --- shared math ---------------------------------------------------
  static Tok prev(const batch& b, index_t i, index_t t) {
    if (t > 0) return b.responses(i, t - 1);
    const index_t len =
        b.prompts.lengths.empty() ? b.prompts.tokens.extent(1) : b.prompts.lengths[static_cast<std::size_t>(i)];
    return b.prompts.tokens(i, len - 1);
  }
  tensor<F, 2> hidden(const batch& b) const {
    const index_t B = b.size(), T = b.length();
    tensor<F, 2> h({B * T, H});
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t)
        for (index_t k = 0; k < H; ++k)
          h(i * T + t, k) =
              p_.E[static_cast<std::size_t>(prev(b, i, t) * H + k)] + p_.P[static_cast<std::size_t>(t * H + k)];
    return h;
  }
  tensor<F, 2> logits_of(const tensor<F, 2>& h) const {
    tensor<F, 2> z({h.extent(0), V});
    for (index_t r = 0; r < h.extent(0); ++r)
      for (index_t v = 0; v < V; ++v) {
        double s = 0;
        for (index_t k = 0; k < H; ++k) s += static_cast<double>(p_.W[static_cast<std::size_t>(v * H + k)]) * h(r, k);
        z(r, v) = static_cast<F>(s);
      }
    return z;
  }
  /// log softmax(z / tau) of each row at its label, and the softmax rows.
  static void row_logp(const tensor<F, 2>& z, const batch& b, tensor<F, 2>& lp, tensor<double, 2>& probs) {
    const index_t B = b.size(), T = b.length();
    lp = tensor<F, 2>({B, T});
    probs = tensor<double, 2>({B * T, V});
    for (index_t r = 0; r < B * T; ++r) {
      double mx = -INFINITY, s = 0;
      for (index_t v = 0; v < V; ++v) mx = std::fmax(mx, z(r, v) / b.temperature);
      for (index_t v = 0; v < V; ++v) s += probs(r, v) = std::exp(z(r, v) / b.temperature - mx);
      for (index_t v = 0; v < V; ++v) probs(r, v) /= s;
      lp.data()[r] = static_cast<F>(z(r, b.responses.data()[r]) / b.temperature - mx - std::log(s));
    }
  }
  void accumulate_dz(const batch& b, const tensor<F, 2>& h, tensor_view<const F, 2> dz) {
    const index_t B = b.size(), T = b.length();
    for (index_t r = 0; r < B * T; ++r)
      for (index_t v = 0; v < V; ++v)
        for (index_t k = 0; k < H; ++k) gW_[static_cast<std::size_t>(v * H + k)] += dz(r, v) * h(r, k);
    tensor<F, 2> dh({B * T, H});
    for (index_t r = 0; r < B * T; ++r)
      for (index_t k = 0; k < H; ++k) {
        double s = 0;
        for (index_t v = 0; v < V; ++v) s += static_cast<double>(dz(r, v)) * p_.W[static_cast<std::size_t>(v * H + k)];
        dh(r, k) = static_cast<F>(s);
      }
    accumulate_dh(b, dh.view());
  }
  void accumulate_dh(const batch& b, tensor_view<const F, 2> dh) {
    const index_t B = b.size(), T = b.length();
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t)
        for (index_t k = 0; k < H; ++k) {
          gE_[static_cast<std::size_t>(prev(b, i, t) * H + k)] += dh(i * T + t, k);
          gP_[static_cast<std::size_t>(t * H + k)] += dh(i * T + t, k);
        }
  }

  // --- the three interfaces ------------------------------------------
  struct logp_handle {  // kind::log_probs: what the backward needs
    const batch* b;
    tensor<F, 2> h, z, lp;
    tensor<double, 2> probs;
    const tensor<F, 2>& log_probs() const { return lp; }
  };
  struct hidden_handle {  // kind::hidden
    const batch* b;
    tensor<F, 2> h;
    tensor_view<const F, 2> hidden_states() const { return h.view(); }
  };

  auto forward(const batch& b) requires(K != kind::logits) {
    ++forwards;
    if constexpr (K == kind::log_probs) {
      logp_handle f{&b, hidden(b), {}, {}, {}};
      f.z = logits_of(f.h);
      row_logp(f.z, b, f.lp, f.probs);
      return f;
    } else {
      return hidden_handle{&b, hidden(b)};
    }
  }
  tensor<F, 2> log_probs(const batch& b) const requires(K == kind::log_probs) {
    tensor<F, 2> lp;
    tensor<double, 2> probs;
    row_logp(logits_of(hidden(b)), b, lp, probs);
    return lp;
  }
  void backward(logp_handle& f, tensor_view<const F, 2> dlogp) requires(K == kind::log_probs) {
    const batch& b = *f.b;
    const index_t N = b.size() * b.length();
    tensor<F, 2> dz({N, V});
    for (index_t r = 0; r < N; ++r)
      for (index_t v = 0; v < V; ++v)
        dz(r, v) = static_cast<F>(static_cast<double>(dlogp.data()[r]) *
                                  ((v == b.responses.data()[r] ? 1.0 : 0.0) - f.probs(r, v)) / b.temperature);
    accumulate_dz(b, f.h, dz.view());
    ++backwards;
  }
  tensor<F, 2> logits(const batch& b) const requires(K == kind::logits) { return logits_of(hidden(b)); }
  void backward_logits(const batch& b, tensor_view<const F, 2> dz) requires(K == kind::logits) {
    accumulate_dz(b, hidden(b), dz);
    ++backwards;
  }
  tensor<F, 2> hidden_states(const batch& b) const requires(K == kind::hidden) { return hidden(b); }
  tensor_view<const F, 2> lm_head() const requires(K == kind::hidden) { return {p_.W.data(), {V, H}}; }
  void backward_hidden(hidden_handle& f, tensor_view<const F, 2> dh,
                       tensor_view<const F, 2> dw) requires(K == kind::hidden) {
    for (index_t i = 0; i < V * H; ++i) gW_[static_cast<std::size_t>(i)] += dw.data()[i];
    accumulate_dh(*f.b, dh);
    ++backwards;
  }

  rlhf::basic_rollout<Tok> generate(const rlhf::basic_prompt_batch<Tok>& x, const rlhf::sampling& s,
                                    rlhf::rng_t& g) const {
    const index_t B = x.size(), T = std::min<index_t>(s.max_new_tokens, TMAX);
    rlhf::basic_rollout<Tok> r;
    r.seqs.prompts = x;
    r.seqs.responses = tensor<Tok, 2>({B, T});
    r.seqs.response_mask = tensor<double, 2>({B, T});
    r.seqs.temperature = s.temperature;
    r.logprobs = tensor<double, 2>({B, T});
    std::uniform_real_distribution<double> u(0, 1);
    for (index_t i = 0; i < B; ++i) {
      bool done = false;
      for (index_t t = 0; t < T && !done; ++t) {
        // the next token's logits from the row's prefix (h depends only on the previous token)
        const tensor<F, 2> z = logits_of(hidden(r.seqs));
        const index_t row = i * T + t;
        double mx = -INFINITY, sum = 0;
        std::vector<double> pr(V);
        for (index_t v = 0; v < V; ++v) mx = std::fmax(mx, z(row, v) / s.temperature);
        for (index_t v = 0; v < V; ++v)
          sum += pr[static_cast<std::size_t>(v)] = std::exp(z(row, v) / s.temperature - mx);
        double c = 0, pick = u(g) * sum;
        index_t y = V - 1;
        for (index_t v = 0; v < V; ++v)
          if ((c += pr[static_cast<std::size_t>(v)]) > pick) {
            y = v;
            break;
          }
        r.seqs.responses(i, t) = static_cast<Tok>(y);
        r.seqs.response_mask(i, t) = 1.0;
        r.logprobs(i, t) = std::log(pr[static_cast<std::size_t>(y)] / sum);
        done = y == 0;
      }
    }
    return r;
  }
  void step() {
    std::vector<F> g;
    for (auto* v : {&gE_, &gP_, &gW_}) g.insert(g.end(), v->begin(), v->end());
    grad_log.push_back(g);
    auto upd = [&](std::vector<F>& w, std::vector<F>& gw) {
      for (std::size_t i = 0; i < w.size(); ++i) {
        w[i] -= lr * gw[i];
        gw[i] = 0;
      }
    };
    upd(p_.E, gE_);
    upd(p_.P, gP_);
    upd(p_.W, gW_);
    ++steps;
  }
  template <kind K2>
  void blend_from(const model<F, K2, Tok>& o, double a) {
    const auto& q = o.parameters();
    auto mix = [&](std::vector<F>& w, const std::vector<F>& v) {
      for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<F>((1 - a) * w[i] + a * v[i]);
    };
    mix(p_.E, q.E);
    mix(p_.P, q.P);
    mix(p_.W, q.W);
  }
  void save(std::ostream& os) const {
    os << std::hexfloat;
    for (const auto* v : {&p_.E, &p_.P, &p_.W})
      for (F x : *v) os << x << ' ';
    os << '\n';
  }
  void load(std::istream& in) {
    params<F> q = p_;
    for (auto* v : {&q.E, &q.P, &q.W})
      for (F& x : *v) {
        std::string w;
        in >> w;
        x = static_cast<F>(std::strtod(w.c_str(), nullptr));
      }
    if (!in) throw std::runtime_error("linear_lm: truncated weights");
    p_ = q;
  }
  const params<F>& parameters() const { return p_; }
  params<F>& parameters() { return p_; }
  long long forwards = 0, backwards = 0, steps = 0;

 private:
  params<F> p_;
  std::vector<F> gE_, gP_, gW_;
};

/// Reward: +1 for each token 3 in the response, -0.5 for a response cut
/// before its end token.
struct reward {
  template <class B>
  std::vector<double> score(const B& b) const {
    std::vector<double> s;
    for (index_t i = 0; i < b.size(); ++i) {
      double r = 0;
      bool ended = false;
      for (index_t t = 0; t < b.length(); ++t)
        if (b.response_mask(i, t) != 0) {
          r += b.responses(i, t) == 3 ? 1.0 : 0.0;
          ended = b.responses(i, t) == 0;
        }
      s.push_back(ended ? r : r - 0.5);
    }
    return s;
  }
};

}  // namespace lin
