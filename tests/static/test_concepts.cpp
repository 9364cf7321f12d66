// Static checks of the concepts (static_assert only): the example models
// satisfy what they claim, and near-misses do not.
#include <rlhf/rlhf.hpp>

#include "../../examples/tabular_models.hpp"

using namespace bandit;

static_assert(rlhf::ReferenceModel<tabular_policy>);
static_assert(rlhf::Policy<tabular_policy>);
static_assert(rlhf::LogitsPolicy<tabular_policy>);
static_assert(!rlhf::EntropyPolicy<tabular_policy>);
static_assert(rlhf::BlendableFrom<tabular_policy, tabular_policy>);
static_assert(rlhf::Checkpointable<tabular_policy>);
static_assert(rlhf::ValueFunction<tabular_value>);
static_assert(rlhf::Checkpointable<tabular_value>);
static_assert(rlhf::RewardModel<table_reward>);
static_assert(!rlhf::TokenRewardModel<table_reward>);
static_assert(!rlhf::Policy<table_reward>);
static_assert(!rlhf::ValueFunction<tabular_policy>);
static_assert(!rlhf::Checkpointable<table_reward>);

struct wrong_return {  // log_probs returns the wrong type
  int log_probs(const rlhf::batch&) { return 0; }
};
static_assert(!rlhf::ReferenceModel<wrong_return>);

int main() { return 0; }
