// Reliability (issue 12): finite input never gives NaN / Inf (a finite value
// or a `non_finite` error naming the argument), every argument of the ops is
// checked (shape, null storage), documented aliasing works, option ranges
// are refused where the options are read.
#include <cstring>
#include <limits>
#include <rlhf/kl/full.hpp>

#include "helpers.hpp"

using namespace testing;
using rlhf::error_kind;
using rlhf::index_t;

namespace {

bool all_finite(const mat& m) {
  for (double x : m.v)
    if (!std::isfinite(x)) return false;
  return true;
}

/// f() either returns (then every value `got` lists and every buffer is
/// finite) or throws rlhf::error(non_finite) naming `arg`.
template <class F>
void finite_or_refused_at(int line, F&& f, std::initializer_list<const mat*> outs, const std::string& arg) {
  INFO("called from line " << line);
  try {
    const std::vector<double> got = f();
    for (double x : got) CHECK(std::isfinite(x));
    for (const mat* o : outs) CHECK(all_finite(*o));
  } catch (const rlhf::error& e) {
    INFO(e.what());
    CHECK(e.kind() == error_kind::non_finite);
    CHECK(std::string(e.what()).find(arg) != std::string::npos);
  }
}

// (the caller's line: clang 14 with libstdc++ 12 has no std::source_location)
#define finite_or_refused(...) finite_or_refused_at(__LINE__, __VA_ARGS__)

constexpr double big = 1e308;

}  // namespace

TEST_CASE("reliability: PPO presets give finite gradients at padding (old_logp = -1e4, advantage 0)", "[reliability]") {
  mat logp(2, 3, {-0.5, -1.0, 0.0, -0.2, 0.0, 0.0});
  mat old(2, 3, {-0.6, -0.9, -1e4, -0.3, -1e4, -1e4});
  mat adv(2, 3, {1.0, -0.5, 0.0, 0.3, 0.0, 0.0});
  mat mask(2, 3, {1, 1, 0, 1, 0, 0});
  for (const auto& p : {rlhf::ppo::policy_params::trl(), rlhf::ppo::policy_params::sb3(),
                        rlhf::ppo::policy_params::verl(), rlhf::ppo::policy_params::openrlhf()}) {
    mat d(2, 3);
    const auto r = rlhf::ppo::policy_loss(rlhf::cpu, logp.cview(), old.cview(), adv.cview(), mask.cview(), p, d.view());
    CHECK(std::isfinite(r.loss));
    CHECK(std::isfinite(r.clipfrac));
    CHECK(std::isfinite(r.ppo_kl));
    CHECK(all_finite(d));
    CHECK(d(0, 2) == 0.0);
    CHECK(d(1, 1) == 0.0);
  }
  for (auto k :
       {rlhf::ppo::policy_loss_kind::sapo, rlhf::ppo::policy_loss_kind::cispo, rlhf::ppo::policy_loss_kind::gspo,
        rlhf::ppo::policy_loss_kind::geo_mean, rlhf::ppo::policy_loss_kind::dppo_tv,
        rlhf::ppo::policy_loss_kind::dppo_kl, rlhf::ppo::policy_loss_kind::gpg}) {
    mat d(2, 3);
    INFO(rlhf::ppo::to_string(k));
    auto v = rlhf::ppo::variant_params::verl(k);
    const auto r =
        rlhf::ppo::policy_loss_variant(rlhf::cpu, logp.cview(), old.cview(), adv.cview(), mask.cview(), v, d.view());
    CHECK(std::isfinite(r.loss));
    CHECK(all_finite(d));
  }
}

