// The fused logits kernels, the fused objective entry point, the full KL and
// the fused linear path: against the plain reference loops, closed forms and
// finite differences; float against double.
#include <rlhf/ops/fused_linear.hpp>

#include "helpers.hpp"

using namespace testing;
using rlhf::cpu;
using rlhf::error_kind;
namespace ops = rlhf::ops;

namespace {
template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
}  // namespace

TEST_CASE("fused kernels match the plain loops, in double and float, any V and temperature", "[kernels]") {
  rng r(101);
  for (index_t V : {1, 7, 33, 100, 4099}) {
    for (double tau : {1.0, 0.6}) {
      const index_t N = 5;
      mat z = r.normal_mat(N, V, 0, 3);
      z(2, V / 2) = 40;  // a peaked row
      std::vector<long long> lab(N);
      for (index_t i = 0; i < N; ++i) lab[i] = (i * 13) % V;
      auto L = rlhf::view(std::as_const(lab));
      std::vector<double> lp(N), H(N), lse(N), plp(N), pH(N), plse(N), g = {0.3, -1, 2, 0.5, 1},
                                                                       h = {1, 0.2, -0.4, 0, 2};
      const ops::logits_params p{tau};
      ops::logprobs_entropy(cpu, z.cview(), L, rlhf::view(lp), rlhf::view(H), rlhf::view(lse), p);
      ops::plain_logprobs_entropy(cpu, z.cview(), L, rlhf::view(plp), rlhf::view(pH), rlhf::view(plse), p);
      for (index_t i = 0; i < N; ++i) {
        INFO("V " << V << " tau " << tau << " row " << i);
        CHECK(lp[i] == Approx(plp[i]).epsilon(1e-12).margin(1e-12));
        CHECK(H[i] == Approx(pH[i]).epsilon(1e-12).margin(1e-12));
        CHECK(lse[i] == Approx(plse[i]).epsilon(1e-12));
        CHECK(lp[i] <= 0.0);
      }
      mat dz(N, V), pdz(N, V);
      auto gv = rlhf::view(std::as_const(g)), hv = rlhf::view(std::as_const(h));
      ops::logprobs_entropy_backward(cpu, z.cview(), L, gv, hv, dz.view(), p);
      ops::plain_logprobs_entropy_backward(cpu, z.cview(), L, gv, hv, pdz.view(), p);
      for (std::size_t k = 0; k < dz.v.size(); ++k) CHECK(dz.v[k] == Approx(pdz.v[k]).epsilon(1e-10).margin(1e-14));
      // float kernels against the double reference
      auto zf = cast<float>(z.v);
      std::vector<float> lpf(N), Hf(N), dzf(static_cast<std::size_t>(N * V));
      std::vector<float> gf = cast<float>(g), hf = cast<float>(h);
      auto Zf = rlhf::tensor_view<const float, 2>(zf.data(), {N, V});
      ops::logprobs_entropy(cpu, Zf, L, rlhf::view(lpf), rlhf::view(Hf), {}, p);
      ops::logprobs_entropy_backward(cpu, Zf, L, rlhf::view(std::as_const(gf)), rlhf::view(std::as_const(hf)),
                                     rlhf::tensor_view<float, 2>(dzf.data(), {N, V}), p);
      for (index_t i = 0; i < N; ++i) {
        CHECK(lpf[i] == Approx(plp[i]).epsilon(2e-5).margin(2e-5));
        CHECK(Hf[i] == Approx(pH[i]).epsilon(2e-5).margin(2e-5));
        CHECK(lpf[i] <= 0.0f);
      }
      for (std::size_t k = 0; k < dzf.size(); ++k) CHECK(dzf[k] == Approx(pdz.v[k]).epsilon(1e-4).margin(1e-6));
    }
  }
}

