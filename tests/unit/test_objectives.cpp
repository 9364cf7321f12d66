// kl/ and objectives/: estimators, controllers, PPO and its variants, value
// loss, A2C, DPO family — hand-computed values, finite differences, errors.
#include "helpers.hpp"

using namespace testing;
using rlhf::cpu;
using rlhf::error_kind;
using rlhf::kl_estimator;
using rlhf::kl_params;

namespace {
struct ppo_batch {
  mat logp, old, adv, mask;
  explicit ppo_batch(unsigned seed, index_t B = 3, index_t T = 6) {
    rng r(seed);
    old = r.normal_mat(B, T, -1.0, 0.5);
    logp = old;
    for (auto& x : logp.v) x += r.normal(0, 0.3);
    adv = r.normal_mat(B, T);
    mask = r.prefix_mask(B, T);
  }
};
}  // namespace

TEST_CASE("KL estimators: hand-computed values and derivatives", "[kl]") {
  auto one = [](double lp, double ref, kl_params p) { return rlhf::math::kl_token(lp, ref, p); };
  const double lp = -1.0, ref = -1.5;  // d = 0.5
  auto k1 = one(lp, ref, kl_params::verl(kl_estimator::k1));
  CHECK(k1.value == 0.5);
  CHECK(k1.dlogp == 1.0);
  auto ab = one(ref, lp, kl_params::verl(kl_estimator::abs));
  CHECK(ab.value == 0.5);
  CHECK(ab.dlogp == -1.0);
  CHECK(one(1.0, 1.0, kl_params::verl(kl_estimator::abs)).dlogp == 0.0);  // abs'(0) = 0
  auto k2 = one(lp, ref, kl_params::verl(kl_estimator::k2));
  CHECK(k2.value == 0.125);
  CHECK(k2.dlogp == 0.5);
  auto k3 = one(lp, ref, kl_params::verl(kl_estimator::k3));
  CHECK(k3.value == Approx(std::exp(-0.5) + 0.5 - 1));
  CHECK(k3.dlogp == Approx(1 - std::exp(-0.5)));
  // verl's clamps: log ratio to +-20, estimate to +-10 (gradient 0 when active)
  auto far = one(0.0, -30.0, kl_params::verl(kl_estimator::k3));
  CHECK(far.value == 10.0);
  CHECK(far.dlogp == 0.0);
  // straight-through: value of k3, gradient of k2
  auto st = one(lp, ref, kl_params::verl(kl_estimator::k3, true));
  CHECK(st.value == k3.value);
  CHECK(st.dlogp == 0.5);
  // OpenRLHF clamps every estimator to +-10
  CHECK(one(20.0, 0.0, kl_params::openrlhf(kl_estimator::k1)).value == 10.0);
  auto n = rlhf::parse_kl_estimator("low_var_kl+");
  CHECK(n.estimator == kl_estimator::k3);
  CHECK(n.straight_through);
  expect_error([] { (void)rlhf::parse_kl_estimator("full"); }, error_kind::param, "kl_penalty");
}

TEST_CASE("KL: estimates, penalty in reward and in loss; gradients", "[kl][grad]") {
  ppo_batch b(11);
  mat k(3, 6), d(3, 6);
  for (int e = 0; e < 4; ++e) {
    const auto p = kl_params::verl(static_cast<kl_estimator>(e));
    rlhf::kl::estimate(cpu, b.logp.cview(), b.old.cview(), p, k.view(), d.view());
    for (std::size_t i = 0; i < b.logp.v.size(); ++i) {
      std::vector<double> x = {b.logp.v[i]};
      check_gradient(x, {d.v[i]}, [&] { return rlhf::math::kl_token(x[0], b.old.v[i], p).value; });
    }
  }
  // in reward: r = s - beta * m * kl
  mat scores(3, 6, 0.0), rewards(3, 6);
  scores(0, 0) = 1.0;
  const auto p3 = kl_params::verl(kl_estimator::k1);
  const auto st = rlhf::kl::apply_in_reward(cpu, scores.cview(), b.logp.cview(), b.old.cview(), b.mask.cview(), 0.1, p3,
                                            rewards.view());
  double mean_seq = 0;
  for (index_t i = 0; i < 3; ++i) {
    double s = 0, c = 0;
    for (index_t t = 0; t < 6; ++t) {
      const double kk = (b.logp(i, t) - b.old(i, t)) * b.mask(i, t);
      CHECK(rewards(i, t) == Approx(scores(i, t) - 0.1 * kk));
      s += kk;
      c += b.mask(i, t);
    }
    mean_seq += s / (c + 1e-8) / 3;
  }
  CHECK(st.mean_seq_kl == Approx(mean_seq));
  // in loss: gradient of kl_coef * agg(KL)
  rlhf::agg_params agg;
  agg.mode = rlhf::agg_mode::seq_mean_token_mean;
  mat g(3, 6);
  const auto pk = kl_params::verl(kl_estimator::k3);
  rlhf::kl::loss(cpu, b.logp.cview(), b.old.cview(), b.mask.cview(), 0.05, pk, agg, g.view());
  check_gradient(b.logp.v, g.v, [&] {
    return rlhf::kl::loss(cpu, b.logp.cview(), b.old.cview(), b.mask.cview(), 0.05, pk, agg).loss;
  });
}

TEST_CASE("IS-corrected KL: hand-computed values, gradients by finite differences, errors", "[kl][grad]") {
  namespace kl = rlhf::kl;
  const index_t B = 2, T = 5;
  rng r(61);
  mat lp = r.normal_mat(B, T, -1.0, 0.5), old = lp, ref = lp, m = r.prefix_mask(B, T);
  for (auto& x : old.v) x += r.normal(0, 0.3);
  for (auto& x : ref.v) x += r.normal(0, 0.4);
  mat cot = r.normal_mat(B, T);
  // value of one token by hand: TRL's k3 times the token ratio
  {
    const auto p = kl::is_kl_params::trl(kl::is_weight_level::token, true);
    mat k(B, T), d(B, T);
    kl::estimate_is(cpu, lp.cview(), old.cview(), ref.cview(), m.cview(), p, k.view(), d.view());
    const double x = ref(1, 2) - lp(1, 2);
    CHECK(k(1, 2) == Approx(std::exp(lp(1, 2) - old(1, 2)) * (std::exp(x) - x - 1)).epsilon(1e-14));
    CHECK(d(1, 2) == Approx(std::exp(lp(1, 2) - old(1, 2)) * (lp(1, 2) - ref(1, 2))).epsilon(1e-14));
  }
  // every form: the VJP against central differences of sum(cot * kl)
  const kl::is_kl_params forms[] = {kl::is_kl_params::trl(kl::is_weight_level::token, true),
                                    kl::is_kl_params::trl(kl::is_weight_level::sequence, true),
                                    kl::is_kl_params::trl(kl::is_weight_level::sequence, false),
                                    kl::is_kl_params::open_instruct(3),
                                    kl::is_kl_params::open_instruct(2),
                                    kl::is_kl_params::slime(rlhf::kl_estimator::k2, false, true)};
  for (const auto& p : forms) {
    for (const bool on_policy : {false, true}) {
      const rlhf::tensor_view<const double, 2> o = on_policy ? rlhf::tensor_view<const double, 2>{} : old.cview();
      // on-policy: old = sg(logp), so the finite differences hold old fixed at logp
      auto f = [&](const mat& x) {
        mat k(B, T);
        kl::estimate_is(cpu, x.cview(), on_policy ? lp.cview() : o, ref.cview(), m.cview(), p, k.view());
        double s = 0;
        for (std::size_t i = 0; i < k.v.size(); ++i) s += cot.v[i] * k.v[i];
        return s;
      };
      mat g(B, T);
      kl::estimate_is_backward(cpu, lp.cview(), o, ref.cview(), m.cview(), p, cot.cview(), g.view());
      const double h = p.float32_estimate ? 1e-3 : 1e-6;
      for (std::size_t i = 0; i < lp.v.size(); ++i) {
        mat a = lp, b = lp;
        a.v[i] += h;
        b.v[i] -= h;
        CHECK(g.v[i] == Approx((f(a) - f(b)) / (2 * h)).epsilon(p.float32_estimate ? 1e-3 : 1e-6).margin(1e-8));
      }
    }
  }
  // open-instruct clamps the log ratio at +-40 (gradient blocked beyond); slime's
  // low_var_kl clamps w k at 10 (no gradient there)
  {
    mat a(1, 2), ao(1, 2), ar(1, 2), k(1, 2), d(1, 2);
    a.v = {0.0, 0.0};
    ao.v = {0.0, 0.0};
    ar.v = {-45.0, -1.0};
    kl::estimate_is(cpu, a.cview(), ao.cview(), ar.cview(), rlhf::tensor_view<const double, 2>{},
                    kl::is_kl_params::open_instruct(3), k.view(), d.view());
    CHECK(k.v[0] == 40.0);
    CHECK(d.v[0] == 40.0);  // ratio (1) * (d + 0)
    CHECK(k.v[1] == 1.0);
    CHECK(d.v[1] == 2.0);  // ratio * (d + 1)
    ar.v = {-30.0, -0.5};
    kl::estimate_is(cpu, a.cview(), ao.cview(), ar.cview(), rlhf::tensor_view<const double, 2>{},
                    kl::is_kl_params::slime(rlhf::kl_estimator::k3, true, true), k.view(), d.view());
    CHECK(k.v[0] == 10.0);
    CHECK(d.v[0] == 0.0);
    CHECK(k.v[1] == Approx(std::exp(-0.5f) - 1.0f + 0.5f).epsilon(1e-7));
  }
  // errors: the sequence weight needs a mask and has no elementwise derivative
  const auto seq = kl::is_kl_params::trl(kl::is_weight_level::sequence, true);
  mat k(B, T), d(B, T);
  expect_error(
      [&] {
        kl::estimate_is(cpu, lp.cview(), old.cview(), ref.cview(), rlhf::tensor_view<const double, 2>{}, seq, k.view());
      },
      error_kind::shape, "mask");
  expect_error([&] { kl::estimate_is(cpu, lp.cview(), old.cview(), ref.cview(), m.cview(), seq, k.view(), d.view()); },
               error_kind::param, "dkl_dlogp");
  mat bad = lp;
  bad(0, 1) = NAN;
  expect_error(
      [&] {
        kl::estimate_is(cpu, bad.cview(), old.cview(), ref.cview(), m.cview(),
                        kl::is_kl_params::trl(kl::is_weight_level::token, true), k.view());
      },
      error_kind::non_finite, "logp");
  expect_error([&] { (void)kl::is_kl_params::open_instruct(4); }, error_kind::param, "kl_estimator");
  // an overflowing weight is an error, nothing written
  mat big = lp;
  big(1, 1) = 800;
  mat k0(B, T, -3.0);
  expect_error(
      [&] {
        kl::estimate_is(cpu, big.cview(), old.cview(), ref.cview(), m.cview(),
                        kl::is_kl_params::trl(kl::is_weight_level::token, true), k0.view());
      },
      error_kind::non_finite, "logp");
  CHECK(k0(0, 0) == -3.0);
}