TEST_CASE("reliability: overflowing finite input gives a finite value or a non_finite error, never NaN / Inf",
          "[reliability]") {
  mat mask(2, 2, {1, 1, 1, 1});
  mat huge(2, 2, {big, big, big, -big});
  SECTION("aggregation and masked statistics") {
    for (auto m : {rlhf::agg_mode::token_mean, rlhf::agg_mode::seq_mean_token_sum, rlhf::agg_mode::seq_mean_token_mean,
                   rlhf::agg_mode::token_sum}) {
      rlhf::agg_params p;
      p.mode = m;
      finite_or_refused(
          [&] { return std::vector<double>{rlhf::ops::aggregate(rlhf::cpu, huge.cview(), mask.cview(), p)}; }, {},
          "loss_mat");
    }
    finite_or_refused(
        [&] { return std::vector<double>{rlhf::ops::masked_mean(rlhf::cpu, huge.cview(), mask.cview())}; }, {},
        "values");
    finite_or_refused([&] { return std::vector<double>{rlhf::ops::masked_sum(rlhf::cpu, huge.cview(), mask.cview())}; },
                      {}, "values");
    finite_or_refused(
        [&] {
          const auto v = rlhf::ops::masked_var(rlhf::cpu, huge.cview(), mask.cview());
          return std::vector<double>{v.var, v.mean};
        },
        {}, "values");
    mat out(2, 2);
    finite_or_refused(
        [&] {
          const auto s =
              rlhf::ops::masked_whiten(rlhf::cpu, huge.cview(), mask.cview(), rlhf::whiten_params::verl(), out.view());
          return std::vector<double>{s.mean, s.var};
        },
        {&out}, "values");
  }
  SECTION("the KL penalty and the KL in the loss") {
    mat logp(2, 2, {0.0, -1.0, -2.0, -0.5}), ref(2, 2, {-1000.0, -1.0, -800.0, -0.5});
    for (auto e : {rlhf::kl_estimator::k1, rlhf::kl_estimator::k2, rlhf::kl_estimator::k3, rlhf::kl_estimator::abs}) {
      INFO(rlhf::to_string(e));
      rlhf::kl_params kp = rlhf::kl_params::verl(e);
      kp.log_ratio_clamp = kp.value_clamp = INFINITY;  // unclamped: k3 of a log ratio of 1000 overflows
      mat d(2, 2);
      finite_or_refused(
          [&] {
            return std::vector<double>{rlhf::kl::loss(rlhf::cpu, logp.cview(), ref.cview(), mask.cview(), 0.1, kp,
                                                      rlhf::agg_params{}, d.view())
                                           .loss};
          },
          {&d}, "log");
      mat scores(2, 2, {0, 1, 0, 1}), rw(2, 2);
      finite_or_refused(
          [&] {
            const auto s = rlhf::kl::apply_in_reward(rlhf::cpu, scores.cview(), logp.cview(), ref.cview(), mask.cview(),
                                                     0.1, kp, rw.view());
            return std::vector<double>{s.mean_seq_kl};
          },
          {&rw}, "log");
    }
  }
  SECTION("group estimators whose reward sums overflow") {
    mat r(4, 2, {big, big, 1.0, 0.0, -big, -big, 2.0, 0.0});
    mat m(4, 2, 1.0);
    std::vector<long long> idx{0, 0, 1, 1};
    rlhf::tensor_view<const long long, 1> index(idx.data(), {4});
    mat a(4, 2), ret(4, 2);
    rlhf::adv::outputs<double> out{a.view(), ret.view()};
    auto run = [&](auto f) {
      finite_or_refused(
          [&] {
            f();
            return std::vector<double>{};
          },
          {&a, &ret}, "token_level_rewards");
    };
    run([&] { rlhf::adv::grpo(rlhf::cpu, r.cview(), m.cview(), index, rlhf::adv::grpo_params::verl(), out); });
    run([&] { rlhf::adv::grpo_passk(rlhf::cpu, r.cview(), m.cview(), index, rlhf::adv::grpo_params::verl(), out); });
    run([&] { rlhf::adv::rloo(rlhf::cpu, r.cview(), m.cview(), index, rlhf::adv::rloo_params{}, out); });
    run([&] { rlhf::adv::opo(rlhf::cpu, r.cview(), m.cview(), index, out); });
    run([&] { rlhf::adv::gpg(rlhf::cpu, r.cview(), m.cview(), index, rlhf::adv::gpg_params{}, out); });
    run([&] {
      rlhf::adv::reinforce_pp_baseline(rlhf::cpu, r.cview(), m.cview(), index, rlhf::whiten_params::verl(), out);
    });
    run([&] { rlhf::adv::reinforce_pp(rlhf::cpu, r.cview(), m.cview(), rlhf::adv::reinforce_pp_params{}, out); });
    std::vector<double> base{0, 0, -big, 0};
    run([&] {
      rlhf::adv::remax(rlhf::cpu, r.cview(), rlhf::tensor_view<const double, 1>(base.data(), {4}), m.cview(), out);
    });
    mat v(4, 2, 0.0);
    run([&] { rlhf::adv::gae(rlhf::cpu, r.cview(), v.cview(), m.cview(), rlhf::adv::gae_params{}, out); });
  }
  SECTION("logits near the largest finite value") {
    for (double z0 : {1e308, -1e308, 1.7e308}) {
      mat z(2, 3, {z0, 0.0, -z0, z0, z0, 1.0});
      std::vector<long long> lab{0, 2};
      rlhf::tensor_view<const long long, 1> labels(lab.data(), {2});
      std::vector<double> lp(2), h(2), dl(2, 1.0), dh(2, 0.5);
      mat dz(2, 3);
      finite_or_refused(
          [&] {
            rlhf::ops::logprobs_entropy(rlhf::cpu, z.cview(), labels, rlhf::tensor_view<double, 1>(lp.data(), {2}),
                                        rlhf::tensor_view<double, 1>(h.data(), {2}));
            return std::vector<double>{lp[0], lp[1], h[0], h[1]};
          },
          {}, "logits");
      finite_or_refused(
          [&] {
            rlhf::ops::logprobs_entropy_backward(rlhf::cpu, z.cview(), labels,
                                                 rlhf::tensor_view<const double, 1>(dl.data(), {2}),
                                                 rlhf::tensor_view<const double, 1>(dh.data(), {2}), dz.view());
            return std::vector<double>{};
          },
          {&dz}, "logits");
    }
    // float: near 3e38
    std::vector<float> zf{3e38f, 0.0f, -3e38f, 3e38f, 3e38f, 1.0f}, lpf(2), hf(2);
    std::vector<long long> lab{0, 2};
    try {
      rlhf::ops::logprobs_entropy(rlhf::cpu, rlhf::tensor_view<const float, 2>(zf.data(), {2, 3}),
                                  rlhf::tensor_view<const long long, 1>(lab.data(), {2}),
                                  rlhf::tensor_view<float, 1>(lpf.data(), {2}),
                                  rlhf::tensor_view<float, 1>(hf.data(), {2}));
      for (float x : {lpf[0], lpf[1], hf[0], hf[1]}) CHECK(std::isfinite(x));
    } catch (const rlhf::error& e) {
      CHECK(e.kind() == error_kind::non_finite);
    }
  }
}

