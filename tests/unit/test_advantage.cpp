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
