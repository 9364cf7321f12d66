// A downstream project that uses the experiment layer (rlhf::experiment).
#include <cstdio>
#include <rlhf/experiment.hpp>

int main() {
  rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k3, rlhf::kl_in_loss, rlhf::adv::grpo, rlhf::fp32> e;
  e.options.ppo.clip_low = 0.1;
  const auto back = decltype(e)::from_json(e.json());
  std::printf("consumer_experiment: %s\n", decltype(e)::name().c_str());
  return back == e && decltype(e)::name() == "ppo/k3/loss/grpo/token-mean/fp32" ? 0 : 1;
}