TEST_CASE("reliability: every input is scanned for NaN / Inf, also cotangents, upstreams and lengths",
          "[reliability]") {
  mat v(2, 2, {1.0, 2.0, 3.0, 5.0}), mask(2, 2, {1, 1, 1, 0}), cot(2, 2, {0.1, NAN, 0.2, 0.3}), dv(2, 2);
  expect_error(
      [&] {
        rlhf::ops::masked_whiten_backward(rlhf::cpu, v.cview(), mask.cview(), rlhf::whiten_params::verl(), cot.cview(),
                                          dv.view());
      },
      error_kind::non_finite, "cot");
  std::vector<double> c1{0.5, INFINITY};
  expect_error(
      [&] {
        rlhf::ops::masked_mean_rows_backward(rlhf::cpu, mask.cview(), 0.0,
                                             rlhf::tensor_view<const double, 1>(c1.data(), {2}), dv.view());
      },
      error_kind::non_finite, "cot");
  expect_error(
      [&] {
        rlhf::ops::masked_mean_rows_backward(rlhf::cpu, mask.cview(), NAN,
                                             rlhf::tensor_view<const double, 1>(c1.data(), {2}), dv.view());
      },
      error_kind::param, "eps");
  mat badmask(2, 2, {1, NAN, 1, 0});
  std::vector<double> c2{0.5, 0.5};
  expect_error(
      [&] {
        rlhf::ops::masked_mean_rows_backward(rlhf::cpu, badmask.cview(), 0.0,
                                             rlhf::tensor_view<const double, 1>(c2.data(), {2}), dv.view());
      },
      error_kind::non_finite, "mask");
  // full_from_logits' upstream
  mat z(2, 3, {0.1, 0.2, 0.3, -1.0, 0.0, 1.0}), zr(2, 3, {0.0, 0.0, 0.0, 1.0, 0.0, -1.0}), dz(2, 3);
  std::vector<double> kl(2), up{1.0, NAN};
  expect_error(
      [&] {
        rlhf::kl::full_from_logits(rlhf::cpu, z.cview(), zr.cview(), rlhf::tensor_view<double, 1>(kl.data(), {2}),
                                   dz.view(), rlhf::tensor_view<const double, 1>(up.data(), {2}));
      },
      error_kind::non_finite, "upstream");
  // DPO's completion lengths
  std::vector<double> ch{-1.0, -2.0}, rj{-1.5, -2.5}, rc{-1.2, -2.1}, rr{-1.4, -2.4}, lc{3, NAN}, lr{2, 2};
  using V1 = rlhf::tensor_view<const double, 1>;
  for (auto lt : {rlhf::dpo::loss_type::sigmoid, rlhf::dpo::loss_type::ipo}) {
    auto p = rlhf::dpo::params::trl(lt, 0.1);
    expect_error(
        [&] {
          rlhf::dpo::loss(rlhf::cpu, V1(ch.data(), {2}), V1(rj.data(), {2}), V1(rc.data(), {2}), V1(rr.data(), {2}), p,
                          {}, V1(lc.data(), {2}), V1(lr.data(), {2}));
        },
        error_kind::non_finite, "chosen_lengths");
  }
}

