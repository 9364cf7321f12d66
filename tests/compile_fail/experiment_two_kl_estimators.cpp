// One choice per category.
// expect: rlhf::experiment: two KL estimators given, one per category is allowed
#include <rlhf/config/experiment.hpp>
rlhf::experiment<rlhf::kl::k1, rlhf::algo::ppo, rlhf::kl::k3> e;
