// bandit — a contextual bandit where the KL-regularized optimum is known.
//
// K prompts (contexts), M one-token responses, a tabular softmax policy
// pi(y|x) = softmax(theta[x])[y], a random reference policy pi_ref and a known
// reward table r(x, y). The optimum of E[r] - beta KL(pi || pi_ref) is
//     pi*(y|x) = pi_ref(y|x) exp(r(x,y) / beta) / Z(x).
// PPO (KL in the reward), A2C and DPO (pairs labelled by Bradley-Terry on
// r) each train from pi_ref and report how close they get:
//   RESULT algo=<name> kl_to_optimum=<mean_x KL(pi || pi*)> reward=<...> kl_to_ref=<...>
// Usage: bandit [--steps-scale S] [--metrics-dir DIR]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <rlhf/rlhf.hpp>
#include <string>
#include <vector>

#include "tabular_models.hpp"

using namespace bandit;

namespace {

void report(const char* algo, const tabular_policy& pi, const tabular_policy& ref, const problem& pb) {
  const auto e = evaluate(pi, ref, pb);
  std::printf("RESULT algo=%s kl_to_optimum=%.5f reward=%.5f kl_to_ref=%.5f\n", algo, e.kl_to_optimum, e.reward,
              e.kl_to_ref);
}

}  // namespace

int main(int argc, char** argv) {
  double scale = 1.0;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--steps-scale") && i + 1 < argc)
      scale = std::stod(argv[++i]);
    else if (!std::strcmp(argv[i], "--metrics-dir") && i + 1 < argc)
      dir = argv[++i];
  }
  const problem pb(2024);
  auto steps = [&](long long n) {
    return std::max(1LL, static_cast<long long>(std::llround(static_cast<double>(n) * scale)));
  };
  auto path = [&](const char* name) { return dir.empty() ? std::string() : dir + "/bandit_" + name + ".jsonl"; };

  // PPO, k1 KL in the reward (the InstructGPT placement), RLOO baseline.
  {
    tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
    table_reward rm{pb.reward};
    rlhf::train::rl_options o;
    o.steps = steps(400);
    o.prompts_per_step = K;
    o.group_size = 32;
    o.ppo_epochs = 2;
    o.minibatch_size = 64;
    o.kl_coef = pb.beta;
    o.whiten_advantages = false;
    o.metrics_path = path("ppo");
    o.progress = false;
    o.seed = 1;
    using S = rlhf::train::rl_structure<rlhf::train::algorithm::ppo, rlhf::kl_estimator::k1,
                                        rlhf::train::kl_placement::reward, rlhf::train::advantage_estimator::rloo>;
    rlhf::train::rl_trainer<S, tabular_policy, tabular_policy, table_reward> t(pi, ref, rm, pb.prompts(), o);
    t.run([&](long long s) {
      if (s == o.steps / 2) pi.lr = 0.01;  // anneal
    });
    report("ppo", pi, ref, pb);
  }
  // A2C with a tabular critic, k1 KL in the reward.
  {
    tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
    table_reward rm{pb.reward};
    tabular_value critic;
    rlhf::train::rl_options o;
    o.steps = steps(600);
    o.prompts_per_step = K;
    o.group_size = 64;
    o.kl_coef = pb.beta;
    o.gamma = 1.0;
    o.lam = 1.0;
    o.whiten_advantages = false;
    o.a2c.vf_coef = 0.5;
    o.metrics_path = path("a2c");
    o.progress = false;
    o.seed = 2;
    using S = rlhf::train::rl_structure<rlhf::train::algorithm::a2c, rlhf::kl_estimator::k1,
                                        rlhf::train::kl_placement::reward, rlhf::train::advantage_estimator::gae>;
    rlhf::train::rl_trainer<S, tabular_policy, tabular_policy, table_reward, tabular_value> t(pi, ref, rm, pb.prompts(),
                                                                                              o, &critic);
    t.run([&](long long s) {
      if (s == o.steps / 2) pi.lr = 0.01;  // anneal
    });
    report("a2c", pi, ref, pb);
  }
  // DPO on pairs labelled by Bradley-Terry on r: P(a > b) = sigmoid(r_a - r_b).
  {
    tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
    auto data = pb.preferences(100000, 3);
    rlhf::train::dpo_options o;
    o.steps = steps(1500);
    o.batch_size = 256;
    o.loss = rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid, pb.beta);
    o.metrics_path = path("dpo");
    o.progress = false;
    o.seed = 4;
    rlhf::train::dpo_trainer<tabular_policy, tabular_policy> t(pi, ref, std::move(data), o);
    t.run([&](long long s) {
      if (s == o.steps / 2) pi.lr = 0.01;  // anneal
    });
    report("dpo", pi, ref, pb);
  }
  return 0;
}