TEST_CASE("reliability: shape mismatches and null storage in any argument are refused before memory is read",
          "[reliability]") {
  mat v(2, 3, 1.0), m(2, 2, 1.0), m3(2, 3, 1.0);
  expect_error([&] { (void)rlhf::ops::masked_sum(rlhf::cpu, v.cview(), m.cview()); }, error_kind::shape, "mask");
  const rlhf::tensor_view<const double, 2> null23(nullptr, {2, 3});
  expect_error([&] { (void)rlhf::ops::masked_sum(rlhf::cpu, v.cview(), null23); }, error_kind::shape, "mask");
  expect_error([&] { (void)rlhf::ops::masked_mean(rlhf::cpu, v.cview(), null23); }, error_kind::shape, "mask");
  expect_error([&] { (void)rlhf::ops::masked_mean(rlhf::cpu, null23, m3.cview()); }, error_kind::shape, "values");
  const auto p = rlhf::ppo::policy_params::verl();
  expect_error([&] { (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), null23, v.cview(), m3.cview(), p); },
               error_kind::shape, "old_log_prob");
  expect_error([&] { (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), v.cview(), null23, m3.cview(), p); },
               error_kind::shape, "advantages");
  expect_error([&] { (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), v.cview(), v.cview(), null23, p); },
               error_kind::shape, "mask");
  mat d(2, 3);
  const rlhf::tensor_view<double, 2> nullout(nullptr, {2, 3});
  expect_error(
      [&] { (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), v.cview(), v.cview(), m3.cview(), p, nullout); },
      error_kind::shape, "dlogp");
}