TEST_CASE("IS-corrected KL as a loss: the aggregated value by hand, its gradient by finite differences, errors",
          "[kl][grad]") {
  namespace kl = rlhf::kl;
  const index_t B = 3, T = 4;
  rng r(67);
  mat lp = r.normal_mat(B, T, -1.0, 0.5), old = lp, ref = lp, m = r.prefix_mask(B, T);
  for (auto& x : old.v) x += r.normal(0, 0.3);
  for (auto& x : ref.v) x += r.normal(0, 0.4);
  const double coef = 0.3;
  // token-mean of w k3 over the valid tokens, times the coefficient
  {
    const auto p = kl::is_kl_params::trl(kl::is_weight_level::token, true);
    double s = 0, n = 0;
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < T; ++t) {
        const double x = ref(b, t) - lp(b, t);
        s += m(b, t) * std::exp(lp(b, t) - old(b, t)) * (std::exp(x) - x - 1);
        n += m(b, t);
      }
    const auto res = kl::loss_is(cpu, lp.cview(), old.cview(), ref.cview(), m.cview(), coef, p, rlhf::agg_params{});
    CHECK(res.mean_kl == Approx(s / n).epsilon(1e-13));
    CHECK(res.loss == Approx(coef * s / n).epsilon(1e-13));
  }
  // the gradient of the loss against central differences: token and sequence weights, on- and
  // off-policy, two aggregations; accumulate adds to what dlogp holds
  const kl::is_kl_params forms[] = {kl::is_kl_params::trl(kl::is_weight_level::token, true),
                                    kl::is_kl_params::trl(kl::is_weight_level::sequence, true),
                                    kl::is_kl_params::open_instruct(3)};
  rlhf::agg_params seq_mean;
  seq_mean.mode = rlhf::agg_mode::seq_mean_token_mean;
  const rlhf::agg_params aggs[] = {rlhf::agg_params{}, seq_mean};
  for (const auto& p : forms)
    for (const auto& agg : aggs)
      for (const bool on_policy : {false, true}) {
        const rlhf::tensor_view<const double, 2> o = on_policy ? rlhf::tensor_view<const double, 2>{} : old.cview();
        auto f = [&](const mat& x) {
          return kl::loss_is(cpu, x.cview(), on_policy ? lp.cview() : o, ref.cview(), m.cview(), coef, p, agg).loss;
        };
        mat g(B, T, 0.25);
        kl::loss_is(cpu, lp.cview(), o, ref.cview(), m.cview(), coef, p, agg, g.view(), true);
        const double h = 1e-6;
        for (std::size_t i = 0; i < lp.v.size(); ++i) {
          mat a = lp, b = lp;
          a.v[i] += h;
          b.v[i] -= h;
          CHECK(g.v[i] - 0.25 == Approx((f(a) - f(b)) / (2 * h)).epsilon(1e-6).margin(1e-8));
        }
      }
  // errors name the argument; dlogp keeps its values
  mat g(B, T, 7.0), bad = lp, small(B, T - 1);
  bad(1, 1) = NAN;
  const auto p = kl::is_kl_params::trl(kl::is_weight_level::token, true);
  expect_error(
      [&] {
        kl::loss_is(cpu, bad.cview(), old.cview(), ref.cview(), m.cview(), coef, p, rlhf::agg_params{}, g.view());
      },
      error_kind::non_finite, "logp");
  expect_error(
      [&] { kl::loss_is(cpu, lp.cview(), old.cview(), ref.cview(), m.cview(), -1.0, p, rlhf::agg_params{}, g.view()); },
      error_kind::param, "kl_coef");
  expect_error(
      [&] {
        kl::loss_is(cpu, lp.cview(), old.cview(), ref.cview(), small.cview(), coef, p, rlhf::agg_params{}, g.view());
      },
      error_kind::shape, "response_mask");
  mat zero(B, T, 0.0);
  expect_error(
      [&] {
        kl::loss_is(cpu, lp.cview(), old.cview(), ref.cview(), zero.cview(), coef, p, rlhf::agg_params{}, g.view());
      },
      error_kind::empty, "mask");
  for (double x : g.v) CHECK(x == 7.0);
}

TEST_CASE("generalized JSD: the SIMD kernel (contiguous rows) equals the scalar loop (strided rows)", "[distill]") {
  namespace ds = rlhf::distill;
  auto run = [](auto zero, double rtol) {
    using T = decltype(zero);
    const index_t N = 5, V = 203;  // V not a multiple of the lanes: the scalar tails too
    std::mt19937_64 g(11);
    std::normal_distribution<double> nd(0, 3);
    std::vector<T> z(static_cast<std::size_t>(N * V)), y(z.size()), zs(2 * z.size()), ys(2 * z.size());
    for (std::size_t i = 0; i < z.size(); ++i) {
      z[i] = static_cast<T>(nd(g));
      y[i] = static_cast<T>(nd(g));
      zs[2 * i] = z[i];  // the same logits with element stride 2: the scalar path
      ys[2 * i] = y[i];
    }
    z[7] = static_cast<T>(-60);  // a probability far below the others
    zs[14] = z[7];
    const std::vector<long long> labels{3, -100, 0, 7, 1};
    const rlhf::tensor_view<const long long, 1> lv(labels.data(), {N});
    for (double beta : {0.0, 0.3, 0.5, 1.0}) {
      ds::jsd_params p;
      p.beta = beta;
      p.temperature = 0.7;
      std::vector<T> g1(z.size()), g2(2 * z.size());
      const rlhf::tensor_view<const T, 2> Z(z.data(), {N, V}), Y(y.data(), {N, V});
      const rlhf::tensor_view<const T, 2> Zs(zs.data(), {N, V}, {2 * V, 2}), Ys(ys.data(), {N, V}, {2 * V, 2});
      const auto a = ds::generalized_jsd(cpu, Z, Y, lv, p, rlhf::tensor_view<T, 2>(g1.data(), {N, V}));
      const auto b = ds::generalized_jsd(cpu, Zs, Ys, lv, p, rlhf::tensor_view<T, 2>(g2.data(), {N, V}, {2 * V, 2}));
      CHECK(a.kept == 4);
      CHECK(a.loss == Approx(b.loss).epsilon(rtol));
      double scale = 0;
      for (std::size_t i = 0; i < g1.size(); ++i) scale = std::fmax(scale, std::fabs(static_cast<double>(g2[2 * i])));
      for (std::size_t i = 0; i < g1.size(); ++i)
        CHECK(static_cast<double>(g1[i]) == Approx(static_cast<double>(g2[2 * i])).margin(rtol * scale));
      for (index_t v = 0; v < V; ++v) CHECK(g1[static_cast<std::size_t>(V + v)] == T(0));  // the ignored row
    }
  };
  run(0.0, 1e-12);
  run(0.0f, 2e-5);
}

TEST_CASE("rollout correction: rejection masks, IS weights, overlong shaping by hand", "[rollout]") {
  namespace ro = rlhf::rollout_corr;
  // token_k2 <= 0.05 rejects |x| > sqrt(0.1); seq_max_k3 <= 0.2 rejects row 1 (x = 0.8: k3 = e^0.8 - 1.8)
  mat lr(2, 3), m(2, 3, 1.0), out(2, 3);
  lr.v = {0.1, 0.5, -0.3, 0.0, 0.8, 0.05};
  m(1, 2) = 0;
  auto st = ro::rejection_mask(cpu, lr.cview(), m.cview(), ro::parse_rejection("token_k2", "0.05"), out.view());
  CHECK(out.v == std::vector<double>{1, 0, 1, 1, 0, 0});
  CHECK(st.masked_fraction == Approx(2.0 / (5 + 1e-8)).epsilon(1e-15));
  CHECK(st.seq_masked_fraction == 1.0);
  st = ro::rejection_mask(cpu, lr.cview(), m.cview(), ro::parse_rejection(" seq_max_k3 , seq_max_k3", "0.2"),
                          out.view());
  CHECK(out.v == std::vector<double>{1, 1, 1, 0, 0, 0});
  CHECK(st.seq_masked_fraction == 0.5);
  // k1 with one bound u: kept where log(1/u) <= -x <= log(u)
  st = ro::rejection_mask(cpu, lr.cview(), m.cview(), ro::parse_rejection("token_k1", "1.5"), out.view());
  CHECK(out.v == std::vector<double>{1, 0, 1, 1, 0, 0});  // |x| <= log 1.5 = 0.405
  expect_error([] { (void)ro::parse_rejection("token_k4", "1.5"); }, error_kind::param, "rollout_rs");
  expect_error([] { (void)ro::parse_rejection("token_k1,token_k2", "1,2,3"); }, error_kind::param,
               "rollout_rs_threshold");
  expect_error([] { (void)ro::parse_rejection("token_k2", "0.1_0.2"); }, error_kind::param, "rollout_rs_threshold");
  expect_error([] { (void)ro::parse_rejection("token_k1", "2_1"); }, error_kind::param, "rollout_rs_threshold");
  mat none(2, 3, 0.0);
  expect_error(
      [&] {
        (void)ro::rejection_mask(cpu, lr.cview(), none.cview(), ro::parse_rejection("token_k2", "1"), out.view());
      },
      error_kind::empty, "response_mask");
  // TIS at u = 2 on token ratios; ESS = 1 / mean((w / mean w)^2)
  mat w(2, 3);
  const auto ws = ro::correction_weights(cpu, lr.cview(), m.cview(),
                                         ro::weights_params::parse(ro::is_level::token, "2", false), w.view());
  const double e[5] = {std::exp(0.1), std::exp(0.5), std::exp(-0.3), 1.0, 2.0};  // e^0.8 capped
  CHECK(w(0, 1) == Approx(std::exp(0.5)).epsilon(1e-15));
  CHECK(w(1, 1) == 2.0);
  CHECK(w(1, 2) == 0.0);
  double sw = 0;
  for (double x : e) sw += x;
  const double mu = sw / (5 + 1e-8);
  double q = 0;
  for (double x : e) q += (x / (mu + 1e-8)) * (x / (mu + 1e-8));
  CHECK(ws.mean == Approx(mu).epsilon(1e-14));
  CHECK(ws.eff_sample_size == Approx(1.0 / (q / (5 + 1e-8))).epsilon(1e-14));
  // IcePop [0.9, 2] drops exp(-0.3) = 0.74 and exp(0.8) = 2.23
  const auto ic = ro::correction_weights(cpu, lr.cview(), m.cview(),
                                         ro::weights_params::parse(ro::is_level::token, "0.9_2", false), w.view());
  CHECK(w(0, 2) == 0.0);
  CHECK(w(1, 1) == 0.0);
  CHECK(ic.oob_ratio == Approx(2 / (5 + 1e-8)).epsilon(1e-15));
  expect_error([] { (void)ro::weights_params::parse(ro::is_level::token, "x", false); }, error_kind::param,
               "rollout_is_threshold");
  // DAPO overlong: max 16, buffer 4: lengths 10, 13, 14, 20 -> e = -2, 1, 2, 4 (capped)
  std::vector<double> rw = {1, 1, 1, 1}, ro_out(4);
  std::vector<long long> len = {10, 13, 14, 20};
  const auto n = ro::overlong_penalty(cpu, rlhf::tensor_view<const double, 1>(rw.data(), {4}),
                                      rlhf::tensor_view<const long long, 1>(len.data(), {4}),
                                      ro::overlong_params{16, 4, 1}, rlhf::tensor_view<double, 1>(ro_out.data(), {4}));
  CHECK(n == 3);
  CHECK(ro_out == std::vector<double>{1, 0.75, 0.5, 0});
  expect_error(
      [&] {
        (void)ro::overlong_penalty(cpu, rlhf::tensor_view<const double, 1>(rw.data(), {4}),
                                   rlhf::tensor_view<const long long, 1>(len.data(), {4}),
                                   ro::overlong_params{16, 17, 1}, rlhf::tensor_view<double, 1>(ro_out.data(), {4}));
      },
      error_kind::param, "overlong_buffer_len");
}

