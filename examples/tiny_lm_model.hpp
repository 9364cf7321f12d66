// A tiny autoregressive language model written with Eigen, with its manual
// backward pass, for the tiny_lm and dpo examples.
//
//   next-token logits at response position t =
//     W2 tanh(W1 [E(x_{t-3}); E(x_{t-2}); E(x_{t-1}); P(t)] + b1) + b2
// (a 3-token context window of embeddings plus a position embedding). It is
// a LogitsPolicy: it hands the library [B*T, V] logits and receives
// d loss / d logits, so rlhf++ computes log-probs and entropy itself. Adam
// over one flat parameter vector; Blendable and Checkpointable.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <istream>
#include <ostream>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <rlhf/rlhf.hpp>
#include <string>
#include <vector>

#include "tiny_language.hpp"

namespace tiny {

using rlhf::index_t;
using rlhf::tensor;
using rlhf::token_t;
using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapMat = Eigen::Map<Mat>;

// ---------------------------------------------------------------------------
class mlp_lm {
 public:
  static constexpr index_t V = 18, C = 3, D = 12, PD = 8, H = 64, TMAX = 16, IN = C * D + PD;

  explicit mlp_lm(unsigned seed = 0, double lr = 3e-3) : lr_(lr) {
    const index_t n = V * D + TMAX * PD + H * IN + H + V * H + V;
    w_.assign(static_cast<std::size_t>(n), 0.0);
    g_.assign(w_.size(), 0.0);
    m1_.assign(w_.size(), 0.0);
    m2_.assign(w_.size(), 0.0);
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> nd(0, 1);
    auto init = [&](double* p, index_t count, double sd) {
      for (index_t i = 0; i < count; ++i) p[i] = sd * nd(gen);
    };
    init(E(w_).data(), V * D, 0.5);
    init(P(w_).data(), TMAX * PD, 0.5);
    init(W1(w_).data(), H * IN, 1.0 / std::sqrt(static_cast<double>(IN)));
    init(W2(w_).data(), V * H, 1.0 / std::sqrt(static_cast<double>(H)));
  }

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }

  // --- LogitsPolicy ------------------------------------------------------
  tensor<double, 2> logits(const rlhf::batch& b) const {
    const Mat X = features(b);
    const Mat Hd = hidden(X);
    tensor<double, 2> z({X.rows(), V});
    MapMat(z.data(), X.rows(), V) = (Hd * W2(w_).transpose()).rowwise() + b2(w_).transpose();
    return z;
  }
  void backward_logits(const rlhf::batch& b, rlhf::tensor_view<const double, 2> dz_view) {
    const Mat X = features(b);
    const Mat Hd = hidden(X);
    Mat dZ(X.rows(), V);
    for (index_t i = 0; i < X.rows(); ++i)
      for (index_t k = 0; k < V; ++k) dZ(i, k) = dz_view(i, k);
    W2(g_) += dZ.transpose() * Hd;
    b2(g_) += dZ.colwise().sum().transpose();
    const Mat dA = (dZ * W2(w_)).cwiseProduct((1.0 - Hd.array().square()).matrix());
    W1(g_) += dA.transpose() * X;
    b1(g_) += dA.colwise().sum().transpose();
    const Mat dX = dA * W1(w_);
    // scatter into the embeddings
    const auto ctx = contexts(b);
    for (index_t r = 0; r < X.rows(); ++r) {
      for (index_t c = 0; c < C; ++c) E(g_).row(ctx[r].tok[c]) += dX.block(r, c * D, 1, D);
      P(g_).row(ctx[r].pos) += dX.block(r, C * D, 1, PD);
    }
  }

  // --- ReferenceModel ----------------------------------------------------
  tensor<double, 2> log_probs(const rlhf::batch& b) const {
    const auto z = logits(b);
    const index_t B = b.size(), T = b.length();
    tensor<double, 2> lp({B, T});
    tensor<token_t, 1> labels({B * T});
    for (index_t i = 0; i < B * T; ++i) labels.data()[i] = b.responses.data()[i];
    rlhf::ops::logprobs_entropy(rlhf::cpu, z.view(), labels.view(), rlhf::tensor_view<double, 1>(lp.data(), {B * T}));
    return lp;
  }