TEST_CASE("reliability: documented aliasing gives the unaliased answer", "[reliability]") {
  rng g(5);
  SECTION("GAE with advantages and returns as one view is refused or exact") {
    mat r = g.normal_mat(2, 4), val = g.normal_mat(2, 4), m(2, 4, 1.0), a(2, 4), ret(2, 4), both(2, 4);
    rlhf::adv::gae(rlhf::cpu, r.cview(), val.cview(), m.cview(), rlhf::adv::gae_params{}, {a.view(), ret.view()});
    try {
      rlhf::adv::gae(rlhf::cpu, r.cview(), val.cview(), m.cview(), rlhf::adv::gae_params{}, {both.view(), both.view()});
      FAIL("aliased advantages and returns were accepted");
    } catch (const rlhf::error& e) {
      CHECK(e.kind() == error_kind::shape);
      CHECK(std::string(e.what()).find("returns") != std::string::npos);
    }
  }
  SECTION("actor_loss with the gradient written over the log-probs") {
    mat logp = g.normal_mat(3, 5, -1.0, 0.3), old = g.normal_mat(3, 5, -1.0, 0.3), adv = g.normal_mat(3, 5);
    mat ref = g.normal_mat(3, 5, -1.0, 0.3), m(3, 5, 1.0), d(3, 5);
    m(2, 4) = 0;
    rlhf::ppo::actor_params ap;
    ap.kl_coef = 0.1;
    ap.kl = rlhf::kl_params::verl(rlhf::kl_estimator::k3);
    const auto r0 = rlhf::ppo::actor_loss(rlhf::cpu, logp.cview(), old.cview(), adv.cview(), m.cview(), {}, ref.cview(),
                                          ap, d.view());
    mat inplace = logp;
    const auto r1 = rlhf::ppo::actor_loss(rlhf::cpu, inplace.cview(), old.cview(), adv.cview(), m.cview(), {},
                                          ref.cview(), ap, inplace.view());
    CHECK(r1.loss == r0.loss);
    CHECK(inplace.v == d.v);
  }
}

