// rlhf++ — the training layer: concepts, trainers, metrics, checkpoints.
#pragma once

#include "../concepts/batch.hpp"
#include "../concepts/model_concepts.hpp"
#include "checkpoint.hpp"
#include "diagnostics.hpp"
#include "dpo_trainer.hpp"
#include "kl_advantages.hpp"
#include "metrics.hpp"
#include "model_calls.hpp"
#include "options.hpp"
#include "reference.hpp"
#include "distill_trainer.hpp"
#include "reward_trainer.hpp"
#include "rl_trainer.hpp"
#include "rollout.hpp"
#include "structure.hpp"
#include "update.hpp"
