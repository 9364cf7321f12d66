// DPO learns from preference pairs; given a reward model and prompts it is refused.
// expect: rlhf: a DPO experiment learns from preference pairs, not from a reward model
#include <rlhf/config/experiment.hpp>
#include "../../examples/tabular_models.hpp"
int main() {
  const bandit::problem pb(1);
  bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
  bandit::table_reward rm{pb.reward};
  rlhf::experiment<rlhf::algo::dpo, rlhf::kl::k1> e;
  auto t = rlhf::make_trainer(e, pi, ref, rm, pb.prompts());
  t.run();
}
