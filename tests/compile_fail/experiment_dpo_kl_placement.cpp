// DPO's KL toward the reference is inside its loss: no placement to choose.
// expect: rlhf::experiment: DPO takes no KL placement
#include <rlhf/config/experiment.hpp>
rlhf::experiment<rlhf::algo::dpo, rlhf::kl::k3, rlhf::kl_in_loss> e;
