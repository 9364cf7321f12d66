// Tabular models of the bandit example (also used by the tests): a softmax
// policy with Adam that exposes its logits, a tabular critic, a reward table.
// Each is Checkpointable, and the policy is Blendable (reference updates).
// Also the bandit problem itself (examples bandit and sweep): a random
// reference policy, a reward table, the KL-regularized optimum, and the
// distances of a trained policy to it.
#pragma once

#include <algorithm>
#include <cmath>
#include <istream>
#include <ostream>
#include <random>
#include <rlhf/rlhf.hpp>
#include <stdexcept>
#include <vector>

namespace bandit {

using rlhf::index_t;
using rlhf::tensor;
using rlhf::token_t;

inline constexpr index_t K = 4;  // prompts
inline constexpr index_t M = 6;  // responses

/// A tabular softmax policy with Adam. Exposes logits, so the library
/// computes its log-probs and entropy (LogitsPolicy).
struct tabular_policy {
  std::vector<double> theta, grad, m1, m2;
  double lr = 0.05;
  long long t = 0;

  explicit tabular_policy(std::vector<double> init)
      : theta(std::move(init)), grad(theta.size()), m1(theta.size()), m2(theta.size()) {}

  const double* row(index_t x) const { return theta.data() + x * M; }
  std::vector<double> probs(index_t x) const {
    double mx = -INFINITY, z = 0;
    for (index_t k = 0; k < M; ++k) mx = std::fmax(mx, row(x)[k]);
    std::vector<double> p(M);
    for (index_t k = 0; k < M; ++k) z += p[k] = std::exp(row(x)[k] - mx);
    for (auto& v : p) v /= z;
    return p;
  }
  // ReferenceModel
  tensor<double, 2> log_probs(const rlhf::batch& b) const {
    tensor<double, 2> out({b.size(), 1});
    for (index_t i = 0; i < b.size(); ++i) out(i, 0) = std::log(probs(b.prompts.tokens(i, 0))[b.responses(i, 0)]);
    return out;
  }
  // Policy
  rlhf::rollout generate(const rlhf::prompt_batch& x, const rlhf::sampling&, rlhf::rng_t& g) const {
    rlhf::rollout r;
    const index_t B = x.size();
    r.seqs.prompts = x;
    r.seqs.responses = tensor<token_t, 2>({B, 1});
    r.seqs.response_mask = tensor<double, 2>({B, 1}, 1.0);
    r.logprobs = tensor<double, 2>({B, 1});
    for (index_t i = 0; i < B; ++i) {
      const auto p = probs(x.tokens(i, 0));
      double u = std::uniform_real_distribution<double>(0, 1)(g), c = 0;
      index_t y = M - 1;
      for (index_t k = 0; k < M; ++k)
        if ((c += p[k]) > u) {
          y = k;
          break;
        }
      r.seqs.responses(i, 0) = static_cast<token_t>(y);
      r.logprobs(i, 0) = std::log(p[y]);
    }
    return r;
  }
  void backward(const rlhf::batch& b, rlhf::tensor_view<const double, 2> dlogp) {
    for (index_t i = 0; i < b.size(); ++i) {
      const index_t x = b.prompts.tokens(i, 0), y = b.responses(i, 0);
      const auto p = probs(x);
      for (index_t k = 0; k < M; ++k) grad[x * M + k] += dlogp(i, 0) * ((k == y) - p[k]);
    }
  }
  void step() {  // Adam
    ++t;
    for (std::size_t i = 0; i < theta.size(); ++i) {
      m1[i] = 0.9 * m1[i] + 0.1 * grad[i];
      m2[i] = 0.999 * m2[i] + 0.001 * grad[i] * grad[i];
      const double mh = m1[i] / (1 - std::pow(0.9, t)), vh = m2[i] / (1 - std::pow(0.999, t));
      theta[i] -= lr * mh / (std::sqrt(vh) + 1e-8);
      grad[i] = 0;
    }
  }
  // LogitsPolicy: rows of next-token logits, one per response token
  tensor<double, 2> logits(const rlhf::batch& b) const {
    tensor<double, 2> z({b.size(), M});
    for (index_t i = 0; i < b.size(); ++i)
      for (index_t k = 0; k < M; ++k) z(i, k) = row(b.prompts.tokens(i, 0))[k];
    return z;
  }
  void backward_logits(const rlhf::batch& b, rlhf::tensor_view<const double, 2> dz) {
    for (index_t i = 0; i < b.size(); ++i)
      for (index_t k = 0; k < M; ++k) grad[b.prompts.tokens(i, 0) * M + k] += dz(i, k);
  }
  // Blendable: theta <- (1 - a) theta + a theta_other (reference updates)
  void blend_from(const tabular_policy& o, double a) {
    for (std::size_t i = 0; i < theta.size(); ++i) theta[i] = (1 - a) * theta[i] + a * o.theta[i];
  }
  // Checkpointable: weights and optimizer state, exactly (17 digits)
  void save(std::ostream& os) const {
    os.precision(17);
    os << t << ' ' << lr << ' ' << theta.size();
    for (const auto* v : {&theta, &grad, &m1, &m2})
      for (double x : *v) os << ' ' << x;
    os << '\n';
  }
  void load(std::istream& in) {  // all or nothing: read into a copy, check, then apply
    tabular_policy next = *this;
    std::size_t n = 0;
    in >> next.t >> next.lr >> n;
    if (!in || n != theta.size()) throw std::invalid_argument("tabular_policy: weights of another size");
    for (auto* v : {&next.theta, &next.grad, &next.m1, &next.m2})
      for (double& x : *v) in >> x;
    if (!in) throw std::invalid_argument("tabular_policy: truncated weights");
    *this = std::move(next);
  }
};

/// A tabular critic V(x) with plain SGD.
struct tabular_value {
  std::vector<double> v = std::vector<double>(K, 0.0), g = std::vector<double>(K, 0.0);
  double lr = 0.1;
  tensor<double, 2> values(const rlhf::batch& b) const {
    tensor<double, 2> out({b.size(), 1});
    for (index_t i = 0; i < b.size(); ++i) out(i, 0) = v[b.prompts.tokens(i, 0)];
    return out;
  }
  void backward(const rlhf::batch& b, rlhf::tensor_view<const double, 2> dv) {
    for (index_t i = 0; i < b.size(); ++i) g[b.prompts.tokens(i, 0)] += dv(i, 0);
  }
  void step() {
    for (index_t x = 0; x < K; ++x) {
      v[x] -= lr * g[x];
      g[x] = 0;
    }
  }
  void save(std::ostream& os) const {
    os.precision(17);
    for (double x : v) os << x << ' ';
    os << '\n';
  }
  void load(std::istream& in) {
    auto next = v;
    for (double& x : next) in >> x;
    if (!in) throw std::invalid_argument("tabular_value: truncated values");
    v = std::move(next);
  }
};

struct table_reward {
  std::vector<double> r;
  std::vector<double> score(const rlhf::batch& b) const {
    std::vector<double> s;
    for (index_t i = 0; i < b.size(); ++i) s.push_back(r[b.prompts.tokens(i, 0) * M + b.responses(i, 0)]);
    return s;
  }
};

/// K prompts, M one-token responses, a random reference pi_ref and a reward
/// table r(x, y) in [0, 1]. The optimum of E[r] - beta KL(pi || pi_ref) is
/// pi*(y|x) = pi_ref(y|x) exp(r(x,y) / beta) / Z(x).
struct problem {
  std::vector<double> ref_logits, reward;
  double beta = 0.5;
  explicit problem(unsigned seed) {
    std::mt19937_64 g(seed);
    std::normal_distribution<double> n(0, 1);
    std::uniform_real_distribution<double> u(0, 1);
    for (index_t i = 0; i < K * M; ++i) {
      ref_logits.push_back(n(g));
      reward.push_back(u(g));
    }
  }
  std::vector<double> optimum(index_t x) const {
    std::vector<double> p(M);
    double z = 0;
    for (index_t k = 0; k < M; ++k) z += p[k] = std::exp(ref_logits[x * M + k] + reward[x * M + k] / beta);
    for (auto& v : p) v /= z;
    return p;
  }
  std::vector<std::vector<token_t>> prompts() const {
    std::vector<std::vector<token_t>> p;
    for (index_t x = 0; x < K; ++x) p.push_back({static_cast<token_t>(x)});
    return p;
  }
  /// n preference pairs labelled by Bradley-Terry on r: P(a > b) = sigmoid(r_a - r_b).
  std::vector<rlhf::train::preference> preferences(std::size_t n, unsigned seed) const {
    std::mt19937_64 g(seed);
    std::uniform_int_distribution<int> ux(0, K - 1), uy(0, M - 1);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<rlhf::train::preference> data;
    while (data.size() < n) {
      const int x = ux(g), a = uy(g), b = uy(g);
      if (a == b) continue;
      const double pa = 1 / (1 + std::exp(-(reward[x * M + a] - reward[x * M + b])));
      const bool a_wins = u(g) < pa;
      data.push_back(
          {{static_cast<token_t>(x)}, {static_cast<token_t>(a_wins ? a : b)}, {static_cast<token_t>(a_wins ? b : a)}});
    }
    return data;
  }
};

/// KL(p || q) as the sum of p log(p / q) - p + q (equal for distributions;
/// every term is >= 0 since log x <= x - 1, so a term that rounds below 0 is
/// 0 and the distance never prints as -0.00000 near p = q).
inline double kl(const std::vector<double>& p, const std::vector<double>& q) {
  double s = 0;
  for (std::size_t k = 0; k < p.size(); ++k)
    s += std::max(0.0, (p[k] > 0 ? p[k] * std::log(p[k] / q[k]) : 0.0) - p[k] + q[k]);
  return s;
}

/// Exact distances of a trained policy, averaged over the prompts.
struct evaluation {
  double kl_to_optimum = 0, reward = 0, kl_to_ref = 0;
};
inline evaluation evaluate(const tabular_policy& pi, const tabular_policy& ref, const problem& pb) {
  evaluation e;
  for (index_t x = 0; x < K; ++x) {
    const auto p = pi.probs(x);
    e.kl_to_optimum += kl(p, pb.optimum(x)) / K;
    e.kl_to_ref += kl(p, ref.probs(x)) / K;
    for (index_t k = 0; k < M; ++k) e.reward += p[k] * pb.reward[x * M + k] / K;
  }
  return e;
}

}  // namespace bandit
