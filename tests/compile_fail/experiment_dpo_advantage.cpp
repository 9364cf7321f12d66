// DPO has no rewards to turn into advantages.
// expect: rlhf::experiment: DPO takes no advantage estimator
#include <rlhf/config/experiment.hpp>
rlhf::experiment<rlhf::algo::dpo, rlhf::adv::grpo> e;
