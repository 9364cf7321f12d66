// rlhf++ — the whole CPU library. Include this and call, e.g.
//   auto r = rlhf::ppo::policy_loss(rlhf::cpu, logp, old_logp, adv, mask, params, dlogp);
// Adaptors for Eigen and xtensor are separate (rlhf/adapt/*.hpp) so the core
// needs no third-party header.
#pragma once

#include "core/args.hpp"
#include "core/backend.hpp"
#include "core/check.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/numerics.hpp"
#include "core/tensor_view.hpp"
#include "core/viewable.hpp"

#include "math/clamp.hpp"
#include "math/dpo.hpp"
#include "math/kl.hpp"
#include "math/policy.hpp"
#include "math/ppo.hpp"

#include "ops/aggregate.hpp"
#include "ops/fused_logits.hpp"
#include "ops/logits.hpp"
#include "ops/masked.hpp"

#include "kl/controller.hpp"
#include "kl/estimators.hpp"
#include "kl/full.hpp"
#include "kl/is.hpp"
#include "kl/penalty.hpp"

#include "advantage/gae.hpp"
#include "advantage/gpg.hpp"
#include "advantage/grpo.hpp"
#include "advantage/group_variants.hpp"
#include "advantage/opo.hpp"
#include "advantage/ranks.hpp"
#include "advantage/reinforce.hpp"
#include "advantage/rloo.hpp"

#include "objectives/a2c.hpp"
#include "objectives/distill.hpp"
#include "objectives/dpo.hpp"
#include "objectives/fused.hpp"
#include "objectives/is_correction.hpp"
#include "objectives/policy_variants.hpp"
#include "objectives/ppo.hpp"
#include "objectives/preference.hpp"
#include "objectives/reward.hpp"
#include "objectives/rollout_correction.hpp"
#include "train/train.hpp"
