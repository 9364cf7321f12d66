// ops/: masked statistics, whitening, aggregation, logits.
#include "helpers.hpp"

using namespace testing;
using rlhf::cpu;
using rlhf::error_kind;
namespace ops = rlhf::ops;

TEST_CASE("masked mean/var: hand-computed values", "[ops]") {
  mat v(2, 3, {1, 2, 100, 3, 4, 5});
  mat m(2, 3, {1, 1, 0, 1, 1, 1});  // valid: 1 2 3 4 5
  CHECK(ops::masked_sum(cpu, v.cview(), m.cview()) == 15.0);
  CHECK(ops::masked_mean(cpu, v.cview(), m.cview(), 0.0) == 3.0);
  CHECK(ops::masked_mean(cpu, v.cview(), m.cview()) == Approx(15.0 / (5 + 1e-8)).epsilon(1e-15));
  // biased variance of 1..5 = 2, unbiased = 2.5
  CHECK(ops::masked_var(cpu, v.cview(), m.cview(), false, 0.0).var == Approx(2.0));
  CHECK(ops::masked_var(cpu, v.cview(), m.cview(), true, 0.0).var == Approx(2.5));
  std::vector<double> rows(2);
  ops::masked_mean_rows(cpu, v.cview(), m.cview(), 0.0, rlhf::view(rows));
  CHECK(rows[0] == 1.5);
  CHECK(rows[1] == 4.0);
  // a masked NaN-free but huge value is ignored
  mat w(2, 3, 0.0);
  ops::masked_whiten(cpu, v.cview(), m.cview(), rlhf::whiten_params::verl(true), w.view());
  CHECK(w(0, 0) == Approx((1 - 3) / std::sqrt(2.5 + 1e-8)).epsilon(1e-7));
  CHECK(w(1, 2) == Approx((5 - 3) / std::sqrt(2.5 + 1e-8)).epsilon(1e-7));
  CHECK(w(0, 2) == Approx((100 - 3) / std::sqrt(2.5 + 1e-8)).epsilon(1e-7));  // masked positions transformed too
  ops::masked_whiten(cpu, v.cview(), m.cview(), rlhf::whiten_params::verl(false), w.view());
  CHECK(w(0, 0) == Approx((1 - 3) / std::sqrt(2.5 + 1e-8) + 3).epsilon(1e-7));
}

TEST_CASE("masked statistics: gradients match finite differences", "[ops][grad]") {
  rng r(1);
  mat v = r.normal_mat(3, 5), m = r.prefix_mask(3, 5);
  mat g(3, 5);
  for (double eps : {0.0, 1e-8}) {
    ops::masked_mean(cpu, v.cview(), m.cview(), eps, g.view());
    check_gradient(v.v, g.v, [&] { return ops::masked_mean(cpu, v.cview(), m.cview(), eps); });
  }
  for (bool unbiased : {false, true}) {
    ops::masked_var(cpu, v.cview(), m.cview(), unbiased, 1e-8, g.view());
    check_gradient(v.v, g.v, [&] { return ops::masked_var(cpu, v.cview(), m.cview(), unbiased).var; });
  }
  // whitening: VJP against FD of <cot, whiten(v)>
  mat cot = r.normal_mat(3, 5), w(3, 5);
  for (bool shift : {true, false}) {
    const auto p = rlhf::whiten_params::verl(shift);
    ops::masked_whiten_backward(cpu, v.cview(), m.cview(), p, cot.cview(), g.view());
    check_gradient(v.v, g.v, [&] {
      ops::masked_whiten(cpu, v.cview(), m.cview(), p, w.view());
      double s = 0;
      for (std::size_t i = 0; i < w.v.size(); ++i) s += cot.v[i] * w.v[i];
      return s;
    });
  }
  // per-row mean backward
  std::vector<double> rc = {0.3, -1.2, 2.0};
  ops::masked_mean_rows_backward(cpu, m.cview(), 1e-8, rlhf::tensor_view<const double, 1>(rc.data(), {3}), g.view());
  check_gradient(v.v, g.v, [&] {
    std::vector<double> out(3);
    ops::masked_mean_rows(cpu, v.cview(), m.cview(), 1e-8, rlhf::view(out));
    return rc[0] * out[0] + rc[1] * out[1] + rc[2] * out[2];
  });
}

