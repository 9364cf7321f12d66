// rlhf++ — the failure modes RLHF users meet, named.
//
// Each step's record gets one boolean flag per diagnostic; the first time a
// flag turns on, one plain-English warning line is printed (once per run, so
// a flag that flickers does not flood the terminal). Thresholds are parameters.
//
//   reward_hacking      reward keeps rising while the KL to the reference model
//                       grows past kl_alarm and doubles within `window` steps:
//                       the policy is exploiting the reward model
//   entropy_collapse    mean token entropy below max(entropy_floor,
//                       entropy_fraction * initial entropy); for a policy that
//                       gives only log-probs, the entropy estimated from its
//                       samples (`entropy_sampled`)
//   ratio_blowup        clip fraction above clipfrac_alarm or approx KL(old ||
//                       new) above approx_kl_alarm: updates are too large
//   stagnation          advantages carry no signal (std ~ 0, e.g. GRPO groups
//                       whose rewards are all equal, or a policy already at the
//                       KL-regularized optimum) or dL/dlogp vanishes
//   value_divergence    value loss non-finite or above value_growth x its minimum
#pragma once

#include <cmath>
#include <deque>
#include <iostream>
#include <string>

#include "../core/check.hpp"
#include "metrics.hpp"

namespace rlhf::train {

struct diagnostic_params {
  long long window = 10;
  double kl_alarm = 5.0;  ///< nats per sequence
  double entropy_floor = 0.05;
  double entropy_fraction = 0.1;
  double clipfrac_alarm = 0.4;
  double approx_kl_alarm = 0.5;
  double stagnation_std = 1e-8;
  double stagnation_zero_groups = 0.9;  ///< fraction of zero-variance groups
  double value_growth = 100.0;
  long long value_warmup = 5;
};

inline void check_diagnostic_params(const diagnostic_params& d, const char* fn) {
  using rlhf::detail::require_nonneg_param;
  rlhf::detail::require_param(d.window >= 1, fn, "diag.window", "must be >= 1");
  rlhf::detail::require_param(d.value_warmup >= 0, fn, "diag.value_warmup", "must be >= 0");
  require_nonneg_param(d.kl_alarm, fn, "diag.kl_alarm");
  require_nonneg_param(d.entropy_floor, fn, "diag.entropy_floor");
  rlhf::detail::require_param(d.entropy_fraction >= 0 && d.entropy_fraction <= 1, fn, "diag.entropy_fraction",
                              "must be in [0, 1]");
  rlhf::detail::require_param(d.clipfrac_alarm >= 0 && d.clipfrac_alarm <= 1, fn, "diag.clipfrac_alarm",
                              "must be in [0, 1]");
  require_nonneg_param(d.approx_kl_alarm, fn, "diag.approx_kl_alarm");
  require_nonneg_param(d.stagnation_std, fn, "diag.stagnation_std");
  rlhf::detail::require_param(d.stagnation_zero_groups >= 0 && d.stagnation_zero_groups <= 1, fn,
                              "diag.stagnation_zero_groups", "must be in [0, 1]");
  require_nonneg_param(d.value_growth, fn, "diag.value_growth");
}

class diagnostics {
 public:
  explicit diagnostics(diagnostic_params p = {}, std::ostream* warn = &std::cerr) : p_(p), warn_(warn) {}

