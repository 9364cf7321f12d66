// rlhf++ — the training layer: concepts, trainers, metrics, checkpoints.
#pragma once

#include "../concepts/batch.hpp"
#include "../concepts/model_concepts.hpp"
#include "checkpoint.hpp"
#include "diagnostics.hpp"
#include "dpo_trainer.hpp"
#include "metrics.hpp"
#include "reference.hpp"
#include "rl_trainer.hpp"
