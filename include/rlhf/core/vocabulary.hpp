// rlhf++ — the vocabulary of a run's structure: the enums every layer
// names (aggregation modes, KL estimators, algorithms, KL placements,
// advantage estimators) and their names. Below math/ and ops/, so the
// formulas, the ops, the estimators and the configuration all use one
// definition and no include runs back up (core/choices.hpp adds the tag
// objects of each).
#pragma once

#include "named_enum.hpp"

namespace rlhf {

RLHF_NAMED_ENUM(kl_estimator, (k1, "k1"), (abs, "abs"), (k2, "k2"), (k3, "k3"));
/// How a KL in the loss is corrected for samples of an older policy: none;
/// times the importance ratio pi / pi_old kept in the graph (k3 * ratio,
/// k4 = ratio * k1); or the on-policy approximation, ratio exp(logp -
/// sg(logp)) = 1 with its gradient (kl/is.hpp).
RLHF_NAMED_ENUM(kl_correction, (none, "none"), (ratio, "ratio"), (on_policy, "on-policy"));

RLHF_NAMED_ENUM(agg_mode, (token_mean, "token-mean"), (token_sum, "token-sum"),
                (seq_mean_token_sum, "seq-mean-token-sum"), (seq_mean_token_mean, "seq-mean-token-mean"),
                (seq_mean_token_sum_norm, "seq-mean-token-sum-norm"));

RLHF_NAMED_ENUM(algorithm, (ppo, "ppo"), (a2c, "a2c"), (dpo, "dpo"));
RLHF_NAMED_ENUM(kl_placement, (reward, "reward"), (loss, "loss"));
RLHF_NAMED_ENUM(advantage_estimator, (gae, "gae"), (grpo, "grpo"), (rloo, "rloo"), (reinforce_pp, "reinforce_pp"),
                (maxrl, "maxrl"), (loo_grpo, "loo_grpo"), (gdpo, "gdpo"));

}  // namespace rlhf