TEST_CASE("KL controllers: fixed and adaptive", "[kl]") {
  rlhf::kl::fixed_controller f(0.2);
  f.update(100.0, 64);
  CHECK(f.value() == 0.2);
  rlhf::kl::adaptive_controller a(0.1, 6.0, 10000);
  a.update(12.0, 256);  // error clipped to 0.2
  CHECK(a.value() == Approx(0.1 * (1 + 0.2 * 256 / 10000)));
  a.update(6.0 * 0.95, 100);  // error -0.05
  CHECK(a.value() == Approx(0.1 * (1 + 0.2 * 256 / 10000) * (1 - 0.05 * 100 / 10000)));
  expect_error([] { rlhf::kl::adaptive_controller(0.1, 6.0, 0); }, error_kind::param, "horizon");
  expect_error([] { rlhf::kl::adaptive_controller(0.1, 0.0, 10); }, error_kind::param, "target_kl");
  expect_error([&] { a.update(NAN, 1); }, error_kind::non_finite, "current_kl");
  expect_error([] { rlhf::kl::fixed_controller(-1.0); }, error_kind::param, "kl_coef");
}

TEST_CASE("PPO clipped term: hand-computed cases", "[ppo]") {
  const rlhf::math::ppo_clip_params p{0.2, 0.2, 3.0, 20.0};
  const double lp = std::log(1.5);
  auto pos = rlhf::math::ppo_clip(lp, 0.0, 1.0, p);  // ratio 1.5 > 1.2: clipped, no gradient
  CHECK(pos.loss == Approx(-1.2));
  CHECK(pos.dlogp == 0.0);
  CHECK(pos.clipped);                                 // l2 = -1.2 > l1 = -1.5: the clip is active
  auto neg = rlhf::math::ppo_clip(lp, 0.0, -1.0, p);  // A < 0: unclipped branch, gradient -A r
  CHECK(neg.loss == Approx(1.5));
  CHECK(neg.dlogp == Approx(1.5));
  auto dual = rlhf::math::ppo_clip(std::log(4.0), 0.0, -1.0, p);  // -A r = 4 > c = 3: dual clip
  CHECK(dual.loss == Approx(3.0));
  CHECK(dual.dlogp == 0.0);
  CHECK(dual.clipped_lower);
  auto inside = rlhf::math::ppo_clip(std::log(1.1), 0.0, 2.0, p);
  CHECK(inside.loss == Approx(-2.2));
  CHECK(inside.dlogp == Approx(-2.2));
}

TEST_CASE("PPO policy loss: clip fraction, statistics, presets", "[ppo]") {
  // two tokens: one clipped (ratio 1.5, A = -1 -> l2 = 1.2 < l1: not clipped;
  // ratio 0.5, A = -1 -> l1 = 0.5, l2 = 0.8: clipped)
  mat logp(1, 2, {std::log(1.5), std::log(0.5)}), old(1, 2, 0.0), adv(1, 2, {-1.0, -1.0}), m(1, 2, 1.0);
  auto p = rlhf::ppo::policy_params::verl();
  p.stat_eps = 0.0;
  const auto r = rlhf::ppo::policy_loss(cpu, logp.cview(), old.cview(), adv.cview(), m.cview(), p);
  CHECK(r.loss == Approx((1.5 + 0.8) / 2));
  CHECK(r.clipfrac == Approx(0.5));
  CHECK(r.ppo_kl == Approx(-(std::log(1.5) + std::log(0.5)) / 2));
  CHECK(r.clipfrac_lower == 0.0);
  // SB3 counts |r - 1| > eps regardless of the advantage's sign
  const auto s =
      rlhf::ppo::policy_loss(cpu, logp.cview(), old.cview(), adv.cview(), m.cview(), rlhf::ppo::policy_params::sb3());
  CHECK(s.clipfrac == Approx(1.0));
  CHECK(s.ppo_kl == Approx(((0.5 - std::log(1.5)) + (-0.5 - std::log(0.5))) / 2));
}

TEST_CASE("PPO policy loss and variants: gradients match finite differences", "[ppo][grad]") {
  using rlhf::ppo::policy_loss_kind;
  ppo_batch b(21);
  mat g(3, 6);
  for (auto mode : {rlhf::agg_mode::token_mean, rlhf::agg_mode::seq_mean_token_sum_norm}) {
    for (auto preset : {rlhf::ppo::policy_params::verl(mode), rlhf::ppo::policy_params::openrlhf(),
                        rlhf::ppo::policy_params::trl()}) {
      preset.agg.mode = mode;
      rlhf::ppo::policy_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), preset, g.view());
      check_gradient(b.logp.v, g.v, [&] {
        return rlhf::ppo::policy_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), preset).loss;
      });
    }
  }
  // Variants without detached factors: plain finite differences of the loss.
  for (auto k : {policy_loss_kind::sapo, policy_loss_kind::gpg, policy_loss_kind::geo_mean, policy_loss_kind::dro}) {
    auto v = rlhf::ppo::variant_params::verl(k);
    v.dro_beta = 0.1;
    v.base.clip_low = v.base.clip_high = 0.1;
    INFO(rlhf::ppo::to_string(k));
    rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), v, g.view());
    check_gradient(b.logp.v, g.v, [&] {
      return rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), v).loss;
    });
  }
  // OpenRLHF GSPO differentiates through the sequence ratio.
  auto og = rlhf::ppo::variant_params::openrlhf_gspo();
  og.base.clip_low = og.base.clip_high = 0.05;
  rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), og, g.view());
  check_gradient(b.logp.v, g.v, [&] {
    return rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), og).loss;
  });
}

TEST_CASE("PPO variants with stop-gradients: gradient of the surrogate", "[ppo][grad]") {
  using rlhf::ppo::policy_loss_kind;
  ppo_batch b(31);
  const index_t B = 3, T = 6;
  mat g(B, T), w(B, T);
  rlhf::agg_params tm;  // token-mean weights
  rlhf::ops::aggregate(cpu, b.logp.cview(), b.mask.cview(), tm, w.view());
  // CISPO: loss = -sg(clamp(r, 1-lo, 1+hi)) A logp  -> d/dlogp = -clamp(r) A w
  auto cv = rlhf::ppo::variant_params::verl(policy_loss_kind::cispo);
  rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), cv, g.view());
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      const double r = std::exp(b.logp(i, t) - b.old(i, t));
      CHECK(g(i, t) == Approx(-std::clamp(r, 0.8, 1.2) * b.adv(i, t) * w(i, t)));
    }
  // DPPO-TV: loss = -A sg(min(r, c)) logp valid -> d/dlogp = -A min(r, c) valid w
  auto dv = rlhf::ppo::variant_params::verl(policy_loss_kind::dppo_tv);
  rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), dv, g.view());
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < T; ++t) {
      const double r = std::exp(b.logp(i, t) - b.old(i, t));
      const double p = std::exp(b.logp(i, t)), q = std::exp(b.old(i, t));
      const bool valid = b.adv(i, t) > 0 ? (p - q <= 0.2) : (p - q >= -0.2);
      CHECK(g(i, t) == Approx(-b.adv(i, t) * std::min(r, 20.0) * (valid ? 1.0 : 0.0) * w(i, t)));
    }
  // verl GSPO: token log ratio logp - sg(logp) + sg(s_b): each token's gradient
  // is the clipped term's derivative at ratio exp(s_b), times its seq-mean weight.
  auto gv = rlhf::ppo::variant_params::verl(policy_loss_kind::gspo);
  gv.base.clip_low = gv.base.clip_high = 0.05;
  rlhf::agg_params sm;
  sm.mode = rlhf::agg_mode::seq_mean_token_mean;
  rlhf::ops::aggregate(cpu, b.logp.cview(), b.mask.cview(), sm, w.view());
  rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), gv, g.view());
  for (index_t i = 0; i < B; ++i) {
    double s = 0, n = 0;
    for (index_t t = 0; t < T; ++t) {
      s += (b.logp(i, t) - b.old(i, t)) * b.mask(i, t);
      n += b.mask(i, t);
    }
    const double r = std::exp(s / n);
    for (index_t t = 0; t < T; ++t) {
      const double a = b.adv(i, t);
      const bool clipped = -a * std::clamp(r, 0.95, 1.05) > -a * r;
      CHECK(g(i, t) == Approx(clipped ? 0.0 : -a * r * w(i, t)).margin(1e-15));
    }
  }
}

TEST_CASE("value loss: hand-computed and gradients", "[ppo][value][grad]") {
  mat v(1, 1, 1.0), R(1, 1, 0.0), old(1, 1, 0.5), m(1, 1, 1.0), g(1, 1);
  auto p = rlhf::ppo::value_params::verl(0.2);
  auto r = rlhf::ppo::value_loss(cpu, v.cview(), R.cview(), old.cview(), m.cview(), p, g.view());
  CHECK(r.loss == Approx(0.5));  // max(1, 0.49) / 2
  CHECK(g(0, 0) == Approx(1.0));
  CHECK(r.clipfrac == 0.0);
  // SB3: clipped prediction only, no 0.5: (0.7 - 0)^2
  r = rlhf::ppo::value_loss(cpu, v.cview(), R.cview(), old.cview(), m.cview(), rlhf::ppo::value_params::sb3(0.2));
  CHECK(r.loss == Approx(0.49));
  ppo_batch b(41);
  for (auto vp : {rlhf::ppo::value_params::verl(0.2), rlhf::ppo::value_params::openrlhf(0.1, false),
                  rlhf::ppo::value_params::sb3(0.3), rlhf::ppo::value_params::openrlhf()}) {
    mat gg(3, 6);
    rlhf::ppo::value_loss(cpu, b.logp.cview(), b.adv.cview(), b.old.cview(), b.mask.cview(), vp, gg.view());
    check_gradient(b.logp.v, gg.v, [&] {
      return rlhf::ppo::value_loss(cpu, b.logp.cview(), b.adv.cview(), b.old.cview(), b.mask.cview(), vp).loss;
    });
  }
}

TEST_CASE("actor and combined PPO loss: entropy bonus, KL in loss, gradients", "[ppo][grad]") {
  ppo_batch b(51);
  rng r(52);
  mat H = r.normal_mat(3, 6, 2.0, 0.5), ref = r.normal_mat(3, 6, -1.0, 0.5);
  mat vpred = r.normal_mat(3, 6), ret = r.normal_mat(3, 6), oldv = r.normal_mat(3, 6);
  rlhf::ppo::combined_params p;
  p.actor.entropy_coef = 0.01;
  p.actor.kl_coef = 0.05;
  p.value = rlhf::ppo::value_params::verl(0.2);
  mat glp(3, 6), gh(3, 6), gv(3, 6);
  auto f = [&] {
    return rlhf::ppo::combined_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), H.cview(),
                                    ref.cview(), vpred.cview(), ret.cview(), oldv.cview(), p)
        .loss;
  };
  const auto res = rlhf::ppo::combined_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(),
                                            H.cview(), ref.cview(), vpred.cview(), ret.cview(), oldv.cview(), p,
                                            glp.view(), gh.view(), gv.view());
  CHECK(res.loss ==
        Approx(res.actor.policy.loss - 0.01 * res.actor.entropy + 0.05 * res.actor.kl + 0.5 * res.value.loss));
  check_gradient(b.logp.v, glp.v, f);
  check_gradient(H.v, gh.v, f);
  check_gradient(vpred.v, gv.v, f);
  expect_error(
      [&] {
        rlhf::ppo::actor_params ap;
        ap.kl_coef = 0.1;
        (void)rlhf::ppo::actor_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), H.cview(), {},
                                    ap);
      },
      error_kind::param, "ref_log_prob");
}