  // --- Policy ------------------------------------------------------------
  rlhf::rollout generate(const rlhf::prompt_batch& x, const rlhf::sampling& s, rlhf::rng_t& g) const {
    const index_t B = x.size(), T = s.max_new_tokens;
    rlhf::rollout r;
    r.seqs.prompts = x;
    r.seqs.responses = tensor<token_t, 2>({B, T}, EOS);
    r.seqs.response_mask = tensor<double, 2>({B, T});
    r.logprobs = tensor<double, 2>({B, T});
    std::vector<bool> done(static_cast<std::size_t>(B), false);
    std::uniform_real_distribution<double> u(0, 1);
    for (index_t t = 0; t < T; ++t) {
      Mat X(B, IN);
      for (index_t i = 0; i < B; ++i) fill_features(X, i, context_of(r.seqs, i, t));
      const Mat Hd = hidden(X);
      const Mat Z = ((Hd * W2(w_).transpose()).rowwise() + b2(w_).transpose()) / s.temperature;
      for (index_t i = 0; i < B; ++i) {
        if (done[static_cast<std::size_t>(i)]) continue;
        const double mx = Z.row(i).maxCoeff();
        const Eigen::RowVectorXd p = (Z.row(i).array() - mx).exp().matrix();
        const double zsum = p.sum();
        double c = 0, pick = u(g) * zsum;
        token_t y = static_cast<token_t>(V - 1);
        for (index_t k = 0; k < V; ++k)
          if ((c += p(k)) > pick) {
            y = static_cast<token_t>(k);
            break;
          }
        r.seqs.responses(i, t) = y;
        r.seqs.response_mask(i, t) = 1.0;
        r.logprobs(i, t) = std::log(p(y) / zsum);
        if (y == EOS) done[static_cast<std::size_t>(i)] = true;
      }
    }
    return r;
  }
  void backward(const rlhf::batch& b, rlhf::tensor_view<const double, 2> dlogp) {
    // through the logits: d logp_label / d z_k = 1[k = label] - p_k
    const auto z = logits(b);
    const index_t B = b.size(), T = b.length();
    tensor<token_t, 1> labels({B * T});
    for (index_t i = 0; i < B * T; ++i) labels.data()[i] = b.responses.data()[i];
    tensor<double, 2> dz(z.shape());
    rlhf::ops::logprobs_entropy_backward(rlhf::cpu, z.view(), labels.view(),
                                         rlhf::tensor_view<const double, 1>(dlogp.data(), {B * T}), {}, dz.view());
    backward_logits(b, dz.view());
  }
  void step() {
    ++t_;
    const double c1 = 1 - std::pow(0.9, static_cast<double>(t_)), c2 = 1 - std::pow(0.999, static_cast<double>(t_));
    for (std::size_t i = 0; i < w_.size(); ++i) {
      m1_[i] = 0.9 * m1_[i] + 0.1 * g_[i];
      m2_[i] = 0.999 * m2_[i] + 0.001 * g_[i] * g_[i];
      w_[i] -= lr_ * (m1_[i] / c1) / (std::sqrt(m2_[i] / c2) + 1e-8);
      g_[i] = 0;
    }
  }

  // --- Blendable, Checkpointable -------------------------------------------
  void blend_from(const mlp_lm& o, double a) {
    for (std::size_t i = 0; i < w_.size(); ++i) w_[i] = (1 - a) * w_[i] + a * o.w_[i];
  }
  void save(std::ostream& os) const {
    os.precision(17);
    os << t_ << ' ' << lr_ << ' ' << w_.size();
    for (const auto* v : {&w_, &g_, &m1_, &m2_})
      for (double x : *v) os << ' ' << x;
    os << '\n';
  }
  void load(std::istream& in) {
    std::size_t n = 0;
    in >> t_ >> lr_ >> n;
    for (auto* v : {&w_, &g_, &m1_, &m2_}) {
      v->assign(n, 0.0);
      for (double& x : *v) in >> x;
    }
  }

 private:
  struct ctx_t {
    token_t tok[C];
    index_t pos;
  };

  // views into a flat parameter (or gradient) vector
  static MapMat E(std::vector<double>& v) { return {v.data(), V, D}; }
  static MapMat P(std::vector<double>& v) { return {v.data() + V * D, TMAX, PD}; }
  static MapMat W1(std::vector<double>& v) { return {v.data() + V * D + TMAX * PD, H, IN}; }
  static Eigen::Map<Eigen::VectorXd> b1(std::vector<double>& v) { return {v.data() + V * D + TMAX * PD + H * IN, H}; }
  static MapMat W2(std::vector<double>& v) { return {v.data() + V * D + TMAX * PD + H * IN + H, V, H}; }
  static Eigen::Map<Eigen::VectorXd> b2(std::vector<double>& v) {
    return {v.data() + V * D + TMAX * PD + H * IN + H + V * H, V};
  }
  static Eigen::Map<const Mat> E(const std::vector<double>& v) { return {v.data(), V, D}; }
  static Eigen::Map<const Mat> P(const std::vector<double>& v) { return {v.data() + V * D, TMAX, PD}; }
  static Eigen::Map<const Mat> W1(const std::vector<double>& v) { return {v.data() + V * D + TMAX * PD, H, IN}; }
  static Eigen::Map<const Eigen::VectorXd> b1(const std::vector<double>& v) {
    return {v.data() + V * D + TMAX * PD + H * IN, H};
  }
  static Eigen::Map<const Mat> W2(const std::vector<double>& v) {
    return {v.data() + V * D + TMAX * PD + H * IN + H, V, H};
  }
  static Eigen::Map<const Eigen::VectorXd> b2(const std::vector<double>& v) {
    return {v.data() + V * D + TMAX * PD + H * IN + H + V * H, V};
  }