TEST_CASE("masked statistics: bad input", "[ops][errors]") {
  mat v(2, 2, 1.0), zero(2, 2, 0.0), one(2, 2, 0.0), wrong(3, 2, 1.0);
  one(0, 0) = 1;
  expect_error([&] { (void)ops::masked_mean(cpu, v.cview(), zero.cview()); }, error_kind::empty, "mask");
  expect_error([&] { (void)ops::masked_var(cpu, v.cview(), one.cview(), true); }, error_kind::empty, "mask");
  mat w(2, 2);
  expect_error([&] { (void)ops::masked_whiten(cpu, v.cview(), one.cview(), {}, w.view()); }, error_kind::empty, "mask");
  expect_error([&] { (void)ops::masked_mean(cpu, v.cview(), wrong.cview()); }, error_kind::shape, "mask");
  expect_error([&] { (void)ops::masked_mean(cpu, v.cview(), v.cview(), -1.0); }, error_kind::param, "eps");
  mat e(0, 3);
  expect_error([&] { (void)ops::masked_mean(cpu, e.cview(), e.cview()); }, error_kind::empty, "values");
}

TEST_CASE("masked sums and means on the engine: wide rows, fractional masks, float and double, against plain loops",
          "[ops][engine]") {
  // 5 x 37: the vector path and the row tail (37 = 2 * 16 + 5 floats); a
  // fractional mask and a masked NaN-free huge value
  rng r(7);
  const index_t B = 5, T = 37;
  mat v = r.normal_mat(B, T), m(B, T);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) m(b, t) = (b + t) % 3 == 0 ? 0.0 : ((b + t) % 3 == 1 ? 1.0 : 0.5);
  v(1, 3) = 1e300 * (m(1, 3) == 0 ? 1 : 0) + v(1, 3) * (m(1, 3) != 0 ? 1 : 0);
  std::vector<double> row_s(B, 0.0), row_c(B, 0.0);
  double tot = 0, n = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) {
      row_c[b] += m(b, t);
      if (m(b, t) != 0) row_s[b] += m(b, t) * v(b, t);
    }
  for (index_t b = 0; b < B; ++b) tot += row_s[b], n += row_c[b];
  CHECK(ops::masked_sum(cpu, v.cview(), m.cview()) == Approx(tot).epsilon(1e-14));
  mat g(B, T, -7.0);
  CHECK(ops::masked_mean(cpu, v.cview(), m.cview(), 1e-8, g.view()) == Approx(tot / (n + 1e-8)).epsilon(1e-14));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) CHECK(g(b, t) == Approx(m(b, t) / (n + 1e-8)).epsilon(1e-15));
  std::vector<double> rows(B);
  ops::masked_sum_rows(cpu, v.cview(), m.cview(), rlhf::view(rows));
  for (index_t b = 0; b < B; ++b) CHECK(rows[b] == Approx(row_s[b]).epsilon(1e-14));
  ops::masked_mean_rows(cpu, v.cview(), m.cview(), 0.0, rlhf::view(rows));
  for (index_t b = 0; b < B; ++b) CHECK(rows[b] == Approx(row_s[b] / row_c[b]).epsilon(1e-14));
  std::vector<double> cot = {0.5, -1, 2, 0.25, 3};
  ops::masked_sum_rows_backward(cpu, m.cview(), rlhf::tensor_view<const double, 1>(cot.data(), {B}), g.view());
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t) CHECK(g(b, t) == cot[b] * m(b, t));
  // float data: float lanes, sums in double (0.5 and 1 masks: exact products)
  std::vector<float> vf(v.v.begin(), v.v.end()), mf(m.v.begin(), m.v.end()), gf(v.v.size());
  rlhf::tensor_view<const float, 2> vfv(vf.data(), {B, T}), mfv(mf.data(), {B, T});
  // float lanes sum up to 8 tokens each in float, then in double
  // (docs/design.md): within 8 float roundings of the absolute sum
  double totf = 0, absf = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      if (mf[b * T + t] != 0) {
        totf += static_cast<double>(mf[b * T + t] * vf[b * T + t]);
        absf += std::abs(static_cast<double>(mf[b * T + t] * vf[b * T + t]));
      }
  const double sf = ops::masked_sum(cpu, vfv, mfv);
  CHECK(std::abs(sf - totf) <= 8 * 0x1p-24 * absf);
  ops::masked_mean(cpu, vfv, mfv, 0.0, rlhf::tensor_view<float, 2>(gf.data(), {B, T}));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      CHECK(gf[b * T + t] == static_cast<float>(static_cast<float>(1.0 / n) * mf[b * T + t]));
}

