// GAE needs a critic; the trainer says so instead of failing deep inside.
// expect: rlhf: GAE advantages and A2C need a ValueFunction
#include <rlhf/rlhf.hpp>
#include "../../examples/tabular_models.hpp"
using S = rlhf::train::rl_structure<rlhf::train::algorithm::ppo, rlhf::kl_estimator::k1,
                                    rlhf::train::kl_placement::reward, rlhf::train::advantage_estimator::gae>;
template class rlhf::train::rl_trainer<S, bandit::tabular_policy, bandit::tabular_policy, bandit::table_reward>;
