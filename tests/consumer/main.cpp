// A downstream project: computes a PPO loss and checks one hand-computed value.
#include <cmath>
#include <cstdio>
#include <rlhf/rlhf.hpp>

int main() {
  double logp[2] = {std::log(1.1), std::log(2.0)}, old[2] = {0, 0}, adv[2] = {2.0, 1.0}, mask[2] = {1, 1};
  auto v = [](double* p) { return rlhf::view(p, {1, 2}); };
  const auto r = rlhf::ppo::policy_loss(rlhf::cpu, v(logp), v(old), v(adv), v(mask), rlhf::ppo::policy_params::verl());
  // token 1: ratio 1.1 inside the clip -> -2.2; token 2: ratio 2 clipped at 1.2 -> -1.2
  const double want = (-2.2 - 1.2) / 2;
  std::printf("consumer: loss %.12f (want %.12f)\n", r.loss, want);
  return std::fabs(r.loss - want) < 1e-12 ? 0 : 1;
}
