// The IS-corrected KL forms correct the gradient of a KL in the loss: in the reward they are refused.
// expect: rlhf::experiment: the IS-corrected KL forms (rlhf::kl::k3_is, k4, k3_on_policy) correct the gradient
#include <rlhf/config/experiment.hpp>
rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k3_is, rlhf::kl_in_reward, rlhf::adv::grpo> e;