TEST_CASE("masked vocabularies (-1e9 logits) stay finite and exact", "[kernels]") {
  const index_t V = 300;
  std::vector<float> z(V, -1e9f);
  z[3] = 1.0f;
  z[200] = 2.0f;
  std::vector<int> lab = {200};
  std::vector<float> lp(1), H(1), dz(V), g = {1.0f}, h = {0.5f};
  auto Z = rlhf::tensor_view<const float, 2>(z.data(), {1, V});
  ops::logprobs_entropy(cpu, Z, rlhf::view(std::as_const(lab)), rlhf::view(lp), rlhf::view(H));
  const double p200 = 1 / (1 + std::exp(-1.0));
  CHECK(lp[0] == Approx(std::log(p200)).epsilon(1e-6));
  CHECK(H[0] == Approx(-(p200 * std::log(p200) + (1 - p200) * std::log(1 - p200))).epsilon(1e-5));
  ops::logprobs_entropy_backward(cpu, Z, rlhf::view(std::as_const(lab)), rlhf::view(std::as_const(g)),
                                 rlhf::view(std::as_const(h)), rlhf::tensor_view<float, 2>(dz.data(), {1, V}));
  for (index_t k = 0; k < V; ++k) {
    CHECK(std::isfinite(dz[k]));
    if (k != 3 && k != 200) CHECK(dz[k] == 0.0f);
  }
}

TEST_CASE("fused token objective: loss and gradient equal forward, objective, backward", "[kernels][grad]") {
  rng r(102);
  const index_t N = 6, V = 50;
  mat z = r.normal_mat(N, V, 0, 2);
  std::vector<long long> lab(N);
  for (index_t i = 0; i < N; ++i) lab[i] = (i * 7) % V;
  auto L = rlhf::view(std::as_const(lab));
  std::vector<double> adv = {1, -0.5, 2, 0.1, -1, 0.7}, w(N, 1.0 / N), old(N);
  ops::pg_entropy_objective<double> pg{adv.data(), w.data(), 0.01};
  mat dz(N, V);
  const double loss = ops::fused_token_objective(cpu, z.cview(), L, pg, dz.view());
  check_gradient(z.v, dz.v,
                 [&] { return ops::fused_token_objective(cpu, z.cview(), L, pg, rlhf::tensor_view<double, 2>{}); });
  // the same via the separate steps
  std::vector<double> lp(N), H(N);
  ops::logprobs_entropy(cpu, z.cview(), L, rlhf::view(lp), rlhf::view(H));
  double want = 0;
  for (index_t i = 0; i < N; ++i) want += -w[i] * (adv[i] * lp[i] + 0.01 * H[i]);
  CHECK(loss == Approx(want).epsilon(1e-12));
  // PPO token objective, in place over the logits, at temperature 0.8
  for (index_t i = 0; i < N; ++i) old[i] = lp[i] + r.normal(0, 0.2);
  ops::ppo_token_objective<double> ppo{old.data(), adv.data(), w.data(), {0.2, 0.2, 3.0, 20.0}, 0.02};
  const ops::logits_params tp{0.8};
  mat out(N, V), inplace = z;
  ops::fused_token_objective(cpu, z.cview(), L, ppo, out.view(), {}, {}, tp);
  check_gradient(z.v, out.v, [&] {
    return ops::fused_token_objective(cpu, z.cview(), L, ppo, rlhf::tensor_view<double, 2>{}, {}, {}, tp);
  });
  ops::fused_token_objective(cpu, inplace.cview(), L, ppo, inplace.view(), {}, {}, tp);
  for (std::size_t k = 0; k < out.v.size(); ++k) CHECK(inplace.v[k] == Approx(out.v[k]).epsilon(1e-11).margin(1e-15));
}

TEST_CASE("full-vocabulary KL: closed form and gradient", "[kernels][kl][grad]") {
  // p = softmax([0, log 3]) = [1/4, 3/4], q = [1/2, 1/2]
  mat z(1, 2, {0.0, std::log(3.0)}), y(1, 2, {0.0, 0.0});
  std::vector<double> kl(1);
  rlhf::kl::full_from_logits(cpu, z.cview(), y.cview(), rlhf::view(kl));
  CHECK(kl[0] == Approx(0.25 * std::log(0.5) + 0.75 * std::log(1.5)));
  rng r(103);
  mat a = r.normal_mat(3, 9), b = r.normal_mat(3, 9), g(3, 9);
  std::vector<double> up = {1.0, -0.5, 2.0}, k3(3);
  rlhf::kl::full_from_logits(cpu, a.cview(), b.cview(), rlhf::view(k3), g.view(), rlhf::view(std::as_const(up)), 0.7);
  check_gradient(a.v, g.v, [&] {
    std::vector<double> k(3);
    rlhf::kl::full_from_logits(cpu, a.cview(), b.cview(), rlhf::view(k), {}, {}, 0.7);
    return up[0] * k[0] + up[1] * k[1] + up[2] * k[2];
  });
  for (double x : k3) CHECK(x >= 0.0);
  expect_error([&] { rlhf::kl::full_from_logits(cpu, a.cview(), z.cview(), rlhf::view(k3)); }, error_kind::shape,
               "ref_logits");
}

