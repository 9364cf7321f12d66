// advantage/: hand-computed estimators and their contracts.
#include "helpers.hpp"

using namespace testing;
using rlhf::cpu;
using rlhf::error_kind;
namespace adv = rlhf::adv;

namespace {
struct out2 {
  mat a, r;
  out2(index_t B, index_t T) : a(B, T), r(B, T) {}
  adv::outputs<double> view() { return {a.view(), r.view()}; }
};
}  // namespace

TEST_CASE("GAE: hand-computed, with and without a masked hole", "[adv][gae]") {
  mat rw(1, 3, {0, 0, 1}), v(1, 3, {0.2, 0.4, 0.6}), m(1, 3, 1.0);
  adv::gae_params p{0.5, 0.5, false};
  out2 o(1, 3);
  adv::gae(cpu, rw.cview(), v.cview(), m.cview(), p, o.view());
  CHECK(o.a(0, 2) == Approx(0.4));
  CHECK(o.a(0, 1) == Approx(0.0).margin(1e-15));
  CHECK(o.a(0, 0) == Approx(0.0).margin(1e-15));
  CHECK(o.r(0, 0) == Approx(0.2));
  CHECK(o.r(0, 2) == Approx(1.0));
  mat hole(1, 3, {1, 0, 1});
  adv::gae(cpu, rw.cview(), v.cview(), hole.cview(), p, o.view());
  CHECK(o.a(0, 2) == Approx(0.4));
  CHECK(o.a(0, 1) == Approx(0.4));  // carried through the observation token
  CHECK(o.a(0, 0) == Approx(0.2));
  CHECK(o.r(0, 1) == Approx(0.8));
  // whitened: mean 0 and unit (unbiased) variance over the valid tokens
  mat rw2(2, 3, {0, 0, 1, 0, 1, 0}), v2(2, 3, {0.1, 0.2, 0.3, -0.1, 0.5, 0.0}), m2(2, 3, 1.0);
  auto res = adv::gae(cpu, rw2.cview(), v2.cview(), m2.cview(), adv::gae_params{0.9, 0.8, true});
  double mean = 0, var = 0;
  for (auto x : res.advantages.storage()) mean += x / 6;
  for (auto x : res.advantages.storage()) var += (x - mean) * (x - mean) / 5;
  // verl's masked_mean divides by n + 1e-8, so the mean is ~1e-9, not 0
  CHECK(mean == Approx(0.0).margin(1e-8));
  CHECK(var == Approx(1.0).epsilon(1e-6));
  mat one(1, 3, {1, 0, 0});
  expect_error([&] { adv::gae(cpu, rw.cview(), v.cview(), one.cview(), adv::gae_params{}, o.view()); },
               error_kind::empty, "response_mask");
  expect_error(
      [&] {
        adv::gae(cpu, rw.cview(), v.cview(), m.cview(), adv::gae_params{1.5, 1.0}, o.view());
      },
      error_kind::param, "gamma");
}

