// rlhf++ — KL coefficient controllers (Ziegler et al. 2019; verl core_algos,
// TRL <= 0.13 and OpenRLHF kl_controller give bit-identical sequences).
//
//   fixed:    beta stays kl_coef.
//   adaptive: e = clip(current_kl / target - 1, -0.2, 0.2);
//             beta *= 1 + e * n_steps / horizon.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "../core/check.hpp"

namespace rlhf::kl {

class fixed_controller {
 public:
  explicit fixed_controller(double kl_coef) : value_(kl_coef) {
    detail::require_nonneg_param(kl_coef, "kl::fixed_controller", "kl_coef");
  }
  [[nodiscard]] double value() const noexcept { return value_; }
  void update(double current_kl, double n_steps) const {
    check_update(current_kl, n_steps, "kl::fixed_controller::update");
  }
  static void check_update(double current_kl, double n_steps, const char* fn) {
    if (!std::isfinite(current_kl)) detail::fail(error_kind::non_finite, fn, "current_kl", "is not finite");
    detail::require_nonneg_param(n_steps, fn, "n_steps");
  }

 private:
  double value_;
};

class adaptive_controller {
 public:
  adaptive_controller(double init_kl_coef, double target_kl, double horizon)
      : value_(init_kl_coef), target_(target_kl), horizon_(horizon) {
    constexpr const char* fn = "kl::adaptive_controller";
    detail::require_nonneg_param(init_kl_coef, fn, "init_kl_coef");
    detail::require_positive_param(target_kl, fn, "target_kl");
    detail::require_positive_param(horizon, fn, "horizon");
  }
  [[nodiscard]] double value() const noexcept { return value_; }
  [[nodiscard]] double target() const noexcept { return target_; }
  [[nodiscard]] double horizon() const noexcept { return horizon_; }
  /// Restores a checkpointed coefficient.
  void set_value(double v) {
    detail::require_nonneg_param(v, "kl::adaptive_controller::set_value", "value");
    value_ = v;
  }

  /// The largest n_steps (responses per update) whose worst-case factor
  /// 1 - 0.2 n_steps / horizon keeps the coefficient positive.
  [[nodiscard]] double max_n_steps() const noexcept { return 5.0 * horizon_; }

  /// Changes the coefficient, or throws and keeps it: a factor <= 0
  /// (n_steps >= 5 horizon) is a `param` error, an overflow `non_finite`.
  void update(double current_kl, double n_steps) {
    constexpr const char* fn = "kl::adaptive_controller::update";
    fixed_controller::check_update(current_kl, n_steps, fn);
    const double e = std::clamp(current_kl / target_ - 1.0, -0.2, 0.2);
    const double factor = 1.0 + e * n_steps / horizon_;
    if (!(factor > 0))
      detail::fail(error_kind::param, fn, "horizon",
                   "is too small for n_steps = " + std::to_string(n_steps) +
                       ": the factor 1 + e n_steps / horizon is <= 0 and would make the KL coefficient negative "
                       "(horizon must be > n_steps / 5)");
    const double v = value_ * factor;
    if (!std::isfinite(v))
      detail::fail(error_kind::non_finite, fn, "value", "the KL coefficient overflows (horizon too small?)");
    value_ = v;
  }

 private:
  double value_, target_, horizon_;
};

}  // namespace rlhf::kl
