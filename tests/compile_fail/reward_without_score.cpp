// expect: rlhf: a RewardModel needs score(const rlhf::batch&)
#include <rlhf/rlhf.hpp>
struct reward {
  double operator()(const rlhf::batch&) { return 0; }
};
static_assert(rlhf::check_reward_model<reward>());