TEST_CASE("masked sums, means and aggregation: every argument checked (shape, null storage, NaN)", "[ops][errors]") {
  mat v(2, 3, 1.0), m(2, 3, 1.0), wrong(2, 2, 1.0);
  // a mask of another shape used to be read out of bounds by masked_sum
  expect_error([&] { (void)ops::masked_sum(cpu, v.cview(), wrong.cview()); }, error_kind::shape, "mask");
  std::vector<double> rows(2), bad_rows(3);
  expect_error([&] { ops::masked_sum_rows(cpu, v.cview(), wrong.cview(), rlhf::view(rows)); }, error_kind::shape,
               "mask");
  expect_error([&] { ops::masked_sum_rows(cpu, v.cview(), m.cview(), rlhf::view(bad_rows)); }, error_kind::shape,
               "out");
  // a view with a shape but no storage, in any argument
  rlhf::tensor_view<const double, 2> null_mask(nullptr, {2, 3});
  expect_error([&] { (void)ops::masked_sum(cpu, v.cview(), null_mask); }, error_kind::shape, "mask");
  expect_error([&] { (void)ops::masked_mean(cpu, v.cview(), null_mask); }, error_kind::shape, "mask");
  expect_error([&] { (void)ops::aggregate(cpu, v.cview(), null_mask, {}); }, error_kind::shape, "loss_mask");
  expect_error([&] { (void)ops::masked_sum(cpu, null_mask, m.cview()); }, error_kind::shape, "values");
  rlhf::tensor_view<double, 1> null_out(nullptr, {2});
  expect_error([&] { ops::masked_mean_rows(cpu, v.cview(), m.cview(), 0.0, null_out); }, error_kind::shape, "out");
  std::vector<double> cot = {1.0, NAN};
  mat g(2, 3, 5.0);
  expect_error(
      [&] {
        ops::masked_sum_rows_backward(cpu, m.cview(), rlhf::tensor_view<const double, 1>(cot.data(), {2}), g.view());
      },
      error_kind::non_finite, "cot");
  expect_error(
      [&] {
        ops::masked_mean_rows_backward(cpu, m.cview(), -1.0, rlhf::tensor_view<const double, 1>(cot.data(), {2}),
                                       g.view());
      },
      error_kind::param, "eps");
  CHECK(g(0, 0) == 5.0);  // nothing written
  v(1, 2) = NAN;
  expect_error([&] { (void)ops::masked_sum(cpu, v.cview(), m.cview()); }, error_kind::non_finite, "values");
  expect_error([&] { ops::masked_sum_rows(cpu, v.cview(), m.cview(), rlhf::view(rows)); }, error_kind::non_finite,
               "values");
  // a masked-out NaN with the scan off is skipped, not multiplied
  m(1, 2) = 0;
  CHECK(ops::masked_sum(cpu.unchecked(), v.cview(), m.cview()) == 5.0);
}