// Inputs tests/fuzz/fuzz_ops.cpp found (each a NaN / Inf escaped from finite
// input before the fix): weight-like masks that overflow a finite advantage,
// tiny mask sums in the per-row mean and its backward, a variance beyond the
// double range.
TEST_CASE("reliability: the fuzzer's findings are non_finite errors, also under an unchecked tag", "[reliability]") {
  std::vector<long long> idx{0, 0, 0};
  rlhf::tensor_view<const long long, 1> index(idx.data(), {3});
  mat a(3, 2, 7.0), ret(3, 2, 7.0);
  rlhf::adv::outputs<double> out{a.view(), ret.view()};
  {
    // rewards 0, 0, 1: the third response's GRPO advantage is (2/3) / std = 1.1547; a mask
    // weight of 1.7e308 where its reward is 0 leaves the score finite, but a * m overflows
    mat r(3, 2, {0.0, 0.0, 0.0, 0.0, 1.0, 0.0});
    mat m(3, 2, {1.0, 1.0, 1.0, 1.0, 1.0, 1.7e308});
    const mat a0 = a;
    expect_error([&] { rlhf::adv::grpo(rlhf::cpu, r.cview(), m.cview(), index, rlhf::adv::grpo_params::verl(), out); },
                 error_kind::non_finite, "token_level_rewards");
    CHECK(a.v == a0.v);  // refused before anything was written
  }
  {
    // PPO / GSPO at ratio 1 with an advantage of 1e308: the clipped and unclipped branches tie, and
    // the tie's half-and-half gradient 0.5 * (a + b) overflowed; the exact gradient is -1e308 / T
    for (auto kind : {rlhf::ppo::policy_loss_kind::vanilla, rlhf::ppo::policy_loss_kind::gspo,
                      rlhf::ppo::policy_loss_kind::cispo}) {
      INFO(rlhf::ppo::to_string(kind));
      mat lp(1, 4, 1.0), old(1, 4, 1.0), adv(1, 4, {1e308, 1.0, 1.0, 1.0}), m(1, 4, 1.0), d(1, 4);
      const auto s = rlhf::ppo::policy_loss_variant(rlhf::cpu, lp.cview(), old.cview(), adv.cview(), m.cview(),
                                                    rlhf::ppo::variant_params::verl(kind), d.view());
      // token-mean (vanilla, cispo) or seq-mean-token-mean (gspo, whose row mean divides by n + 1e-8)
      CHECK(s.loss == Approx(-(1e308 + 3.0) / 4).epsilon(1e-8));
      CHECK(d(0, 0) == Approx(-1e308 / 4).epsilon(1e-8));
      CHECK(d(0, 1) == Approx(-0.25).epsilon(1e-8));
    }
  }
  {
    // a weight-like mask: sum(v m) = 1e308 * 2 overflows before the division by sum(m)
    mat v(2, 2, {1e308, 1e308, 1.0, 2.0}), m(2, 2, {2.0, 0.0, 1.0, 1.0});
    std::vector<double> o(2, 0.0);
    expect_error(
        [&] {
          rlhf::ops::masked_mean_rows(rlhf::cpu, v.cview(), m.cview(), 0.0,
                                      rlhf::tensor_view<double, 1>(o.data(), {2}));
        },
        error_kind::non_finite, "values");
    CHECK(o == std::vector<double>{0.0, 0.0});  // nothing written
    mat m1(2, 2, {1.0, 0.0, 1.0, 1.0});
    rlhf::ops::masked_mean_rows(rlhf::cpu, v.cview(), m1.cview(), 0.0, rlhf::tensor_view<double, 1>(o.data(), {2}));
    CHECK(o == std::vector<double>{1e308, 1.5});
    // the backward's row scale cot / sum(m) = 1e308 / 0.5 overflows
    mat mh(2, 2, {0.5, 0.0, 1.0, 1.0});
    std::vector<double> cot{1e308, 1.0};
    mat dv(2, 2);
    expect_error(
        [&] {
          rlhf::ops::masked_mean_rows_backward(rlhf::cpu, mh.cview(), 0.0,
                                               rlhf::tensor_view<const double, 1>(cot.data(), {2}), dv.view());
        },
        error_kind::non_finite, "cot");
  }
  {
    // GAE with whitening: advantages of +-1e308 are finite, their variance is not
    mat r(2, 3, {0.0, 0.0, 1e308, 0.0, 0.0, -1e308}), v(2, 3, 0.0), m(2, 3, 1.0), ga(2, 3), gr(2, 3);
    rlhf::adv::gae_params p;
    p.gamma = 1.0;
    p.lam = 1.0;
    expect_error(
        [&] {
          rlhf::adv::gae(rlhf::cpu, r.cview(), v.cview(), m.cview(), p, {ga.view(), gr.view()});
        },
        error_kind::non_finite, "token_level_rewards");
    p.whiten = false;  // unwhitened, the same advantages are the answer
    rlhf::adv::gae(rlhf::cpu, r.cview(), v.cview(), m.cview(), p, {ga.view(), gr.view()});
    CHECK(ga.v == std::vector<double>{1e308, 1e308, 1e308, -1e308, -1e308, -1e308});
  }
  {
    // verl's current_kl with a mask whose row sums to 0 (weights 1 and -1): the row's KL sum 1e301
    // over n + 1e-8 = 1e-8 overflows; with a 0/1 mask the same tokens give a finite mean
    mat sc(2, 2, 0.0), lp(2, 2, {1e301, 0.0, 0.5, 0.0}), ref(2, 2, 0.0), rw(2, 2);
    mat m(2, 2, {1.0, -1.0, 1.0, 1.0});
    const auto kp = rlhf::kl_params::verl(rlhf::kl_estimator::k1);
    expect_error(
        [&] {
          (void)rlhf::kl::apply_in_reward(rlhf::cpu, sc.cview(), lp.cview(), ref.cview(), m.cview(), 0.1, kp,
                                          rw.view());
        },
        error_kind::non_finite, "logp");
    mat m01(2, 2, {1.0, 0.0, 1.0, 1.0});
    const auto s =
        rlhf::kl::apply_in_reward(rlhf::cpu, sc.cview(), lp.cview(), ref.cview(), m01.cview(), 0.1, kp, rw.view());
    CHECK(s.mean_seq_kl == Approx((1e301 / (1 + 1e-8) + 0.5 / (2 + 1e-8)) / 2).epsilon(1e-14));
  }
  {
    // a variance beyond the double range: values +-1e200 give (1e200)^2
    mat v(1, 2, {1e200, -1e200}), m(1, 2, 1.0);
    expect_error([&] { (void)rlhf::ops::masked_var(rlhf::cpu, v.cview(), m.cview()); }, error_kind::non_finite,
                 "values");
    // unchecked skips the scan of the inputs, not the check of the result
    expect_error([&] { (void)rlhf::ops::masked_var(rlhf::cpu.unchecked(), v.cview(), m.cview()); },
                 error_kind::non_finite, "values");
  }
}