TEST_CASE("GRPO, Dr. GRPO, RLOO, pass@k, OPO, GPG: hand-computed", "[adv][group]") {
  // scores 1, 3 (group 7) and 5 (group 2, a singleton); rewards on the last token
  mat rw(3, 2, {0, 1, 0, 3, 0, 5}), m(3, 2, {1, 1, 1, 0, 1, 1});
  std::vector<long long> idx = {7, 7, 2};
  auto I = rlhf::view(std::as_const(idx));
  out2 o(3, 2);
  adv::grpo(cpu, rw.cview(), m.cview(), I, adv::grpo_params{0.0, true}, o.view());
  CHECK(o.a(0, 0) == Approx(-1 / std::sqrt(2.0)));
  CHECK(o.a(1, 0) == Approx(1 / std::sqrt(2.0)));
  CHECK(o.a(1, 1) == 0.0);          // masked
  CHECK(o.a(2, 1) == Approx(5.0));  // singleton: mean 0, std 1
  CHECK(o.r(0, 0) == o.a(0, 0));
  adv::grpo(cpu, rw.cview(), m.cview(), I, adv::grpo_params{1e-6, false}, o.view());
  CHECK(o.a(0, 0) == Approx(-1.0));
  adv::rloo(cpu, rw.cview(), m.cview(), I, adv::rloo_params{true}, o.view());
  CHECK(o.a(0, 0) == Approx(-2.0));
  CHECK(o.a(1, 0) == Approx(2.0));
  CHECK(o.a(2, 0) == Approx(5.0));
  adv::rloo(cpu, rw.cview(), m.cview(), I, adv::rloo_params{false}, o.view());
  CHECK(o.a(2, 0) == 0.0);
  adv::opo(cpu, rw.cview(), m.cview(), I, o.view());  // lengths 2 and 1: baseline (2*1 + 1*3)/3
  CHECK(o.a(0, 0) == Approx(1 - 5.0 / 3));
  CHECK(o.a(1, 0) == Approx(3 - 5.0 / 3));
  CHECK(o.a(2, 0) == Approx(5.0));
  adv::gpg(cpu, rw.cview(), m.cview(), I, adv::gpg_params{1.0}, o.view());  // alpha = 3/3
  CHECK(o.a(0, 0) == Approx(-1.0));
  CHECK(o.a(2, 0) == Approx(5.0));
  // pass@k: groups {1, 3} and {5, 5} (a tie gives 0)
  mat rw4(4, 1, {1, 3, 5, 5}), m4(4, 1, 1.0);
  std::vector<long long> idx4 = {0, 0, 1, 1};
  out2 o4(4, 1);
  adv::grpo_passk(cpu, rw4.cview(), m4.cview(), rlhf::view(std::as_const(idx4)), adv::grpo_params{0.0, true},
                  o4.view());
  CHECK(o4.a(0, 0) == 0.0);
  CHECK(o4.a(1, 0) == Approx(2 / std::sqrt(2.0)));
  CHECK(o4.a(2, 0) == 0.0);
  CHECK(o4.a(3, 0) == 0.0);
  expect_error([&] { adv::grpo_passk(cpu, rw.cview(), m.cview(), I, adv::grpo_params{}, o.view()); }, error_kind::empty,
               "index");
  std::vector<long long> short_idx = {1, 2};
  expect_error([&] { adv::grpo(cpu, rw.cview(), m.cview(), rlhf::view(std::as_const(short_idx)), {}, o.view()); },
               error_kind::shape, "index");
}