  /// The C tokens before response position t of row i (prompt, then response).
  static ctx_t context_of(const rlhf::batch& b, index_t i, index_t t) {
    ctx_t c{};
    const index_t plen =
        b.prompts.lengths.empty() ? b.prompts.tokens.extent(1) : b.prompts.lengths[static_cast<std::size_t>(i)];
    for (index_t k = 0; k < C; ++k) {
      const index_t pos = t - C + k;  // response index; negative = prompt
      token_t tok = BOS;
      if (pos >= 0)
        tok = b.responses(i, pos);
      else if (plen + pos >= 0)
        tok = b.prompts.tokens(i, plen + pos);
      c.tok[k] = tok;
    }
    c.pos = std::min<index_t>(t, TMAX - 1);
    return c;
  }
  static std::vector<ctx_t> contexts(const rlhf::batch& b) {
    std::vector<ctx_t> out;
    for (index_t i = 0; i < b.size(); ++i)
      for (index_t t = 0; t < b.length(); ++t) out.push_back(context_of(b, i, t));
    return out;
  }
  void fill_features(Mat& X, index_t r, const ctx_t& c) const {
    for (index_t k = 0; k < C; ++k) X.block(r, k * D, 1, D) = E(w_).row(c.tok[k]);
    X.block(r, C * D, 1, PD) = P(w_).row(c.pos);
  }
  Mat features(const rlhf::batch& b) const {
    const auto ctx = contexts(b);
    Mat X(static_cast<index_t>(ctx.size()), IN);
    for (index_t r = 0; r < X.rows(); ++r) fill_features(X, r, ctx[static_cast<std::size_t>(r)]);
    return X;
  }
  Mat hidden(const Mat& X) const {
    return ((X * W1(w_).transpose()).rowwise() + b1(w_).transpose()).array().tanh().matrix();
  }

  std::vector<double> w_, g_, m1_, m2_;
  double lr_;
  long long t_ = 0;
};

/// Fits the model to sentences of the language (maximum likelihood); this
/// becomes the SFT / reference model.
inline void fit_to_corpus(mlp_lm& m, long long steps, index_t batch_size, std::mt19937_64& g, bool verbose) {
  for (long long s = 0; s < steps; ++s) {
    rlhf::batch b;
    const index_t T = 8;
    b.prompts.tokens = tensor<token_t, 2>({batch_size, 1}, BOS);
    b.prompts.lengths.assign(static_cast<std::size_t>(batch_size), 1);
    b.responses = tensor<token_t, 2>({batch_size, T}, EOS);
    b.response_mask = tensor<double, 2>({batch_size, T});
    for (index_t i = 0; i < batch_size; ++i) {
      const auto sent = sample_sentence(g);
      for (std::size_t t = 0; t < sent.size(); ++t) {
        b.responses(i, static_cast<index_t>(t)) = sent[t];
        b.response_mask(i, static_cast<index_t>(t)) = 1;
      }
    }
    const auto lp = m.log_probs(b);
    double n = 0, nll = 0;
    for (index_t i = 0; i < lp.size(); ++i) {
      n += b.response_mask.data()[i];
      nll -= b.response_mask.data()[i] * lp.data()[i];
    }
    tensor<double, 2> d(lp.shape());
    for (index_t i = 0; i < d.size(); ++i) d.data()[i] = -b.response_mask.data()[i] / n;
    m.backward(b, d.view());
    m.step();
    if (verbose && (s + 1) % 500 == 0)
      std::printf("  fit step %lld: negative log-likelihood %.4f per token\n", s + 1, nll / n);
  }
}

/// Command line shared by the examples: --steps N, --out DIR, --quick
/// (tiny sizes for the smoke tests); creates the output folder.
struct example_args {
  long long steps, fit_steps;
  index_t pairs;
  std::string out;
  index_t quick_pairs;
};

inline example_args parse_example_args(int argc, char** argv, example_args a) {
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--steps" && i + 1 < argc)
      a.steps = std::stoll(argv[++i]);
    else if (s == "--out" && i + 1 < argc)
      a.out = argv[++i];
    else if (s == "--quick") {
      a.steps = 3;
      a.fit_steps = 200;
      a.pairs = a.quick_pairs;
    }
  }
  if (std::system(("mkdir -p '" + a.out + "'").c_str()) != 0)
    std::fprintf(stderr, "cannot create the output folder %s\n", a.out.c_str());
  return a;
}

}  // namespace tiny
