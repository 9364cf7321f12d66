// rlhf++ — the numbers of a run: plain structs with defaults.
//
// Every field is reflected (config/reflect.hpp), so an options struct prints
// itself, writes and reads JSON and takes command-line overrides
// (`--ppo.clip_low=0.1`) with no per-field code. Structural choices
// (algorithm, KL estimator and placement, advantage estimator, aggregation)
// are not here: they are types (core/choices.hpp).
#pragma once

#include <cmath>
#include <string>

#include "../advantage/grpo.hpp"
#include "../concepts/batch.hpp"
#include "../objectives/a2c.hpp"
#include "../objectives/dpo.hpp"
#include "../objectives/ppo.hpp"
#include "../objectives/preference.hpp"
#include "../objectives/rollout_correction.hpp"
#include "diagnostics.hpp"
#include "reference.hpp"

namespace rlhf::train {

/// The numbers of a run (defaults: verl's where it has one).
RLHF_NAMED_ENUM(rollout_is_mode, (off, "off"), (token, "token"), (sequence, "sequence"));

/// Rollout correction (verl's rollout_corr; docs/ppo.md): when the sampler's
/// own log-probs (the rollout's `logprobs`, e.g. a vLLM engine's) differ from
/// the trainer's recomputed old log-probs, log_ratio = old - rollout gives
///  - a rejection mask: tokens (or whole responses) whose statistic leaves
///    its bounds are left out of the policy loss (rollout_corr::rejection_mask,
///    verl's option and threshold strings);
///  - IS weights: each token's policy loss times a truncated (TIS) or masked
///    (IcePop) importance weight pi_old / mu (rollout_corr::correction_weights).
/// The advantages keep every token. PPO on the CPU; off by default.
struct rollout_correction {
  std::string rejection;            ///< verl rollout_rs, e.g. "token_k1", "seq_max_k2,token_k1"; "" = off
  std::string rejection_threshold;  ///< verl rollout_rs_threshold, e.g. "0.5_2.0" (k1) or "0.01"
  rollout_is_mode weights = rollout_is_mode::off;  ///< verl rollout_is: token or sequence weights
  double weights_upper = 2.0;                      ///< TIS cap / IcePop upper bound (> 0)
  double weights_lower = 0.0;                      ///< IcePop lower bound (0 < lower <= upper); 0 = TIS
  bool weights_batch_normalize = false;            ///< verl rollout_is_batch_normalize
  [[nodiscard]] bool active() const { return !rejection.empty() || weights != rollout_is_mode::off; }
};

struct rl_options {
  long long steps = 100;
  long long prompts_per_step = 8;
  long long group_size = 1;  ///< responses per prompt (GRPO/RLOO need >= 2)
  sampling sample{};
  // PPO
  long long ppo_epochs = 4;
  long long minibatch_size = 0;                         ///< responses per minibatch; 0 = the whole batch
  ppo::policy_params ppo = ppo::policy_params::verl();  ///< clip ranges, statistics rules (aggregation: the structure)
  ppo::value_params value = ppo::value_params::verl(0.2);  ///< critic loss (aggregation: the structure)
  double entropy_coef = 0.0;
  double early_stop_kl = INFINITY;  ///< stop the epochs when approx KL > 1.5 x this (SB3 target_kl)
  // A2C
  a2c::params a2c = a2c::params::sb3();
  // KL toward the reference
  double kl_coef = 0.05;
  bool adaptive_kl = false;
  double kl_target = 6.0;  ///< adaptive controller target (verl target_kl)
  double kl_horizon = 10000;
  // advantages
  double gamma = 1.0, lam = 0.95;
  bool whiten_advantages = true;
  adv::grpo_params grpo{};
  rollout_correction rollout_corr{};  ///< the sampler's log-probs against the trainer's (PPO, CPU)
  // reference updates, diagnostics, logging
  reference_policy ref{};
  diagnostic_params diag{};
  std::string metrics_path;  ///< JSONL; empty = none
  bool progress = true;
  long long progress_every = 10;
  std::string checkpoint_path;  ///< empty = none
  long long checkpoint_every = 0;
  unsigned long long seed = 0;
  /// A step that throws gives the models it changed their state back (each
  /// Checkpointable model the step changes is saved in memory once per step).
  bool rollback = true;
};

/// The preference trainer's objective: DPO (any dpo::loss_type, `loss`), or
/// the peers' others on the same pairs (CPU): KTO (each pair's chosen is a
/// desirable sample, its rejected an undesirable one; `kto`), CPO / SimPO /
/// AlphaPO (`cpo`, reference-free; + cpo_alpha * NLL of the chosen tokens),
/// ORPO (NLL of the chosen tokens - mean beta logsig(log odds); `orpo_beta`).
RLHF_NAMED_ENUM(preference_objective, (dpo, "dpo"), (kto, "kto"), (cpo, "cpo"), (orpo, "orpo"));

struct dpo_options {
  long long steps = 100;
  long long batch_size = 16;  ///< pairs per step
  dpo::params loss = dpo::params::trl(dpo::loss_type::sigmoid, 0.1);
  preference_objective objective = preference_objective::dpo;
  pref::kto_params kto{};  ///< objective kto (KTOConfig defaults)
  pref::cpo_params cpo{};  ///< objective cpo (CPOConfig defaults; cpo_params::simpo(), alphapo())
  double cpo_alpha = 1.0;  ///< CPO's NLL weight (CPOConfig cpo_alpha; 0 = pure SimPO)
  double orpo_beta = 0.1;  ///< ORPOConfig beta
  reference_policy ref{};
  std::string metrics_path;
  bool progress = true;
  long long progress_every = 10;
  std::string checkpoint_path;
  long long checkpoint_every = 0;
  unsigned long long seed = 0;
  /// A step that throws gives the models it changed their state back (each
  /// Checkpointable model the step changes is saved in memory once per step).
  bool rollback = true;
};

/// The run loop's options of any trainer (steps, progress, checkpoints) in range.
template <class O>
void check_run_fields(const O& o, const char* fn) {
  using rlhf::detail::require_param;
  require_param(o.steps >= 0, fn, "steps", "must be >= 0");
  require_param(o.progress_every >= 1, fn, "progress_every", "must be >= 1");
  require_param(o.checkpoint_every >= 0, fn, "checkpoint_every", "must be >= 0 (0 = never)");
}

/// Every option of an RL run in its range (at construction, and after
/// read_json / command-line overrides through the trainer's constructor).
inline void check_rl_options(const rl_options& o, const char* fn) {
  using rlhf::detail::require_param;
  check_run_fields(o, fn);
  require_param(o.prompts_per_step >= 1, fn, "prompts_per_step", "must be >= 1");
  require_param(o.group_size >= 1, fn, "group_size", "must be >= 1");
  require_param(o.ppo_epochs >= 1, fn, "ppo_epochs", "must be >= 1");
  require_param(o.minibatch_size >= 0, fn, "minibatch_size", "must be >= 0 (0 = whole batch)");
  require_param(o.sample.max_new_tokens >= 1, fn, "sample.max_new_tokens", "must be >= 1");
  rlhf::detail::require_positive_param(o.sample.temperature, fn, "sample.temperature");
  rlhf::detail::require_nonneg_param(o.kl_coef, fn, "kl_coef");
  rlhf::detail::require_finite_param(o.entropy_coef, fn, "entropy_coef");
  require_param(!(o.early_stop_kl <= 0) && !std::isnan(o.early_stop_kl), fn, "early_stop_kl",
                "must be > 0 (INFINITY = off)");
  rlhf::detail::require_positive_param(o.kl_target, fn, "kl_target");
  rlhf::detail::require_positive_param(o.kl_horizon, fn, "kl_horizon");
  // the adaptive controller's factor 1 + e n / horizon (|e| <= 0.2, n = responses per step) stays > 0
  if (o.adaptive_kl && o.prompts_per_step >= 1 && o.group_size >= 1)
    require_param(o.kl_horizon * 5.0 > static_cast<double>(o.prompts_per_step) * static_cast<double>(o.group_size), fn,
                  "kl_horizon",
                  "must be > (prompts_per_step x group_size) / 5 with adaptive_kl: a smaller horizon can make the "
                  "KL coefficient negative in one step");
  require_param(o.gamma >= 0 && o.gamma <= 1, fn, "gamma", "must be in [0, 1]");
  require_param(o.lam >= 0 && o.lam <= 1, fn, "lam", "must be in [0, 1]");
  ppo::check_policy_params(o.ppo, fn);
  ppo::check_value_params(o.value, fn);
  a2c::detail::check_params(o.a2c, fn);
  check_reference_policy(o.ref, fn);
  rlhf::detail::require_nonneg_param(o.grpo.epsilon, fn, "grpo.epsilon");
  check_diagnostic_params(o.diag, fn);
  const auto& rc = o.rollout_corr;
  if (rc.weights != rollout_is_mode::off) {
    require_param(std::isfinite(rc.weights_upper) && rc.weights_upper > 0, fn, "rollout_corr.weights_upper",
                  "must be > 0");
    require_param(rc.weights_lower == 0 || (rc.weights_lower > 0 && rc.weights_lower <= rc.weights_upper), fn,
                  "rollout_corr.weights_lower", "must be 0 (TIS) or in (0, weights_upper] (IcePop)");
  }
}

/// The rollout correction's rejection options, parsed (verl's strings; an
/// error names rollout_rs or rollout_rs_threshold). Empty when off. Called
/// when a trainer is built (read_json keeps the strings as they are).
inline std::vector<rollout_corr::rs_option> rejection_options(const rollout_correction& rc) {
  if (rc.rejection.empty()) return {};
  return rollout_corr::parse_rejection(rc.rejection, rc.rejection_threshold);
}
/// The rollout correction's weight parameters (weights != off).
inline rollout_corr::weights_params weight_params(const rollout_correction& rc) {
  rollout_corr::weights_params p;
  p.level = rc.weights == rollout_is_mode::sequence ? rollout_corr::is_level::sequence : rollout_corr::is_level::token;
  p.upper = rc.weights_upper;
  p.lower = rc.weights_lower;
  p.icepop = rc.weights_lower > 0;
  p.batch_normalize = rc.weights_batch_normalize;
  return p;
}

inline void check_dpo_options(const dpo_options& o, const char* fn) {
  using rlhf::detail::require_param;
  require_param(o.batch_size >= 1, fn, "batch_size", "must be >= 1");
  check_run_fields(o, fn);
  dpo::detail::check_params(o.loss, fn);
  pref::check_kto_params(o.kto, fn);
  pref::check_cpo_params(o.cpo, fn);
  rlhf::detail::require_nonneg_param(o.cpo_alpha, fn, "cpo_alpha");
  rlhf::detail::require_positive_param(o.orpo_beta, fn, "orpo_beta");
  check_reference_policy(o.ref, fn);
}

}  // namespace rlhf::train