TEST_CASE("REINFORCE++, its baseline variant and ReMax: hand-computed", "[adv]") {
  mat rw(1, 3, {1, 7, 2}), m(1, 3, {1, 0, 1});
  out2 o(1, 3);
  adv::reinforce_pp_params p;
  p.gamma = 0.5;
  adv::reinforce_pp(cpu, rw.cview(), m.cview(), p, o.view());
  CHECK(o.r(0, 2) == 2.0);
  CHECK(o.r(0, 1) == 0.0);  // masked: reward dropped, return carried
  CHECK(o.r(0, 0) == 2.0);  // 1 + 0.5 * 2
  CHECK(o.a(0, 1) == 0.0);
  {  // both valid returns are 2: verl's eps-shifted mean leaves (2 - mu) * 1e4 ~ 1e-4, not 0
    const double mu = 4 / (2 + 1e-8), var = 2 * (2 - mu) * (2 - mu) / (2 + 1e-8) * 2;
    CHECK(o.a(0, 0) == Approx((2 - mu) / std::sqrt(var + 1e-8)).epsilon(1e-6));
  }
  mat full(1, 3, 1.0), rw2(1, 3, {1, 0, 2});
  adv::reinforce_pp(cpu, rw2.cview(), full.cview(), p, o.view());
  CHECK(o.r(0, 0) == Approx(1.5));
  CHECK(o.r(0, 1) == Approx(1.0));
  // whitened returns [1.5, 1, 2]: mean 1.5, unbiased var 0.25
  CHECK(o.a(0, 2) == Approx(0.5 / std::sqrt(0.25 + 1e-8)));
  // ReMax
  mat rr(1, 3, {1, 2, 3}), mm(1, 3, {1, 1, 0});
  std::vector<double> base = {0.5};
  adv::remax(cpu, rr.cview(), rlhf::view(std::as_const(base)), mm.cview(), o.view());
  CHECK(o.r(0, 0) == 3.0);
  CHECK(o.r(0, 2) == 0.0);
  CHECK(o.a(0, 0) == 2.5);
  CHECK(o.a(0, 2) == 0.0);
  // baseline variant: scores - group mean, whitened over the batch
  mat rb(2, 1, {1, 3}), mb(2, 1, 1.0);
  std::vector<long long> idx = {0, 0};
  out2 ob(2, 1);
  adv::reinforce_pp_baseline(cpu, rb.cview(), mb.cview(), rlhf::view(std::as_const(idx)), rlhf::whiten_params::verl(),
                             ob.view());
  CHECK(ob.a(0, 0) == Approx(-1 / std::sqrt(2.0 + 1e-8)));
  std::vector<double> nanb = {NAN};
  expect_error([&] { adv::remax(cpu, rr.cview(), rlhf::view(std::as_const(nanb)), mm.cview(), o.view()); },
               error_kind::non_finite, "reward_baselines");
  mat nan_rw = rr;
  nan_rw(0, 0) = INFINITY;
  expect_error([&] { adv::reinforce_pp(cpu, nan_rw.cview(), full.cview(), p, o.view()); }, error_kind::non_finite,
               "token_level_rewards");
  mat wrong(1, 2, 1.0);
  expect_error([&] { adv::reinforce_pp(cpu, rr.cview(), wrong.cview(), p, o.view()); }, error_kind::shape,
               "response_mask");
}

