// An experiment with GAE advantages needs a critic: make_trainer without one
// is rejected with the sentence, not deep inside the trainer.
// expect: rlhf: GAE advantages and A2C need a ValueFunction
#include <rlhf/config/experiment.hpp>
#include "../../examples/tabular_models.hpp"
int main() {
  const bandit::problem pb(1);
  bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
  bandit::table_reward rm{pb.reward};
  rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k1, rlhf::kl_in_reward, rlhf::adv::gae> e;
  auto t = rlhf::make_trainer(e, pi, ref, rm, pb.prompts());  // no &critic
  t.run();
}
