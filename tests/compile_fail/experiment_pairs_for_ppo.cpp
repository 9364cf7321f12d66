// Preference pairs are DPO's data; a PPO experiment needs a reward model.
// expect: rlhf::make_trainer: preference pairs are DPO's data
#include <rlhf/config/experiment.hpp>
#include "../../examples/tabular_models.hpp"
int main() {
  const bandit::problem pb(1);
  bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
  rlhf::experiment<rlhf::algo::ppo, rlhf::adv::rloo> e;
  auto t = rlhf::make_trainer(e, pi, ref, pb.preferences(8, 1));
}