TEST_CASE("fused linear path: equals the materialized computation, chunked or not", "[kernels][grad]") {
  rng r(104);
  const index_t N = 37, H = 8, V = 23;
  mat X = r.normal_mat(N, H), W = r.normal_mat(V, H, 0, 0.5);
  std::vector<long long> lab(N);
  for (index_t i = 0; i < N; ++i) lab[i] = (i * 5) % V;
  auto L = rlhf::view(std::as_const(lab));
  std::vector<double> adv(N), w(N, 1.0 / N);
  for (auto& a : adv) a = r.normal();
  ops::pg_entropy_objective<double> pg{adv.data(), w.data(), 0.05};
  // materialized reference
  mat Z(N, V), dZ(N, V);
  for (index_t i = 0; i < N; ++i)
    for (index_t k = 0; k < V; ++k)
      for (index_t j = 0; j < H; ++j) Z(i, k) += X(i, j) * W(k, j);
  const double want = ops::fused_token_objective(cpu, Z.cview(), L, pg, dZ.view());
  mat dXw(N, H), dWw(V, H);
  for (index_t i = 0; i < N; ++i)
    for (index_t k = 0; k < V; ++k)
      for (index_t j = 0; j < H; ++j) {
        dXw(i, j) += dZ(i, k) * W(k, j);
        dWw(k, j) += dZ(i, k) * X(i, j);
      }
  for (index_t chunk : {0, 5, 64}) {
    ops::fused_linear_params p;
    p.chunk_rows = chunk;
    mat dX(N, H), dW(V, H);
    const auto res = ops::fused_linear_objective(cpu, X.cview(), W.cview(), L, pg, dX.view(), dW.view(), {}, {}, p);
    CHECK(res.loss == Approx(want).epsilon(1e-12));
    for (std::size_t k = 0; k < dX.v.size(); ++k) CHECK(dX.v[k] == Approx(dXw.v[k]).epsilon(1e-10).margin(1e-14));
    for (std::size_t k = 0; k < dW.v.size(); ++k) CHECK(dW.v[k] == Approx(dWw.v[k]).epsilon(1e-10).margin(1e-14));
  }
  mat dX(N, H), dW(V, H);
  ops::fused_linear_objective(cpu, X.cview(), W.cview(), L, pg, dX.view(), dW.view());
  auto f = [&] {
    mat a(N, H), b(V, H);
    return ops::fused_linear_objective(cpu, X.cview(), W.cview(), L, pg, a.view(), b.view()).loss;
  };
  check_gradient(X.v, dX.v, f);
  check_gradient(W.v, dW.v, f);
  mat wrongW(V, H + 1);
  expect_error([&] { (void)ops::fused_linear_objective(cpu, X.cview(), wrongW.cview(), L, pg, dX.view(), dW.view()); },
               error_kind::shape, "weight");
}

TEST_CASE("simd::vlog: within 4 ulp of std::log over the normal range, float and double", "[kernels]") {
  namespace sd = rlhf::simd;
  auto check = [](auto zero, double lo, double hi) {
    using T = decltype(zero);
    constexpr int W = 8;
    std::mt19937_64 g(3);
    std::uniform_real_distribution<double> u(lo, hi);
    double worst = 0;
    for (int it = 0; it < 20000; ++it) {
      sd::vec<T, W> x;
      for (int i = 0; i < W; ++i) x[i] = static_cast<T>(std::exp(u(g)));
      x[0] = it == 0 ? std::numeric_limits<T>::min() : x[0];  // the smallest normal
      x[1] = it == 0 ? T(1) : x[1];
      const auto y = sd::vlog<T, W>(x);
      for (int i = 0; i < W; ++i) {
        const long double ref = std::log(static_cast<long double>(x[i]));
        const T r = static_cast<T>(ref);
        const double ulp = std::fabs(static_cast<double>(std::nextafter(r, T(INFINITY)) - r));
        worst = std::fmax(worst, std::fabs(static_cast<double>(static_cast<long double>(y[i]) - ref)) / ulp);
      }
    }
    CHECK(worst <= 4.0);
    const auto one = sd::vlog<T, 1>(sd::vec<T, 1>{T(1)});
    CHECK(one[0] == T(0));
  };
  check(0.0, -700.0, 700.0);
  check(0.0f, -85.0, 85.0);
}