TEST_CASE("A2C: hand-computed and gradients", "[a2c][grad]") {
  mat lp(1, 2, {-1.0, -2.0}), v(1, 2, {0.5, 0.0}), adv(1, 2, {1.0, -1.0}), ret(1, 2, {1.0, 1.0}), m(1, 2, 1.0);
  rlhf::a2c::params p{0.1, 0.5, false, 1e-8, 1.0};
  const auto r = rlhf::a2c::loss(cpu, lp.cview(), v.cview(), adv.cview(), ret.cview(), {}, m.cview(), p);
  CHECK(r.policy_loss == Approx(-0.5));
  CHECK(r.value_loss == Approx(0.625));
  CHECK(r.entropy_loss == Approx(-1.5));
  CHECK(r.loss == Approx(-0.3375));
  rng g(61);
  mat L = g.normal_mat(2, 5, -1.0), V = g.normal_mat(2, 5), A = g.normal_mat(2, 5), R = g.normal_mat(2, 5),
      H = g.normal_mat(2, 5, 1.0), M = g.prefix_mask(2, 5);
  for (bool norm : {false, true})
    for (bool with_h : {false, true}) {
      p.normalize_advantage = norm;
      mat gl(2, 5), gv(2, 5), gh(2, 5);
      rlhf::tensor_view<const double, 2> hv = with_h ? H.cview() : rlhf::tensor_view<const double, 2>{};
      auto f = [&] { return rlhf::a2c::loss(cpu, L.cview(), V.cview(), A.cview(), R.cview(), hv, M.cview(), p).loss; };
      rlhf::a2c::loss(cpu, L.cview(), V.cview(), A.cview(), R.cview(), hv, M.cview(), p, gl.view(), gv.view(),
                      gh.view());
      check_gradient(L.v, gl.v, f);
      check_gradient(V.v, gv.v, f);
      if (with_h) check_gradient(H.v, gh.v, f);
    }
  mat one(1, 1, 1.0);
  p.normalize_advantage = true;
  expect_error(
      [&] { (void)rlhf::a2c::loss(cpu, one.cview(), one.cview(), one.cview(), one.cview(), {}, one.cview(), p); },
      error_kind::empty, "advantages");
}

TEST_CASE("DPO: hand-computed sigmoid loss and statistics", "[dpo]") {
  std::vector<double> c = {-1.0}, r = {-2.0}, rc = {-1.5}, rr = {-1.5};
  auto res = rlhf::dpo::evaluate(cpu, rlhf::view(std::as_const(c)), rlhf::view(std::as_const(r)),
                                 rlhf::view(std::as_const(rc)), rlhf::view(std::as_const(rr)),
                                 rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid, 0.5));
  CHECK(res.stats.loss == Approx(std::log1p(std::exp(-0.5))));
  CHECK(res.chosen_rewards(0) == Approx(0.25));
  CHECK(res.rejected_rewards(0) == Approx(-0.25));
  CHECK(res.stats.reward_margin == Approx(0.5));
  CHECK(res.stats.reward_accuracy == 1.0);
  CHECK(res.dchosen(0) == Approx(-0.5 / (1 + std::exp(0.5))));
  CHECK(res.drejected(0) == Approx(0.5 / (1 + std::exp(0.5))));
  // IPO: (1 - 1/(2 * 0.5))^2 = 0
  auto ipo = rlhf::dpo::evaluate(cpu, rlhf::view(std::as_const(c)), rlhf::view(std::as_const(r)),
                                 rlhf::view(std::as_const(rc)), rlhf::view(std::as_const(rr)),
                                 rlhf::dpo::params::openrlhf(0.5, 0.0, true));
  CHECK(ipo.stats.loss == Approx(0.0).margin(1e-15));
}

TEST_CASE("DPO family: every loss type's gradient matches finite differences", "[dpo][grad]") {
  rng g(71);
  const index_t B = 5;
  std::vector<double> c(B), r(B), rc(B), rr(B), lc(B), lr(B);
  for (index_t i = 0; i < B; ++i) {
    rc[i] = g.normal(-50, 10);
    rr[i] = g.normal(-50, 10);
    c[i] = rc[i] + g.normal(0, 3);
    r[i] = rr[i] + g.normal(0, 3);
    lc[i] = static_cast<double>(3 + i);
    lr[i] = static_cast<double>(7 - i);
  }
  using rlhf::dpo::loss_type;
  for (int t = 0; t <= static_cast<int>(loss_type::sigmoid_norm); ++t)
    for (int flavour = 0; flavour < 4; ++flavour) {
      const auto type = static_cast<loss_type>(t);
      auto p = flavour < 2 ? rlhf::dpo::params::trl(type, 0.1, 0.1) : rlhf::dpo::params::trl_v1(type, 0.1, 0.1);
      if (flavour == 1) rlhf::dpo::set_f_divergence(p, "js_divergence", 1.0, true);
      if (flavour == 2) rlhf::dpo::set_f_divergence(p, "forward_kl", 1.0, false);
      if (flavour == 3) rlhf::dpo::set_f_divergence(p, "alpha_divergence", 0.5, false);
      INFO(rlhf::dpo::to_string(type) << " flavour " << flavour);
      std::vector<double> dc(B), dr(B);
      auto run = [&](rlhf::dpo::outputs<double> o = {}) {
        return rlhf::dpo::loss(cpu, rlhf::view(std::as_const(c)), rlhf::view(std::as_const(r)),
                               rlhf::view(std::as_const(rc)), rlhf::view(std::as_const(rr)), p, o,
                               rlhf::view(std::as_const(lc)), rlhf::view(std::as_const(lr)))
            .loss;
      };
      rlhf::dpo::outputs<double> o;
      o.dchosen = rlhf::view(dc);
      o.drejected = rlhf::view(dr);
      run(o);
      check_gradient(
          c, dc, [&] { return run(); }, 1e-4, 1e-5, 1e-7);
      check_gradient(
          r, dr, [&] { return run(); }, 1e-4, 1e-5, 1e-7);
    }
}

TEST_CASE("KTO, CPO / SimPO / AlphaPO, ORPO: hand-computed values and finite-difference gradients", "[pref][grad]") {
  namespace pref = rlhf::pref;
  using v1 = rlhf::tensor_view<const double, 1>;
  using o1 = rlhf::tensor_view<double, 1>;
  // KTO: rho = (1, -0.5, 2), z = max(mean(KL - refKL), 0) = 0.25
  std::vector<double> lp = {-3, -4.5, -1}, ref = {-4, -4, -3}, kl = {-1, -2}, rkl = {-1.5, -2};
  std::vector<long long> lab = {1, 0, 1};
  std::vector<double> l(3), rw(3), d(3);
  pref::kto_params kp;
  kp.desirable_weight = 1.5;
  auto res = pref::kto_loss(cpu, v1(lp.data(), {3}), v1(ref.data(), {3}),
                            rlhf::tensor_view<const long long, 1>(lab.data(), {3}), v1(kl.data(), {2}),
                            v1(rkl.data(), {2}), kp, o1(l.data(), {3}), o1(rw.data(), {3}), o1(d.data(), {3}));
  auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  CHECK(res.kl == 0.25);
  CHECK(l[0] == Approx(1.5 * (1 - sig(0.1 * (1 - 0.25)))).epsilon(1e-14));
  CHECK(l[1] == Approx(1 - sig(0.1 * (0.25 + 0.5))).epsilon(1e-14));
  CHECK(res.loss == Approx((l[0] + l[1] + l[2]) / 3).epsilon(1e-15));
  CHECK(rw[2] == Approx(0.2).epsilon(1e-15));
  CHECK(res.chosen == 2);
  CHECK(res.rejected == 1);
  for (int i = 0; i < 3; ++i) {  // z is detached: the derivative by the sample alone
    const double h = 1e-6;
    auto at = [&](double x) {
      auto q = lp;
      q[static_cast<std::size_t>(i)] = x;
      std::vector<double> ll(3);
      pref::kto_loss(cpu, v1(q.data(), {3}), v1(ref.data(), {3}),
                     rlhf::tensor_view<const long long, 1>(lab.data(), {3}), v1(kl.data(), {2}), v1(rkl.data(), {2}),
                     kp, o1(ll.data(), {3}));
      return ll[static_cast<std::size_t>(i)];
    };
    CHECK(d[static_cast<std::size_t>(i)] ==
          Approx((at(lp[static_cast<std::size_t>(i)] + h) - at(lp[static_cast<std::size_t>(i)] - h)) / (2 * h))
              .epsilon(1e-6));
  }
  // CPO family: every loss type and AlphaPO, gradients by central differences
  std::vector<double> c = {-1.2, -0.4, -2.5}, r = {-1.5, -0.3, -0.9};
  const pref::cpo_params cps[] = {pref::cpo_params{},
                                  pref::cpo_params{pref::cpo_loss_type::hinge, 0.5, 0, 0.5, 0},
                                  pref::cpo_params{pref::cpo_loss_type::ipo, 0.5, 0, 0.5, 0},
                                  pref::cpo_params{pref::cpo_loss_type::sigmoid, 1.0, 0.1, 0.5, 0},
                                  pref::cpo_params::simpo(),
                                  pref::cpo_params::alphapo(0.25),
                                  pref::cpo_params::alphapo(-0.5)};
  for (const auto& p : cps) {
    std::vector<double> L(3), cr(3), rr(3), dc(3), dr(3);
    const double mean = pref::cpo_loss(
        cpu, v1(c.data(), {3}), v1(r.data(), {3}), p,
        {o1(L.data(), {3}), o1(cr.data(), {3}), o1(rr.data(), {3}), o1(dc.data(), {3}), o1(dr.data(), {3})});
    CHECK(mean == Approx((L[0] + L[1] + L[2]) / 3).epsilon(1e-15));
    auto loss_at = [&](std::vector<double> cc, std::vector<double> rj, int i) {
      std::vector<double> LL(3);
      pref::cpo_loss(cpu, v1(cc.data(), {3}), v1(rj.data(), {3}), p, {o1(LL.data(), {3})});
      return LL[static_cast<std::size_t>(i)];
    };
    for (int i = 0; i < 3; ++i) {
      const auto u = static_cast<std::size_t>(i);
      const double h = 1e-6;
      auto cp = c, cm = c, rp = r, rm = r;
      cp[u] += h, cm[u] -= h, rp[u] += h, rm[u] -= h;
      CHECK(dc[u] == Approx((loss_at(cp, r, i) - loss_at(cm, r, i)) / (2 * h)).epsilon(1e-6).margin(1e-9));
      CHECK(dr[u] == Approx((loss_at(c, rp, i) - loss_at(c, rm, i)) / (2 * h)).epsilon(1e-6).margin(1e-9));
    }
  }
  {  // sigmoid CPO by hand: -logsig(beta (c - r))
    std::vector<double> L(3);
    pref::cpo_loss(cpu, v1(c.data(), {3}), v1(r.data(), {3}), pref::cpo_params{}, {o1(L.data(), {3})});
    CHECK(L[0] == Approx(std::log1p(std::exp(-0.1 * 0.3))).epsilon(1e-14));
  }
  // ORPO: log_odds = (c - r) - (log(1 - e^c) - log(1 - e^r)); gradients by central differences
  std::vector<double> L(3), cr(3), rr(3), dc(3), dr(3);
  const auto orr = pref::orpo_loss(
      cpu, v1(c.data(), {3}), v1(r.data(), {3}), 0.1,
      {o1(L.data(), {3}), o1(cr.data(), {3}), o1(rr.data(), {3}), o1(dc.data(), {3}), o1(dr.data(), {3})});
  const double lo0 = (c[0] - r[0]) - (std::log(1 - std::exp(c[0])) - std::log(1 - std::exp(r[0])));
  CHECK(L[0] == Approx(0.1 * std::log(sig(lo0))).epsilon(1e-13));
  CHECK(orr.loss == Approx((L[0] + L[1] + L[2]) / 3).epsilon(1e-15));
  for (int i = 0; i < 3; ++i) {
    const auto u = static_cast<std::size_t>(i);
    auto at = [&](double cc, double rj) {
      std::vector<double> a = c, b = r, LL(3);
      a[u] = cc;
      b[u] = rj;
      pref::orpo_loss(cpu, v1(a.data(), {3}), v1(b.data(), {3}), 0.1, {o1(LL.data(), {3})});
      return LL[u];
    };
    const double h = 1e-6;
    CHECK(dc[u] == Approx((at(c[u] + h, r[u]) - at(c[u] - h, r[u])) / (2 * h)).epsilon(1e-6));
    CHECK(dr[u] == Approx((at(c[u], r[u] + h) - at(c[u], r[u] - h)) / (2 * h)).epsilon(1e-6));
  }
  // errors: a log-prob of 0 has no odds; an unknown loss name; no sample
  std::vector<double> zero = {0.0, -1, -1};
  expect_error([&] { (void)pref::orpo_loss(cpu, v1(zero.data(), {3}), v1(r.data(), {3}), 0.1); },
               error_kind::non_finite, "policy_chosen_logps");
  expect_error([] { (void)pref::parse_cpo_loss_type("dpo"); }, error_kind::param, "loss_type");
  expect_error([&] { (void)pref::cpo_loss(cpu, v1(c.data(), {0}), v1(r.data(), {0}), pref::cpo_params{}); },
               error_kind::empty, "policy_chosen_logps");
  expect_error(
      [&] {
        (void)pref::kto_loss(cpu, v1(lp.data(), {3}), v1(ref.data(), {3}),
                             rlhf::tensor_view<const long long, 1>(lab.data(), {3}), v1{}, v1{}, pref::kto_params{});
      },
      error_kind::empty, "KL_logps");
}

