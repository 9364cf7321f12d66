// Shared helpers of the unit tests: small owning matrices, a deterministic
// RNG, and central finite differences.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <random>
#include <rlhf/rlhf.hpp>
#include <vector>

namespace testing {

using rlhf::index_t;

struct mat {
  index_t rows = 0, cols = 0;
  std::vector<double> v;
  mat() = default;
  mat(index_t r, index_t c, double fill = 0.0) : rows(r), cols(c), v(static_cast<std::size_t>(r * c), fill) {}
  mat(index_t r, index_t c, std::vector<double> data) : rows(r), cols(c), v(std::move(data)) {
    REQUIRE(static_cast<index_t>(v.size()) == r * c);
  }
  double& operator()(index_t i, index_t j) { return v[static_cast<std::size_t>(i * cols + j)]; }
  double operator()(index_t i, index_t j) const { return v[static_cast<std::size_t>(i * cols + j)]; }
  rlhf::tensor_view<double, 2> view() { return {v.data(), {rows, cols}}; }
  rlhf::tensor_view<const double, 2> cview() const { return {v.data(), {rows, cols}}; }
};

inline std::vector<double>& as_vec(mat& m) { return m.v; }

struct rng {
  std::mt19937_64 g;
  explicit rng(unsigned long long seed) : g(seed) {}
  double normal(double mu = 0, double sd = 1) { return std::normal_distribution<double>(mu, sd)(g); }
  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(g); }
  mat normal_mat(index_t r, index_t c, double mu = 0, double sd = 1) {
    mat m(r, c);
    for (auto& x : m.v) x = normal(mu, sd);
    return m;
  }
  /// A 0/1 mask with a prefix of valid tokens per row (lengths in [1, c]).
  mat prefix_mask(index_t r, index_t c) {
    mat m(r, c);
    for (index_t i = 0; i < r; ++i) {
      const auto len = 1 + static_cast<index_t>(g() % static_cast<unsigned long long>(c));
      for (index_t j = 0; j < len; ++j) m(i, j) = 1;
    }
    return m;
  }
};

/// Central differences of f at x (modified in place and restored), compared
/// element-wise with `grad`: |fd - g| <= atol + rtol |g|.
inline void check_gradient(std::vector<double>& x, const std::vector<double>& grad, const std::function<double()>& f,
                           double h = 1e-6, double rtol = 1e-6, double atol = 1e-8) {
  REQUIRE(x.size() == grad.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    const double fd = (fp - fm) / (2 * h);
    INFO("element " << i << ": analytic " << grad[i] << ", finite difference " << fd);
    CHECK(std::fabs(fd - grad[i]) <= atol + rtol * std::fabs(grad[i]));
  }
}

/// Expects an rlhf::error of `kind` whose message names `arg`.
template <class F>
void expect_error(F&& f, rlhf::error_kind kind, const std::string& arg) {
  try {
    f();
    FAIL("expected rlhf::error(" << rlhf::to_string(kind) << ") naming '" << arg << "'");
  } catch (const rlhf::error& e) {
    INFO(e.what());
    CHECK(e.kind() == kind);
    CHECK(std::string(e.what()).find(arg) != std::string::npos);
  }
}

}  // namespace testing