TEST_CASE("reliability: an output whose strides name one address twice is refused", "[reliability]") {
  mat v(2, 3, 1.0), m(2, 3, 1.0);
  std::vector<double> buf(6, 0.0);
  const auto p = rlhf::ppo::policy_params::verl();
  // a zero stride along T: every token's gradient at one address
  const rlhf::tensor_view<double, 2> zero_t(buf.data(), {2, 3}, {3, 0});
  expect_error([&] { (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), v.cview(), v.cview(), m.cview(), p, zero_t); },
               error_kind::shape, "dlogp");
  // rows that run into each other (row stride 2 < 3 columns)
  const rlhf::tensor_view<double, 2> rows_overlap(buf.data(), {2, 3}, {2, 1});
  expect_error(
      [&] { (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), v.cview(), v.cview(), m.cview(), p, rows_overlap); },
      error_kind::shape, "dlogp");
  CHECK(buf == std::vector<double>(6, 0.0));
  // a transposed (column-major) output is one address per element: accepted, and equal to the row-major one
  mat d(2, 3);
  (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), v.cview(), v.cview(), m.cview(), p, d.view());
  const rlhf::tensor_view<double, 2> col(buf.data(), {2, 3}, {1, 2});
  (void)rlhf::ppo::policy_loss(rlhf::cpu, v.cview(), v.cview(), v.cview(), m.cview(), p, col);
  for (index_t b = 0; b < 2; ++b)
    for (index_t t = 0; t < 3; ++t) CHECK(col(b, t) == d(b, t));
  // advantage outputs and 1-D outputs too
  rlhf::adv::outputs<double> out{zero_t, rlhf::tensor_view<double, 2>(buf.data(), {2, 3})};
  std::vector<long long> idx{0, 0};
  expect_error(
      [&] {
        rlhf::adv::grpo(rlhf::cpu, v.cview(), m.cview(), rlhf::tensor_view<const long long, 1>(idx.data(), {2}),
                        rlhf::adv::grpo_params::verl(), out);
      },
      error_kind::shape, "advantages");
  expect_error(
      [&] {
        rlhf::ops::masked_mean_rows(rlhf::cpu, v.cview(), m.cview(), 0.0,
                                    rlhf::tensor_view<double, 1>(buf.data(), {2}, {0}));
      },
      error_kind::shape, "out");
}