TEST_CASE("generalized JSD (GKD): the limits are the KLs, gradients by finite differences, errors", "[distill][grad]") {
  namespace ds = rlhf::distill;
  rng r(71);
  const index_t N = 3, V = 7;
  mat z = r.normal_mat(N, V, 0, 2), y = r.normal_mat(N, V, 0, 2);
  std::vector<long long> lab = {5, -100, 2};
  const rlhf::tensor_view<const long long, 1> lv(lab.data(), {N});
  // beta = 0: sum_v p_t (t - s) over the kept rows, / kept (batchmean)
  auto log_softmax = [&](const mat& x, index_t i, double tau) {
    std::vector<double> o(static_cast<std::size_t>(V));
    double m = -INFINITY, s = 0;
    for (index_t v = 0; v < V; ++v) m = std::max(m, x(i, v) / tau);
    for (index_t v = 0; v < V; ++v) s += std::exp(x(i, v) / tau - m);
    for (index_t v = 0; v < V; ++v) o[static_cast<std::size_t>(v)] = x(i, v) / tau - m - std::log(s);
    return o;
  };
  double fwd = 0, rev = 0;
  for (index_t i : {index_t{0}, index_t{2}}) {
    const auto s = log_softmax(z, i, 1.5), t = log_softmax(y, i, 1.5);
    for (std::size_t v = 0; v < s.size(); ++v) {
      fwd += std::exp(t[v]) * (t[v] - s[v]);
      rev += std::exp(s[v]) * (s[v] - t[v]);
    }
  }
  ds::jsd_params p;
  p.temperature = 1.5;
  p.beta = 0;
  CHECK(ds::generalized_jsd(cpu, z.cview(), y.cview(), lv, p).loss == Approx(fwd / 2).epsilon(1e-13));
  p.beta = 1;
  CHECK(ds::generalized_jsd(cpu, z.cview(), y.cview(), lv, p).loss == Approx(rev / 2).epsilon(1e-13));
  // every beta: dL/dz by central differences; ignored rows get 0
  for (double beta : {0.0, 0.3, 0.5, 1.0}) {
    p.beta = beta;
    for (auto red : {ds::jsd_reduction::batchmean, ds::jsd_reduction::sum, ds::jsd_reduction::mean}) {
      p.reduction = red;
      mat g(N, V);
      ds::generalized_jsd(cpu, z.cview(), y.cview(), lv, p, g.view());
      for (std::size_t k = 0; k < z.v.size(); ++k) {
        const double h = 1e-6;
        mat a = z, b = z;
        a.v[k] += h;
        b.v[k] -= h;
        const double fd = (ds::generalized_jsd(cpu, a.cview(), y.cview(), lv, p).loss -
                           ds::generalized_jsd(cpu, b.cview(), y.cview(), lv, p).loss) /
                          (2 * h);
        CHECK(g.v[k] == Approx(fd).epsilon(1e-6).margin(1e-9));
      }
      for (index_t v = 0; v < V; ++v) CHECK(g(1, v) == 0.0);
    }
  }
  // none: the elements, and the VJP of a cotangent on them
  p.beta = 0.4;
  p.reduction = ds::jsd_reduction::none;
  mat el(N, V), g(N, V), cot = r.normal_mat(N, V);
  ds::generalized_jsd(cpu, z.cview(), y.cview(), lv, p, g.view(), el.view(), cot.cview());
  auto weighted = [&](const mat& x) {
    mat e(N, V);
    ds::generalized_jsd(cpu, x.cview(), y.cview(), lv, p, {}, e.view());
    double s = 0;
    for (std::size_t k = 0; k < e.v.size(); ++k) s += cot.v[k] * e.v[k];
    return s;
  };
  for (std::size_t k = 0; k < z.v.size(); ++k) {
    const double h = 1e-6;
    mat a = z, b = z;
    a.v[k] += h;
    b.v[k] -= h;
    CHECK(g.v[k] == Approx((weighted(a) - weighted(b)) / (2 * h)).epsilon(1e-6).margin(1e-9));
  }
  // errors
  p.reduction = ds::jsd_reduction::batchmean;
  std::vector<long long> none = {-100, -100, -100};
  expect_error(
      [&] {
        (void)ds::generalized_jsd(cpu, z.cview(), y.cview(), rlhf::tensor_view<const long long, 1>(none.data(), {N}),
                                  p);
      },
      error_kind::empty, "labels");
  p.beta = 1.5;
  expect_error([&] { (void)ds::generalized_jsd(cpu, z.cview(), y.cview(), lv, p); }, error_kind::param, "beta");
  p.beta = 0.5;
  p.temperature = 0;
  expect_error([&] { (void)ds::generalized_jsd(cpu, z.cview(), y.cview(), lv, p); }, error_kind::param, "temperature");
  expect_error([] { (void)ds::parse_jsd_reduction("avg"); }, error_kind::param, "reduction");
}

TEST_CASE("DPO: DiscoPOP stays finite where the reference overflows", "[dpo]") {
  std::vector<double> c = {-2000.0}, r = {0.0}, z = {0.0};
  auto res =
      rlhf::dpo::evaluate(cpu, rlhf::view(std::as_const(c)), rlhf::view(std::as_const(r)), rlhf::view(std::as_const(z)),
                          rlhf::view(std::as_const(z)), rlhf::dpo::params::trl(rlhf::dpo::loss_type::discopop, 0.1));
  // z = -200: w = sigmoid(-4000) ~ 0, loss ~ -log sigmoid(-200) = 200
  CHECK(std::isfinite(res.stats.loss));
  CHECK(res.stats.loss == Approx(200.0).epsilon(1e-6));
}

TEST_CASE("objectives: one error of each kind per family", "[errors]") {
  ppo_batch b(81);
  mat wrong(3, 5, 0.0), zero(3, 6, 0.0), g(3, 6);
  auto pp = rlhf::ppo::policy_params::verl();
  // PPO
  expect_error(
      [&] { (void)rlhf::ppo::policy_loss(cpu, b.logp.cview(), wrong.cview(), b.adv.cview(), b.mask.cview(), pp); },
      error_kind::shape, "old_log_prob");
  expect_error(
      [&] { (void)rlhf::ppo::policy_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), zero.cview(), pp); },
      error_kind::empty, "response_mask");
  auto bad = pp;
  bad.dual_clip = 0.9;
  expect_error(
      [&] { (void)rlhf::ppo::policy_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), bad); },
      error_kind::param, "dual_clip");
  bad = pp;
  bad.clip_low = NAN;
  expect_error(
      [&] { (void)rlhf::ppo::policy_loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), bad); },
      error_kind::param, "clip_low");
  mat nan_adv = b.adv;
  nan_adv(1, 1) = NAN;
  expect_error(
      [&] { (void)rlhf::ppo::policy_loss(cpu, b.logp.cview(), b.old.cview(), nan_adv.cview(), b.mask.cview(), pp); },
      error_kind::non_finite, "advantages");
  expect_error([] { (void)rlhf::ppo::parse_policy_loss_kind("ppo2"); }, error_kind::param, "policy_loss");
  auto dro = rlhf::ppo::variant_params::verl(rlhf::ppo::policy_loss_kind::dro);
  expect_error(
      [&] {
        (void)rlhf::ppo::policy_loss_variant(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.mask.cview(), dro);
      },
      error_kind::param, "dro_beta");
  // value
  auto vp = rlhf::ppo::value_params::verl(-1.0);
  expect_error(
      [&] { (void)rlhf::ppo::value_loss(cpu, b.logp.cview(), b.adv.cview(), b.old.cview(), b.mask.cview(), vp); },
      error_kind::param, "clip");
  expect_error(
      [&] {
        (void)rlhf::ppo::value_loss(cpu, b.logp.cview(), b.adv.cview(), wrong.cview(), b.mask.cview(),
                                    rlhf::ppo::value_params::verl());
      },
      error_kind::shape, "values");
  // KL
  expect_error([&] { (void)rlhf::kl::estimate(cpu, b.logp.cview(), wrong.cview(), kl_params{}); }, error_kind::shape,
               "ref_logp");
  expect_error([&] { (void)rlhf::kl::estimate(cpu, nan_adv.cview(), b.old.cview(), kl_params{}); },
               error_kind::non_finite, "logp");
  expect_error(
      [&] {
        (void)rlhf::kl::loss(cpu, b.logp.cview(), b.old.cview(), zero.cview(), 0.1, kl_params{}, rlhf::agg_params{});
      },
      error_kind::empty, "loss_mask");
  expect_error(
      [&] {
        (void)rlhf::kl::loss(cpu, b.logp.cview(), b.old.cview(), b.mask.cview(), -0.1, kl_params{}, rlhf::agg_params{});
      },
      error_kind::param, "kl_coef");
  // DPO
  std::vector<double> c = {-1, -2}, r3 = {-1, -2, -3}, nanv = {NAN, -1};
  auto cv = rlhf::view(std::as_const(c));
  const auto dp = rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid);
  expect_error([&] { (void)rlhf::dpo::loss(cpu, cv, rlhf::view(std::as_const(r3)), cv, cv, dp); }, error_kind::shape,
               "rejected_logps");
  expect_error([&] { (void)rlhf::dpo::loss(cpu, rlhf::view(std::as_const(nanv)), cv, cv, cv, dp); },
               error_kind::non_finite, "chosen_logps");
  std::vector<double> none;
  auto nv = rlhf::view(std::as_const(none));
  expect_error([&] { (void)rlhf::dpo::loss(cpu, nv, nv, nv, nv, dp); }, error_kind::empty, "chosen_logps");
  auto neg = dp;
  neg.beta = -0.1;
  expect_error([&] { (void)rlhf::dpo::loss(cpu, cv, cv, cv, cv, neg); }, error_kind::param, "beta");
  expect_error([] { (void)rlhf::dpo::parse_loss_type("kto"); }, error_kind::param, "loss_type");
  auto ipo = rlhf::dpo::params::trl_v1(rlhf::dpo::loss_type::ipo);
  expect_error([&] { (void)rlhf::dpo::loss(cpu, cv, cv, cv, cv, ipo); }, error_kind::shape, "chosen_lengths");
  // A2C
  expect_error(
      [&] {
        (void)rlhf::a2c::loss(cpu, b.logp.cview(), wrong.cview(), b.adv.cview(), b.adv.cview(), {}, b.mask.cview(), {});
      },
      error_kind::shape, "values");
  expect_error(
      [&] {
        (void)rlhf::a2c::loss(cpu, b.logp.cview(), b.old.cview(), nan_adv.cview(), b.adv.cview(), {}, b.mask.cview(),
                              {});
      },
      error_kind::non_finite, "advantages");
  expect_error(
      [&] {
        (void)rlhf::a2c::loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.adv.cview(), {}, zero.cview(), {});
      },
      error_kind::empty, "mask");
  expect_error(
      [&] {
        rlhf::a2c::params ap;
        ap.vf_coef = -1;
        (void)rlhf::a2c::loss(cpu, b.logp.cview(), b.old.cview(), b.adv.cview(), b.adv.cview(), {}, b.mask.cview(), ap);
      },
      error_kind::param, "vf_coef");
}