TEST_CASE("aggregation modes: hand-computed values", "[ops][agg]") {
  // rows: [1 2 3 | m 1 1 0], [4 5 6 | m 1 0 0], [7 8 9 | m 0 0 0]
  mat L(3, 3, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  mat m(3, 3, {1, 1, 0, 1, 0, 0, 0, 0, 0});
  auto agg = [&](rlhf::agg_mode mode, rlhf::agg_params p = {}) {
    p.mode = mode;
    return ops::aggregate(cpu, L.cview(), m.cview(), p);
  };
  using rlhf::agg_mode;
  CHECK(agg(agg_mode::token_mean) == Approx(7.0 / 3));
  CHECK(agg(agg_mode::token_sum) == 7.0);
  CHECK(agg(agg_mode::seq_mean_token_sum) == Approx((3.0 + 4.0) / 2));  // empty row excluded
  CHECK(agg(agg_mode::seq_mean_token_mean) == Approx((1.5 + 4.0) / 2).epsilon(1e-8));
  CHECK(agg(agg_mode::seq_mean_token_sum_norm) == Approx((3.0 + 4.0) / 2 / 3));
  rlhf::agg_params p;
  p.loss_scale_factor = 10;
  CHECK(agg(agg_mode::seq_mean_token_sum_norm, p) == Approx(3.5 / 10));
  p = {};
  p.dp_size = 4;
  p.batch_num_tokens = 14;
  CHECK(agg(agg_mode::token_mean, p) == Approx(7.0 / 14 * 4));
  p = {};
  p.dp_size = 2;
  p.global_batch_size = 5;
  CHECK(agg(agg_mode::seq_mean_token_sum, p) == Approx(7.0 / 5 * 2));
  CHECK(rlhf::parse_agg_mode("seq-mean-token-mean") == agg_mode::seq_mean_token_mean);
}

TEST_CASE("aggregation: gradients and errors", "[ops][agg][grad][errors]") {
  rng r(2);
  mat L = r.normal_mat(4, 6), m = r.prefix_mask(4, 6), g(4, 6);
  for (int i = 0; i < 5; ++i) {
    rlhf::agg_params p;
    p.mode = static_cast<rlhf::agg_mode>(i);
    ops::aggregate(cpu, L.cview(), m.cview(), p, g.view());
    check_gradient(L.v, g.v, [&] { return ops::aggregate(cpu, L.cview(), m.cview(), p); });
  }
  expect_error([] { (void)rlhf::parse_agg_mode("token-avg"); }, error_kind::param, "loss_agg_mode");
  mat zero(4, 6, 0.0);
  expect_error([&] { (void)ops::aggregate(cpu, L.cview(), zero.cview(), {}); }, error_kind::empty, "loss_mask");
  rlhf::agg_params p;
  p.dp_size = 2;
  expect_error([&] { (void)ops::aggregate(cpu, L.cview(), m.cview(), p); }, error_kind::param, "batch_num_tokens");
  p.dp_size = -1;
  expect_error([&] { (void)ops::aggregate(cpu, L.cview(), m.cview(), p); }, error_kind::param, "dp_size");
  L(0, 0) = INFINITY;
  expect_error([&] { (void)ops::aggregate(cpu, L.cview(), m.cview(), {}); }, error_kind::non_finite, "loss_mat");
}

TEST_CASE("logits: log-probs and entropy, hand-computed", "[ops][logits]") {
  // p = [1/4, 3/4]
  std::vector<double> z = {0.0, std::log(3.0), 5.0, 5.0};
  std::vector<long long> labels = {1, 0};
  std::vector<double> lp(2), H(2), lse(2);
  auto Z = rlhf::view(z.data(), {2, 2});
  ops::logprobs_entropy(cpu, Z, rlhf::view(labels.data(), {2}), rlhf::view(lp), rlhf::view(H), rlhf::view(lse));
  CHECK(lp[0] == Approx(std::log(0.75)));
  CHECK(H[0] == Approx(-(0.25 * std::log(0.25) + 0.75 * std::log(0.75))));
  CHECK(lse[0] == Approx(std::log(4.0)));
  CHECK(lp[1] == Approx(std::log(0.5)));
  CHECK(H[1] == Approx(std::log(2.0)));
  // huge logits do not overflow; log p is never positive
  std::vector<double> big = {1e4, -1e4, 1e4 - 1};
  std::vector<long long> l0 = {0};
  std::vector<double> one(1), h1(1);
  ops::logprobs_entropy(cpu, rlhf::view(big.data(), {1, 3}), rlhf::view(l0.data(), {1}), rlhf::view(one),
                        rlhf::view(h1));
  CHECK(one[0] <= 0.0);
  CHECK(one[0] == Approx(-std::log1p(std::exp(-1.0))));
  CHECK(std::isfinite(h1[0]));
}

TEST_CASE("logits: backward matches finite differences (with temperature, in place)", "[ops][logits][grad]") {
  rng r(3);
  const index_t N = 4, V = 7;
  mat z = r.normal_mat(N, V, 0, 2);
  std::vector<long long> labels = {0, 6, 3, 3};
  auto L = rlhf::view(labels.data(), {N});
  std::vector<double> g = {0.5, -1.0, 2.0, 0.1}, h = {1.5, 0.3, -0.7, 2.0};
  for (double tau : {1.0, 0.7}) {
    ops::logits_params p{tau};
    mat dz(N, V);
    ops::logprobs_entropy_backward(cpu, z.cview(), L, rlhf::view(std::as_const(g)), rlhf::view(std::as_const(h)),
                                   dz.view(), p);
    check_gradient(z.v, dz.v, [&] {
      std::vector<double> lp(N), H(N);
      ops::logprobs_entropy(cpu, z.cview(), L, rlhf::view(lp), rlhf::view(H), {}, p);
      double s = 0;
      for (index_t i = 0; i < N; ++i) s += g[i] * lp[i] + h[i] * H[i];
      return s;
    });
    // in place over the logits buffer gives the same gradient
    mat inplace = z;
    ops::logprobs_entropy_backward(cpu, inplace.cview(), L, rlhf::view(std::as_const(g)), rlhf::view(std::as_const(h)),
                                   inplace.view(), p);
    for (std::size_t i = 0; i < dz.v.size(); ++i) CHECK(inplace.v[i] == Approx(dz.v[i]).epsilon(1e-12));
  }
}

TEST_CASE("logits: bad input", "[ops][logits][errors]") {
  std::vector<double> z = {0, 1, 2, 3};
  std::vector<long long> bad = {0, 2};
  std::vector<double> lp(2);
  auto Z = rlhf::view(z.data(), {2, 2});
  expect_error([&] { ops::logprobs_entropy(cpu, Z, rlhf::view(bad.data(), {2}), rlhf::view(lp)); }, error_kind::shape,
               "labels");
  std::vector<long long> ok = {0, 1};
  expect_error(
      [&] {
        ops::logprobs_entropy(cpu, Z, rlhf::view(ok.data(), {2}), rlhf::view(lp), {}, {}, ops::logits_params{0.0});
      },
      error_kind::param, "temperature");
  z[3] = NAN;
  expect_error([&] { ops::logprobs_entropy(cpu, Z, rlhf::view(ok.data(), {2}), rlhf::view(lp)); },
               error_kind::non_finite, "logits");
  std::vector<double> e;
  expect_error(
      [&] {
        ops::logprobs_entropy(cpu, rlhf::view(e.data(), {0, 4}), rlhf::view(ok.data(), {0}), rlhf::view(lp));
      },
      error_kind::empty, "logits");
}