TEST_CASE("MaxRL, GDPO and leave-one-out GRPO (NeMo-RL): hand-computed", "[adv][group]") {
  std::vector<long long> idx = {0, 0, 0, 0, 1};
  const rlhf::tensor_view<const long long, 1> iv(idx.data(), {5});
  // outcome rewards in the last column; row 4 alone in its group
  mat rw(5, 2, {0, 1, 0, 0, 0, 1, 0, 1, 0, 3}), m(5, 2, 1.0);
  m(1, 0) = 0;
  out2 o(5, 2);
  adv::maxrl(cpu, rw.cview(), m.cview(), iv, adv::maxrl_params{1e-6}, o.view());
  const double mu = 0.75;
  CHECK(o.a(0, 1) == Approx((1 - mu) / (mu + 1e-6)).epsilon(1e-15));
  CHECK(o.a(1, 1) == Approx(-mu / (mu + 1e-6)).epsilon(1e-15));
  CHECK(o.a(1, 0) == 0.0);  // masked
  CHECK(o.a(4, 0) == 3.0);  // a group of one keeps its score
  CHECK(o.r.v == o.a.v);

  // GDPO with one component is GRPO, then whitened over the valid tokens, times the mask
  out2 g(5, 2), w(5, 2);
  adv::gdpo(cpu, rw.cview(), m.cview(), iv, {}, adv::gdpo_params{}, g.view());
  adv::grpo(cpu, rw.cview(), m.cview(), iv, adv::grpo_params::verl(), w.view());
  mat white(5, 2);
  rlhf::ops::masked_whiten(cpu, w.a.cview(), m.cview(), rlhf::ops::whiten_params::verl(), white.view());
  for (std::size_t i = 0; i < white.v.size(); ++i) CHECK(g.a.v[i] == Approx(white.v[i] * m.v[i]).margin(1e-15));
  CHECK(g.r.v == g.a.v);
  // two components with weights 0.7 (float32: 0.699999988) and 1: A = 0.7 A_0 + A_1
  mat comps(2, 5, {1, 0, 1, 1, 2, 0, 0, 4, 4, 1});
  adv::gdpo_params gp;
  gp.weights = {0.7, 1.0};
  adv::gdpo(cpu, rw.cview(), m.cview(), iv, comps.cview(), gp, g.view());
  // by hand: component 0 in group 0 = {1, 0, 1, 1} (mean 0.75, std 0.5), component 1 = {0, 0, 4, 4}
  // (mean 2, std 2.3094); group 1 is a group of one (mean 0, std 1)
  const double s1 = std::sqrt(16.0 / 3.0);
  std::vector<double> a = {0.7f * (0.25f / (0.5f + 1e-6f)) + (-2.0f / (static_cast<float>(s1) + 1e-6f)),
                           0.7f * (-0.75f / (0.5f + 1e-6f)) + (-2.0f / (static_cast<float>(s1) + 1e-6f)),
                           0.7f * (0.25f / (0.5f + 1e-6f)) + (2.0f / (static_cast<float>(s1) + 1e-6f)),
                           0.7f * (0.25f / (0.5f + 1e-6f)) + (2.0f / (static_cast<float>(s1) + 1e-6f)),
                           0.7f * (2.0f / (1.0f + 1e-6f)) + (1.0f / (1.0f + 1e-6f))};
  mat tiled(5, 2);
  for (index_t b = 0; b < 5; ++b)
    for (index_t t = 0; t < 2; ++t) tiled(b, t) = a[static_cast<std::size_t>(b)] * m(b, t);
  rlhf::ops::masked_whiten(cpu, tiled.cview(), m.cview(), rlhf::ops::whiten_params::verl(), white.view());
  for (std::size_t i = 0; i < white.v.size(); ++i) CHECK(g.a.v[i] == Approx(white.v[i] * m.v[i]).margin(1e-6));
  gp.weights = {1.0};
  expect_error([&] { adv::gdpo(cpu, rw.cview(), m.cview(), iv, comps.cview(), gp, g.view()); }, error_kind::param,
               "gdpo_reward_weights");

  // NeMo-RL: rewards {1, 2, 4} in one group, {5, 9} a pair, {7} alone
  std::vector<double> r = {1, 2, 4, 5, 9, 7};
  std::vector<long long> gi = {0, 0, 0, 1, 1, 2};
  const rlhf::tensor_view<const double, 1> rv(r.data(), {6});
  const rlhf::tensor_view<const long long, 1> giv(gi.data(), {6});
  mat A(6, 3);
  adv::loo_grpo(cpu, rv, giv, adv::loo_grpo_params::nemo_rl(true, true), A.view());
  // sample 0 without itself: b = 3, E[r^2] = 10, n = 2: std = sqrt(1 * 2)
  CHECK(A(0, 0) == Approx((1 - 3) / (std::sqrt(2.0) + 1e-6)).epsilon(1e-14));
  CHECK(A(0, 2) == A(0, 0));  // constant over the row, not masked
  // a leave-one-out pair: std = sqrt(0 * inf) = NaN -> 0, so not normalised
  CHECK(A(3, 0) == -4.0);
  CHECK(A(4, 0) == 4.0);
  CHECK(A(5, 0) == 0.0);  // a group of one: the baseline is the reward
  adv::loo_grpo(cpu, rv, giv, adv::loo_grpo_params::nemo_rl(false, true), A.view());
  // with itself: b = 7/3, E[r^2] = 7, n = 3, f = 1.5 (float32)
  CHECK(A(0, 0) == Approx((1 - 7.0 / 3) / (std::sqrt((7 - 49.0 / 9) * 1.5) + 1e-6)).epsilon(1e-12));
  CHECK(A(3, 0) == Approx(-2 / (std::sqrt(4.0 * 2) + 1e-6)).epsilon(1e-14));  // pair: var 4, f = 2
}