TEST_CASE("policy-loss variants: hand-computed single tokens", "[ppo]") {
  using rlhf::ppo::policy_loss_kind;
  // one token, logp = log 1.5, old = 0, A = 1 (A = -1 where said); token-mean of one token
  mat lp(1, 1, std::log(1.5)), old(1, 1, 0.0), a(1, 1, 1.0), na(1, 1, -1.0), m(1, 1, 1.0), g(1, 1);
  auto run = [&](policy_loss_kind k, const mat& adv, auto&& tweak) {
    auto v = rlhf::ppo::variant_params::verl(k);
    tweak(v);
    return rlhf::ppo::policy_loss_variant(cpu, lp.cview(), old.cview(), adv.cview(), m.cview(), v, g.view());
  };
  auto none = [](auto&) {};
  // GPG: -A logp
  CHECK(run(policy_loss_kind::gpg, a, none).loss == Approx(-std::log(1.5)));
  CHECK(g(0, 0) == Approx(-1.0));
  // DRO: -(logp A - beta/2 (logp - old)^2)
  auto r = run(policy_loss_kind::dro, a, [](auto& v) { v.dro_beta = 0.5; });
  CHECK(r.loss == Approx(-(std::log(1.5) - 0.25 * std::log(1.5) * std::log(1.5))));
  CHECK(g(0, 0) == Approx(-(1 - 0.5 * std::log(1.5))));
  // SAPO: -A sigmoid(tau (r - 1)) 4 / tau, tau_pos = 2
  r = run(policy_loss_kind::sapo, a, [](auto& v) { v.tau_pos = 2.0; });
  const double s = 1 / (1 + std::exp(-2.0 * 0.5));
  CHECK(r.loss == Approx(-s * 2.0));
  CHECK(g(0, 0) == Approx(-4 * s * (1 - s) * 1.5));
  // GMPO: one token, d = log 1.5 clipped at +0.2 for A > 0: -A exp(0.2)
  r = run(policy_loss_kind::geo_mean, a, [](auto& v) { v.base.clip_low = v.base.clip_high = 0.2; });
  CHECK(r.loss == Approx(-std::exp(0.2 * (1 / (1 + 1e-8)))));
  CHECK(g(0, 0) == 0.0);
  CHECK(r.clipfrac == Approx(1.0).epsilon(1e-7));
  // ... for A < 0 the unclipped d is used (sgn(A) min(sgn(A) d, sgn(A) clip(d)))
  r = run(policy_loss_kind::geo_mean, na, [](auto& v) { v.base.clip_low = v.base.clip_high = 0.2; });
  CHECK(r.loss == Approx(std::exp(std::log(1.5) / (1 + 1e-8)) / (1 + 1e-8)));
  // CISPO: -clamp(1.5, 0.8, 1.28) A logp
  r = run(policy_loss_kind::cispo, a, [](auto& v) { v.base.clip_high = 0.28; });
  CHECK(r.loss == Approx(-1.28 * std::log(1.5)));
  CHECK(r.clipfrac == Approx(1.0).epsilon(1e-7));
}

TEST_CASE("GSPO with a ratio base (OpenRLHF + vLLM IS correction): ratio against the rollout, ppo_kl against old",
          "[ppo]") {
  ppo_batch x(47, 3, 7);
  mat rollout = x.old;
  rng r(48);
  for (auto& v : rollout.v) v += r.normal(0, 0.2);
  const auto v = rlhf::ppo::variant_params::openrlhf_gspo();
  mat ga(3, 7), gb(3, 7);
  // the ratio and its gradient are those of old := rollout
  const auto ra =
      rlhf::ppo::policy_loss_variant(cpu, x.logp.cview(), rollout.cview(), x.adv.cview(), x.mask.cview(), v, ga.view());
  const auto rb = rlhf::ppo::policy_loss_variant(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), v,
                                                 gb.view(), {}, rollout.cview());
  CHECK(rb.loss == ra.loss);
  CHECK(rb.clipfrac == ra.clipfrac);
  CHECK(gb.v == ga.v);
  // ppo_kl = masked_mean(old - logp), exact division (OpenRLHF)
  double s = 0, n = 0;
  for (std::size_t i = 0; i < x.mask.v.size(); ++i) {
    s += x.mask.v[i] * (x.old.v[i] - x.logp.v[i]);
    n += x.mask.v[i];
  }
  CHECK(rb.ppo_kl == Approx(s / n).epsilon(1e-14));
  CHECK(rb.ppo_kl != Approx(ra.ppo_kl).epsilon(1e-6));
  // only GSPO takes a ratio base; its shape is log_prob's
  auto sapo = rlhf::ppo::variant_params::verl(rlhf::ppo::policy_loss_kind::sapo);
  expect_error(
      [&] {
        (void)rlhf::ppo::policy_loss_variant(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), sapo,
                                             {}, {}, rollout.cview());
      },
      error_kind::param, "ratio_log_prob");
  mat bad(3, 6);
  expect_error(
      [&] {
        (void)rlhf::ppo::policy_loss_variant(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), v, {},
                                             {}, bad.cview());
      },
      error_kind::shape, "ratio_log_prob");
}

TEST_CASE("extreme but finite inputs are reported, never returned as NaN", "[errors]") {
  mat lp(1, 2, {1000.0, 0.0}), old(1, 2, 0.0), a(1, 2, {0.0, 1.0}), m(1, 2, 1.0);
  // TRL's preset has no log-ratio clamp: exp(1000) overflows and A = 0 makes inf * 0
  expect_error(
      [&] {
        (void)rlhf::ppo::policy_loss(cpu, lp.cview(), old.cview(), a.cview(), m.cview(),
                                     rlhf::ppo::policy_params::trl());
      },
      error_kind::non_finite, "log_prob");
  // verl's clamp keeps it finite
  CHECK(std::isfinite(
      rlhf::ppo::policy_loss(cpu, lp.cview(), old.cview(), a.cview(), m.cview(), rlhf::ppo::policy_params::verl())
          .loss));
  // an unclamped k3 overflows
  mat ref(1, 2, {0.0, 0.0}), far(1, 2, {-1000.0, 0.0});
  expect_error([&] { (void)rlhf::kl::estimate(cpu, far.cview(), ref.cview(), rlhf::kl_params::trl_grpo()); },
               error_kind::non_finite, "logp");
  CHECK(rlhf::kl::estimate(cpu, far.cview(), ref.cview(), rlhf::kl_params::verl(kl_estimator::k3))(0, 0) == 10.0);
  // the overflow is found before anything is written (the second token is fine, the error is at [0, 0])
  mat kout(1, 2, 7.0), dout(1, 2, 7.0);
  expect_error(
      [&] { rlhf::kl::estimate(cpu, far.cview(), ref.cview(), rlhf::kl_params::trl_grpo(), kout.view(), dout.view()); },
      error_kind::non_finite, "[0, 0]");
  CHECK(kout(0, 1) == 7.0);
  CHECK(dout(0, 1) == 7.0);
  // with the log ratio clamped (|d| <= 20) no precheck runs, and no estimate can overflow, even in float
  // for inputs whose difference overflows
  for (auto e : {kl_estimator::k1, kl_estimator::k2, kl_estimator::k3, kl_estimator::abs}) {
    rlhf::kl_params kp{e, false, 20.0, INFINITY};
    CHECK_FALSE(rlhf::kl::may_overflow(kp));
    std::vector<float> lo = {-3e38f, 3e38f, 0.f}, hi = {3e38f, -3e38f, 0.f}, ko(3), dk(3);
    rlhf::kl::estimate(cpu, rlhf::tensor_view<const float, 2>(lo.data(), {1, 3}),
                       rlhf::tensor_view<const float, 2>(hi.data(), {1, 3}), kp,
                       rlhf::tensor_view<float, 2>(ko.data(), {1, 3}), rlhf::tensor_view<float, 2>(dk.data(), {1, 3}));
    for (int i = 0; i < 3; ++i) CHECK((std::isfinite(ko[i]) && std::isfinite(dk[i])));
  }
  CHECK(rlhf::kl::may_overflow(rlhf::kl_params::trl_grpo()));
  CHECK(rlhf::kl::may_overflow(rlhf::kl_params{kl_estimator::k3, true, 20.0, 10.0}));
  // wide rows (vector path and tail) against the scalar formula, float and double
  rng r(3);
  const index_t B = 3, T = 41;
  mat x = r.normal_mat(B, T, -1, 0.5), y = r.normal_mat(B, T, -1, 0.5), k(B, T), d(B, T);
  std::vector<float> xf(x.v.begin(), x.v.end()), yf(y.v.begin(), y.v.end()), kf(x.v.size()), df(x.v.size());
  for (auto e : {kl_estimator::k1, kl_estimator::k2, kl_estimator::k3, kl_estimator::abs}) {
    const auto kp = rlhf::kl_params::verl(e);
    rlhf::kl::estimate(cpu, x.cview(), y.cview(), kp, k.view(), d.view());
    rlhf::kl::estimate(cpu, rlhf::tensor_view<const float, 2>(xf.data(), {B, T}),
                       rlhf::tensor_view<const float, 2>(yf.data(), {B, T}), kp,
                       rlhf::tensor_view<float, 2>(kf.data(), {B, T}), rlhf::tensor_view<float, 2>(df.data(), {B, T}));
    for (index_t i = 0; i < B * T; ++i) {
      const auto want = rlhf::math::kl_token(x.v[i], y.v[i], kp);
      CHECK(k.v[i] == Approx(want.value).epsilon(1e-13).margin(1e-14));
      CHECK(d.v[i] == Approx(want.dlogp).epsilon(1e-13).margin(1e-14));
      const auto wf = rlhf::math::kl_token(static_cast<double>(xf[i]), static_cast<double>(yf[i]), kp);
      CHECK(kf[i] == Approx(wf.value).epsilon(1e-5).margin(1e-6));
      CHECK(df[i] == Approx(wf.dlogp).epsilon(1e-5).margin(1e-6));
    }
  }
}

