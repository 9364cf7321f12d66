// rlhf++ — the numbers of a run: plain structs with defaults.
//
// Every field is reflected (config/reflect.hpp), so an options struct prints
// itself, writes and reads JSON and takes command-line overrides
// (`--ppo.clip_low=0.1`) with no per-field code. Structural choices
// (algorithm, KL estimator and placement, advantage estimator, aggregation)
// are not here: they are types (config/choices.hpp).
#pragma once

#include <cmath>
#include <string>

#include "../advantage/grpo.hpp"
#include "../concepts/batch.hpp"
#include "../objectives/a2c.hpp"
#include "../objectives/dpo.hpp"
#include "../objectives/ppo.hpp"
#include "diagnostics.hpp"
#include "reference.hpp"

namespace rlhf::train {

/// The numbers of a run (defaults: verl's where it has one).
struct rl_options {
  long long steps = 100;
  long long prompts_per_step = 8;
  long long group_size = 1;          ///< responses per prompt (GRPO/RLOO need >= 2)
  sampling sample{};
  // PPO
  long long ppo_epochs = 4;
  long long minibatch_size = 0;      ///< responses per minibatch; 0 = the whole batch
  ppo::policy_params ppo = ppo::policy_params::verl();  ///< clip ranges, statistics rules (aggregation: the structure)
  ppo::value_params value = ppo::value_params::verl(0.2);  ///< critic loss (aggregation: the structure)
  double entropy_coef = 0.0;
  double early_stop_kl = INFINITY;   ///< stop the epochs when approx KL > 1.5 x this (SB3 target_kl)
  // A2C
  a2c::params a2c = a2c::params::sb3();
  // KL toward the reference
  double kl_coef = 0.05;
  bool adaptive_kl = false;
  double kl_target = 6.0;            ///< adaptive controller target (verl target_kl)
  double kl_horizon = 10000;
  // advantages
  double gamma = 1.0, lam = 0.95;
  bool whiten_advantages = true;
  adv::grpo_params grpo{};
  // reference updates, diagnostics, logging
  reference_policy ref{};
  diagnostic_params diag{};
  std::string metrics_path;          ///< JSONL; empty = none
  bool progress = true;
  long long progress_every = 10;
  std::string checkpoint_path;       ///< empty = none
  long long checkpoint_every = 0;
  unsigned long long seed = 0;
};

struct dpo_options {
  long long steps = 100;
  long long batch_size = 16;  ///< pairs per step
  dpo::params loss = dpo::params::trl(dpo::loss_type::sigmoid, 0.1);
  reference_policy ref{};
  std::string metrics_path;
  bool progress = true;
  long long progress_every = 10;
  std::string checkpoint_path;
  long long checkpoint_every = 0;
  unsigned long long seed = 0;
};

}  // namespace rlhf::train
