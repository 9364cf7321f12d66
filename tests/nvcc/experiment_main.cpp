// An experiment (the Boost.Hana layer) and its trainer on the bandit, PPO and
// DPO: built by g++ and (experiment_nvcc.cu) by nvcc; ctest compares the two
// outputs. Runs on the CPU backend, no GPU needed.
#include <cstdio>
#include <rlhf/experiment.hpp>

#include "../../examples/tabular_models.hpp"

int main(int argc, char** argv) {
  const bandit::problem pb(1);
  {
    bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
    bandit::table_reward rm{pb.reward};
    rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k1, rlhf::kl_in_reward, rlhf::adv::rloo, rlhf::fp32> e;
    e.options.steps = 100;
    e.options.prompts_per_step = bandit::K;
    e.options.group_size = 16;
    e.options.kl_coef = pb.beta;
    e.options.progress = false;
    rlhf::config::command_line(argc, argv).apply(e);
    std::printf("%s\n", e.json().c_str());
    auto t = rlhf::make_trainer(e, pi, ref, rm, pb.prompts());
    t.run();
    const auto ev = bandit::evaluate(pi, ref, pb);
    std::printf("%s\nppo kl_to_optimum=%.17g reward=%.17g\n", t.last().json().c_str(), ev.kl_to_optimum, ev.reward);
  }
  {
    bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
    rlhf::experiment<rlhf::algo::dpo> e;
    e.options.steps = 50;
    e.options.batch_size = 32;
    e.options.progress = false;
    auto t = rlhf::make_trainer(e, pi, ref, pb.preferences(500, 3));
    t.run();
    const auto ev = bandit::evaluate(pi, ref, pb);
    std::printf("%s\ndpo kl_to_optimum=%.17g reward=%.17g\n", t.last().json().c_str(), ev.kl_to_optimum, ev.reward);
  }
  return 0;
}