TEST_CASE("value loss and IS correction: each error kind", "[errors]") {
  mat v(2, 3, 0.5), r(2, 3, 1.0), old(2, 3, 0.4), m(2, 3, 1.0), zero(2, 3, 0.0), wrong(2, 2, 0.0), w(2, 3);
  const auto vp = rlhf::ppo::value_params::verl(0.2);
  mat nanv = v;
  nanv(1, 2) = NAN;
  expect_error([&] { (void)rlhf::ppo::value_loss(cpu, nanv.cview(), r.cview(), old.cview(), m.cview(), vp); },
               error_kind::non_finite, "vpreds");
  expect_error([&] { (void)rlhf::ppo::value_loss(cpu, v.cview(), r.cview(), old.cview(), zero.cview(), vp); },
               error_kind::empty, "response_mask");
  rlhf::ppo::is_params ip;
  expect_error([&] { (void)rlhf::ppo::rollout_is_weights(cpu, v.cview(), wrong.cview(), m.cview(), ip, w.view()); },
               error_kind::shape, "rollout_log_probs");
  expect_error([&] { (void)rlhf::ppo::rollout_is_weights(cpu, nanv.cview(), v.cview(), m.cview(), ip, w.view()); },
               error_kind::non_finite, "old_log_probs");
  expect_error([&] { (void)rlhf::ppo::rollout_is_weights(cpu, v.cview(), v.cview(), zero.cview(), ip, w.view()); },
               error_kind::empty, "action_mask");
  ip.low = 3.0;
  expect_error([&] { (void)rlhf::ppo::rollout_is_weights(cpu, v.cview(), v.cview(), m.cview(), ip, w.view()); },
               error_kind::param, "high");
  expect_error([] { (void)rlhf::ppo::parse_is_correction("tis2"); }, error_kind::param, "vllm_is_correction_type");
  // weights: tis clamps, icepop zeroes outside the band
  mat o(1, 2, {0.0, 0.0}), ro(1, 2, {std::log(4.0), std::log(1.5)}), m2(1, 2, 1.0), w2(1, 2);
  rlhf::ppo::is_params t{rlhf::ppo::is_correction::tis, 0.5, 2.0};
  const double vk = rlhf::ppo::rollout_is_weights(cpu, o.cview(), ro.cview(), m2.cview(), t, w2.view());
  CHECK(w2(0, 0) == 0.5);  // is = 1/4 -> clamped up
  CHECK(w2(0, 1) == Approx(1 / 1.5));
  CHECK(vk == Approx((std::log(4.0) + std::log(1.5)) / 2));
  t.kind = rlhf::ppo::is_correction::icepop;
  rlhf::ppo::rollout_is_weights(cpu, o.cview(), ro.cview(), m2.cview(), t, w2.view());
  CHECK(w2(0, 0) == 0.0);
  CHECK(w2(0, 1) == Approx(1 / 1.5));
}

// The CPU objective engine (backend/cpu/objective.hpp): issue 11's determinism
// and batch invariance, on the PPO policy loss.
#if defined(_OPENMP)
#  include <omp.h>
#endif

TEST_CASE("objective engine: the same bits for any thread count; a row's gradient does not depend on its batch",
          "[ppo][engine]") {
  const index_t B = 64, T = 700;  // large enough for the engine's parallel rows
  ppo_batch x(41, B, T);
  const auto p = rlhf::ppo::policy_params::verl();
  auto run = [&](int threads, mat& g) {
#if defined(_OPENMP)
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    g = mat(B, T);
    return rlhf::ppo::policy_loss(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), p, g.view());
  };
  mat g1, g2;
  const auto r1 = run(1, g1);
  const auto r2 = run(2, g2);
#if defined(_OPENMP)
  omp_set_num_threads(omp_get_num_procs());
#endif
  CHECK(r1.loss == r2.loss);
  CHECK(r1.clipfrac == r2.clipfrac);
  CHECK(r1.ppo_kl == r2.ppo_kl);
  CHECK(g1.v == g2.v);

  // token_sum has no batch normaliser: row 5 alone gives row 5's gradient of the batch, bit for bit
  auto ps = p;
  ps.agg.mode = rlhf::agg_mode::token_sum;
  mat gb(B, T), gr(1, T);
  rlhf::ppo::policy_loss(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), ps, gb.view());
  auto row = [&](const mat& m) { return rlhf::tensor_view<const double, 2>(m.v.data() + 5 * T, {1, T}); };
  rlhf::ppo::policy_loss(cpu, row(x.logp), row(x.old), row(x.adv), row(x.mask), ps, gr.view());
  CHECK(std::equal(gr.v.begin(), gr.v.end(), gb.v.begin() + 5 * T));
  // token_mean: the same up to the global normaliser (the batch's token count over the row's)
  mat gm(B, T), gm1(1, T);
  rlhf::ppo::policy_loss(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), p, gm.view());
  rlhf::ppo::policy_loss(cpu, row(x.logp), row(x.old), row(x.adv), row(x.mask), p, gm1.view());
  double n = 0, n5 = 0;
  for (index_t i = 0; i < B * T; ++i) n += x.mask.v[static_cast<std::size_t>(i)];
  for (index_t t = 0; t < T; ++t) n5 += x.mask.v[static_cast<std::size_t>(5 * T + t)];
  for (index_t t = 0; t < T; ++t)
    CHECK(gm.v[static_cast<std::size_t>(5 * T + t)] ==
          Approx(gm1.v[static_cast<std::size_t>(t)] * n5 / n).margin(1e-15));
}

namespace {
/// A third backend: host memory, its own engine (the CPU's, counting its
/// passes). The PPO losses and kl::loss are written once over the tag, so
/// they run on it unchanged.
struct counting_t {
  using backend_tag = void;
  using space = rlhf::host_space;
  static constexpr const char* name = "counting";
  bool check_finite = true;
};
int counting_passes = 0;
}  // namespace

template <>
struct rlhf::objective_engine<counting_t> {
  template <int G, int K, class F, class M, class O, class V, std::size_t C, class P>
  static rlhf::engine::objective_sums<K> run(const counting_t&, const char* fn, const F& f,
                                             rlhf::tensor_view<M, 2> mask, const rlhf::agg_params& p,
                                             const std::array<rlhf::tensor_view<O, 2>, G>& outs,
                                             const rlhf::engine::inputs<V, C>& in, const rlhf::engine::run_options& o,
                                             const P& pre) {
    ++counting_passes;
    return rlhf::cpu_engine::run<G, K>(fn, f, mask, p, outs, in, o, pre);
  }
};

TEST_CASE("objectives on the engine contract run on any backend tag that brings an engine", "[ppo][kl][engine]") {
  static_assert(rlhf::backend<counting_t>);
  ppo_batch x(43, 4, 9);
  const auto p = rlhf::ppo::policy_params::verl();
  mat g1(4, 9), g2(4, 9);
  counting_passes = 0;
  const auto r1 =
      rlhf::ppo::policy_loss(counting_t{}, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), p, g1.view());
  CHECK(counting_passes == 1);
  const auto r2 =
      rlhf::ppo::policy_loss(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), p, g2.view());
  CHECK(r1.loss == r2.loss);
  CHECK(r1.clipfrac == r2.clipfrac);
  CHECK(g1.v == g2.v);
  // the actor loss composes policy loss, entropy bonus and KL: one pass each
  rlhf::ppo::actor_params ap;
  ap.entropy_coef = 0.01;
  ap.kl_coef = 0.1;
  mat ent(4, 9, 0.7), ref = x.old, d1(4, 9), d2(4, 9), e1(4, 9), e2(4, 9);
  counting_passes = 0;
  const auto a1 = rlhf::ppo::actor_loss(counting_t{}, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(),
                                        ent.cview(), ref.cview(), ap, d1.view(), e1.view());
  CHECK(counting_passes == 3);
  const auto a2 = rlhf::ppo::actor_loss(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), ent.cview(),
                                        ref.cview(), ap, d2.view(), e2.view());
  CHECK(a1.loss == a2.loss);
  CHECK(a1.kl == a2.kl);
  CHECK(d1.v == d2.v);
  CHECK(e1.v == e2.v);
  // errors are the entry point's, whatever the engine: nothing ran
  counting_passes = 0;
  mat bad(4, 8);
  expect_error(
      [&] {
        (void)rlhf::ppo::value_loss(counting_t{}, x.logp.cview(), bad.cview(), x.old.cview(), x.mask.cview(),
                                    rlhf::ppo::value_params{});
      },
      error_kind::shape, "returns");
  CHECK(counting_passes == 0);
}