  /// Reads the step's record, adds the flags, prints warnings on transitions.
  void observe(long long step, record& r) {
    const double reward = r.number("reward"), kl = r.number("kl_ref");
    rewards_.push_back(reward);
    kls_.push_back(kl);
    if (static_cast<long long>(rewards_.size()) > p_.window + 1) {
      rewards_.pop_front();
      kls_.pop_front();
    }
    const bool full = static_cast<long long>(rewards_.size()) == p_.window + 1;
    const bool hacking =
        full && rewards_.back() > rewards_.front() && kl > p_.kl_alarm && kls_.front() > 0 && kl > 2.0 * kls_.front();
    flag(step, r, "reward_hacking", hacking, 0,
         "reward is rising while the KL to the reference model explodes: the policy is gaming the reward model "
         "(raise the KL coefficient or use an adaptive controller)");

    bool collapse = false;
    // the exact entropy where the policy gives it (logits, hidden states, entropy()), else the
    // estimate from the sampled tokens' log-probs (-mean log pi(y_t))
    const char* hkey = r.has("entropy") ? "entropy" : "entropy_sampled";
    if (r.has(hkey)) {
      const double h = r.number(hkey);
      if (std::isnan(entropy0_)) entropy0_ = h;
      collapse = h < std::fmax(p_.entropy_floor, p_.entropy_fraction * entropy0_);
    }
    flag(step, r, "entropy_collapse", collapse, 1,
         "the policy's entropy collapsed: it samples almost deterministically and stops exploring "
         "(add an entropy bonus or a KL penalty)");

    const bool blowup = r.number("clipfrac", 0) > p_.clipfrac_alarm || r.number("approx_kl", 0) > p_.approx_kl_alarm;
    flag(step, r, "ratio_blowup", blowup, 2,
         "importance ratios blew up (large clip fraction or approx KL between old and new policy): "
         "lower the learning rate or the number of PPO epochs");

    const bool stagnant = r.number("adv_std", 1) < p_.stagnation_std ||
                          r.number("zero_variance_groups", 0) >= p_.stagnation_zero_groups ||
                          r.number("grad_norm", 1) < 1e-12;
    flag(step, r, "stagnation", stagnant, 3,
         "training stagnates: advantages carry no signal (every response of a group got the same reward, or the "
         "policy sits at the KL-regularized optimum where the penalized reward is constant) or gradients vanished");

    bool diverging = false;
    if (r.has("vf_loss")) {
      const double v = r.number("vf_loss");
      ++value_steps_;
      if (std::isfinite(v) && value_steps_ <= p_.value_warmup) vmin_ = std::fmin(vmin_, v);
      diverging = !std::isfinite(v) || (value_steps_ > p_.value_warmup && v > p_.value_growth * vmin_);
      if (std::isfinite(v)) vmin_ = std::fmin(vmin_, v);
    }
    flag(step, r, "value_divergence", diverging, 4,
         "the value loss diverges: lower the critic's learning rate or clip its updates");
  }

  void save(std::ostream& o) const {
    o.precision(17);
    o << rewards_.size();
    for (std::size_t i = 0; i < rewards_.size(); ++i) o << ' ' << rewards_[i] << ' ' << kls_[i];
    o << ' ' << entropy0_ << ' ' << vmin_ << ' ' << value_steps_;
    for (bool b : warned_) o << ' ' << b;
    o << '\n';
  }
  void load(std::istream& in) {
    std::size_t n = 0;
    in >> n;
    rewards_.clear();
    kls_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      double a = 0, b = 0;
      in >> a >> b;
      rewards_.push_back(a);
      kls_.push_back(b);
    }
    std::string e0, vm;  // may be "nan"/"inf"
    in >> e0 >> vm >> value_steps_;
    entropy0_ = std::stod(e0);
    vmin_ = std::stod(vm);
    for (bool& b : warned_) in >> b;
  }

 private:
  void flag(long long step, record& r, const char* name, bool value, int slot, const char* sentence) {
    r.set(name, value);
    if (value && !warned_[slot] && warn_) *warn_ << "warning: step " << step << ": " << sentence << '\n';
    warned_[slot] = warned_[slot] || value;
  }

  diagnostic_params p_;
  std::ostream* warn_;
  std::deque<double> rewards_, kls_;
  double entropy0_ = NAN, vmin_ = INFINITY;
  long long value_steps_ = 0;
  bool warned_[5] = {false, false, false, false, false};
};

}  // namespace rlhf::train