TEST_CASE("the rules' exp (simd::vexp_full): std::exp over the whole range, inf above, NaN kept", "[engine][simd]") {
  namespace s = rlhf::simd;
  std::vector<double> xs = {-800, -746, -745.2, -745.1, -744,  -720,   -708.5, -708.3, -700,
                            -50,  -1,   -1e-10, 0,      -0.0,  1e-300, 1e-10,  0.3465, 0.5,
                            1,    50,   700,    709,    709.5, 709.78, 709.79, 710,    800};
  rng r(3);
  for (int i = 0; i < 4000; ++i) xs.push_back(r.uniform(-745, 709.7));
  for (int i = 0; i < 1000; ++i) xs.push_back(r.uniform(-1, 1));
  auto close = [](double got, double want, double rel) {
    if (std::isinf(want)) return got == want;
    return std::fabs(got - want) <= rel * want ||
           std::fabs(got - want) <= 2 * std::numeric_limits<double>::denorm_min();
  };
  for (std::size_t i = 0; i + 8 <= xs.size(); i += 8) {
    s::vec<double, 8> v;
    for (int k = 0; k < 8; ++k) v[k] = xs[i + static_cast<std::size_t>(k)];
    const auto e = s::vexp_full<double, 8>(v);
    for (int k = 0; k < 8; ++k) {
      INFO("x = " << v[k]);
      CHECK(close(e[k], std::exp(v[k]), 4e-16 * 8));
      s::vec<double, 1> one{};
      one[0] = v[k];
      CHECK(s::vexp_full<double, 1>(one)[0] == e[k]);  // a tail lane goes through the same formula
    }
  }
  // float: within 3 ulp of the correctly rounded exp; overflow at 88.72
  for (double x : xs) {
    const float xf = static_cast<float>(x < -104 ? x : x / 8.0);
    s::vec<float, 16> v = xf - s::vec<float, 16>{};
    const float got = s::vexp_full<float, 16>(v)[3];
    const float want = static_cast<float>(std::exp(static_cast<double>(xf)));
    INFO("x = " << xf);
    if (std::isinf(want))
      CHECK(got == want);
    else if (want < std::numeric_limits<float>::min())
      CHECK(std::fabs(got - want) <= 2 * std::numeric_limits<float>::denorm_min());
    else
      CHECK(std::fabs(got - want) <= 3.6e-7f * want);
  }
  s::vec<double, 2> sp{INFINITY, -INFINITY};
  CHECK(s::vexp_full<double, 2>(sp)[0] == INFINITY);
  CHECK(s::vexp_full<double, 2>(sp)[1] == 0.0);
  s::vec<double, 2> nan{NAN, 709.79};
  CHECK(std::isnan(s::vexp_full<double, 2>(nan)[0]));
  CHECK(s::vexp_full<double, 2>(nan)[1] == INFINITY);
  s::vec<float, 4> fs{88.8f, NAN, -INFINITY, 88.7f};
  const auto fe = s::vexp_full<float, 4>(fs);
  CHECK(fe[0] == INFINITY);
  CHECK(std::isnan(fe[1]));
  CHECK(fe[2] == 0.0f);
  CHECK(std::fabs(fe[3] - std::exp(88.7f)) <= 3.6e-7f * std::exp(88.7f));
}

TEST_CASE("objective engine: strided views, float data, and a NaN input", "[ppo][engine]") {
  const index_t B = 9, T = 37;  // T not a multiple of any lane count: the tails run too
  ppo_batch x(43, B, T);
  auto p = rlhf::ppo::policy_params::verl();
  p.agg.mode = rlhf::agg_mode::seq_mean_token_mean;
  mat g(B, T);
  const auto r = rlhf::ppo::policy_loss(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), x.mask.cview(), p, g.view());

  SECTION("transposed storage (stride(1) != 1) runs a token at a time: the same per-token values") {
    auto transposed = [&](const mat& m) {
      std::vector<double> t(m.v.size());
      for (index_t b = 0; b < B; ++b)
        for (index_t j = 0; j < T; ++j) t[static_cast<std::size_t>(j * B + b)] = m(b, j);
      return t;
    };
    const auto lt = transposed(x.logp), ot = transposed(x.old), at = transposed(x.adv), mt = transposed(x.mask);
    std::vector<double> gt(static_cast<std::size_t>(B * T), 0.0);
    auto v = [&](const std::vector<double>& d) { return rlhf::tensor_view<const double, 2>(d.data(), {B, T}, {1, B}); };
    const auto rs = rlhf::ppo::policy_loss(cpu, v(lt), v(ot), v(at), v(mt), p,
                                           rlhf::tensor_view<double, 2>(gt.data(), {B, T}, {1, B}));
    CHECK(rs.loss == Approx(r.loss).epsilon(1e-14));
    CHECK(rs.clipfrac == Approx(r.clipfrac).epsilon(1e-14));
    CHECK(rs.ppo_kl == Approx(r.ppo_kl).epsilon(1e-13));
    for (index_t b = 0; b < B; ++b)
      for (index_t j = 0; j < T; ++j) CHECK(gt[static_cast<std::size_t>(j * B + b)] == g(b, j));
  }

  SECTION("float data runs in float lanes: within float rounding of the double result") {
    auto f = [](const mat& m) {
      rlhf::tensor<float, 2> t({m.rows, m.cols});
      for (std::size_t i = 0; i < m.v.size(); ++i) t.data()[i] = static_cast<float>(m.v[i]);
      return t;
    };
    const auto lf = f(x.logp), of = f(x.old), af = f(x.adv), mf = f(x.mask);
    rlhf::tensor<float, 2> gf({B, T});
    const auto rf = rlhf::ppo::policy_loss(cpu, lf.view(), of.view(), af.view(), mf.view(), p, gf.view());
    CHECK(rf.loss == Approx(r.loss).epsilon(2e-6));
    CHECK(rf.ppo_kl == Approx(r.ppo_kl).epsilon(1e-4).margin(1e-6));
    for (index_t b = 0; b < B; ++b)
      for (index_t j = 0; j < T; ++j)
        CHECK(static_cast<double>(gf(b, j)) == Approx(g(b, j)).epsilon(2e-6).margin(1e-9));
  }

  SECTION("a NaN input or mask is an error naming it and its position; the gradient is not written") {
    mat bad = x.old;
    bad(4, 30) = NAN;
    mat gb(B, T, 7.0);
    try {
      rlhf::ppo::policy_loss(cpu, x.logp.cview(), bad.cview(), x.adv.cview(), x.mask.cview(), p, gb.view());
      FAIL("no error");
    } catch (const rlhf::error& e) {
      CHECK(e.kind() == error_kind::non_finite);
      CHECK_THAT(e.what(), Catch::Contains("old_log_prob") && Catch::Contains("[4, 30]"));
    }
    CHECK(std::all_of(gb.v.begin(), gb.v.end(), [](double v) { return v == 7.0; }));
    mat bm = x.mask;
    bm(8, 36) = INFINITY;
    expect_error(
        [&] { rlhf::ppo::policy_loss(cpu, x.logp.cview(), x.old.cview(), x.adv.cview(), bm.cview(), p, gb.view()); },
        error_kind::non_finite, "response_mask");
    // unchecked skips the inputs' scan, never the mask's
    expect_error(
        [&] {
          rlhf::ppo::policy_loss(cpu.unchecked(), x.logp.cview(), x.old.cview(), x.adv.cview(), bm.cview(), p,
                                 gb.view());
        },
        error_kind::non_finite, "response_mask");
    CHECK(std::all_of(gb.v.begin(), gb.v.end(), [](double v) { return v == 7.0; }));
  }
}

TEST_CASE("kl::loss on the engine: an estimate that overflows is an error naming the token, before any write",
          "[kl][engine][errors]") {
  const index_t B = 3, T = 21;
  rng r(5);
  mat lp = r.normal_mat(B, T, -1, 0.3), ref = r.normal_mat(B, T, -1, 0.3), m(B, T, 1.0);
  m(2, 17) = 0;  // the bad token is masked: still an error (the estimate is refused whatever the mask)
  lp(2, 17) = -1000;
  mat g(B, T, 3.0);
  try {
    rlhf::kl::loss(cpu, lp.cview(), ref.cview(), m.cview(), 0.1, rlhf::kl_params::trl_grpo(), {}, g.view(), true);
    FAIL("no error");
  } catch (const rlhf::error& e) {
    CHECK(e.kind() == error_kind::non_finite);
    CHECK_THAT(e.what(), Catch::Contains("logp") && Catch::Contains("[2, 17]"));
  }
  CHECK(std::all_of(g.v.begin(), g.v.end(), [](double v) { return v == 3.0; }));
  // float overflows earlier (e^89): the same error from float data
  rlhf::tensor<float, 2> lf({B, T}), rf({B, T}), mf({B, T}, 1.0f), gf({B, T}, 3.0f);
  for (index_t i = 0; i < B * T; ++i) {
    lf.data()[i] = -1.0f;
    rf.data()[i] = -1.0f;
  }
  lf(1, 4) = -100.0f;
  expect_error(
      [&] { rlhf::kl::loss(cpu, lf.view(), rf.view(), mf.view(), 0.1, rlhf::kl_params::trl_grpo(), {}, gf.view()); },
      error_kind::non_finite, "[1, 4]");
  CHECK(gf(0, 0) == 3.0f);
  // clamped (verl's k3): finite, and the value is the clamp for that token; gradient = coef / n * dk
  lp(2, 17) = -1.0;
  mat g2(B, T);
  const auto k = rlhf::kl::loss(cpu, lp.cview(), ref.cview(), m.cview(), 0.1, rlhf::kl_params::verl(kl_estimator::k3),
                                {}, g2.view());
  double s = 0, n = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) {
      const auto e = rlhf::math::kl_token(lp(b, t), ref(b, t), rlhf::kl_params::verl(kl_estimator::k3));
      s += m(b, t) * e.value;
      n += m(b, t);
      CHECK(g2(b, t) == Approx(m(b, t) * 0.1 / 62.0 * e.dlogp).margin(1e-15));
    }
  CHECK(n == 62);
  CHECK(k.mean_kl == Approx(s / n).epsilon(1e-14));
  CHECK(k.loss == Approx(0.1 * s / n).epsilon(1e-14));
}

TEST_CASE("elementwise maps on the engine: IS weights and the KL-penalized reward", "[engine][kl]") {
  const index_t B = 4, T = 19;
  rng r(8);
  mat old = r.normal_mat(B, T, -1, 0.3), roll = r.normal_mat(B, T, -1, 0.3), m = r.prefix_mask(B, T);
  m(0, 0) = 0;  // a masked token still gets its weight
  rlhf::ppo::is_params ip;
  ip.low = 0.8;
  ip.high = 1.25;
  mat w(B, T, -1.0);
  const double vkl = rlhf::ppo::rollout_is_weights(cpu, old.cview(), roll.cview(), m.cview(), ip, w.view());
  double s = 0, n = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) {
      const double is = std::exp(old(b, t) - roll(b, t));
      CHECK(w(b, t) == Approx(std::min(std::max(is, 0.8), 1.25)).epsilon(1e-15));
      s += m(b, t) * (roll(b, t) - old(b, t));
      n += m(b, t);
    }
  CHECK(vkl == Approx(s / n).epsilon(1e-14));
  // an empty mask is refused before the weights are written
  mat zero(B, T, 0.0), w2(B, T, -1.0);
  expect_error([&] { rlhf::ppo::rollout_is_weights(cpu, old.cview(), roll.cview(), zero.cview(), ip, w2.view()); },
               error_kind::empty, "action_mask");
  CHECK(std::all_of(w2.v.begin(), w2.v.end(), [](double v) { return v == -1.0; }));

  // rewards = scores - beta m KL, in place over the scores
  mat scores = r.normal_mat(B, T), lp = r.normal_mat(B, T, -1, 0.3), ref = r.normal_mat(B, T, -1, 0.3);
  const mat before = scores;
  const auto kp = rlhf::kl_params::verl(kl_estimator::k3);
  const auto st =
      rlhf::kl::apply_in_reward(cpu, scores.cview(), lp.cview(), ref.cview(), m.cview(), 0.05, kp, scores.view());
  double rows = 0;
  for (index_t b = 0; b < B; ++b) {
    double sk = 0, c = 0;
    for (index_t t = 0; t < T; ++t) {
      const double k = rlhf::math::kl_token(lp(b, t), ref(b, t), kp).value;
      CHECK(scores(b, t) == Approx(before(b, t) - 0.05 * k * m(b, t)).epsilon(1e-15).margin(1e-16));
      sk += k * m(b, t);
      c += m(b, t);
    }
    rows += sk / (c + 1e-8);
  }
  CHECK(st.mean_seq_kl == Approx(rows / B).epsilon(1e-14));
  CHECK(st.beta == 0.05);
}
