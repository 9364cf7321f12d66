// quickstart — one PPO-RLHF update's worth of algorithm, on made-up numbers.
//
// A policy sampled B responses of T tokens. We have, per token, the
// log-probability under the policy that sampled (old_logp), under the frozen
// reference model (ref_logp), the critic's values, and one reward-model score
// per response on its last token. The steps are InstructGPT's:
//   1. KL penalty toward the reference in the reward (k1, beta from an
//      adaptive controller)
//   2. GAE advantages and returns, whitened
//   3. the clipped policy loss and the clipped value loss, with gradients
//   4. the controller update
// The model side (forward, backward, optimizer) is yours; here the "new"
// log-probs are the old ones nudged, as after one optimizer step.
#include <cmath>
#include <cstdio>
#include <random>
#include <rlhf/rlhf.hpp>

int main() {
  const rlhf::index_t B = 4, T = 8;
  std::mt19937 gen(7);
  std::normal_distribution<double> n01(0.0, 1.0);
  rlhf::tensor<double, 2> old_logp({B, T}), ref_logp({B, T}), logp({B, T}), values({B, T}), scores({B, T}),
      mask({B, T});
  for (rlhf::index_t b = 0; b < B; ++b) {
    const rlhf::index_t len = T - b;  // responses of different lengths
    for (rlhf::index_t t = 0; t < T; ++t) {
      old_logp(b, t) = -1.0 + 0.3 * n01(gen);
      ref_logp(b, t) = old_logp(b, t) - 0.05 + 0.1 * n01(gen);  // the policy drifted a little from the reference
      logp(b, t) = old_logp(b, t) + 0.05 * n01(gen);
      values(b, t) = 0.1 * n01(gen);
      mask(b, t) = t < len ? 1.0 : 0.0;
    }
    scores(b, len - 1) = b % 2 ? 1.0 : -0.5;  // reward-model score on the last token
  }
  using rlhf::cpu;

  // 1. KL toward the reference, in the reward.
  rlhf::kl::adaptive_controller beta(0.05, 0.02, 10000);
  rlhf::tensor<double, 2> rewards({B, T});
  const auto kl =
      rlhf::kl::apply_in_reward(cpu, scores.view(), old_logp.view(), ref_logp.view(), mask.view(), beta.value(),
                                rlhf::kl_params::verl(rlhf::kl_estimator::k1), rewards.view());

  // 2. Advantages and returns.
  auto adv = rlhf::adv::gae(cpu, rewards.view(), values.view(), mask.view(), rlhf::adv::gae_params{1.0, 0.95});

  // 3. Losses and their gradients for the model's backward pass.
  rlhf::tensor<double, 2> dlogp({B, T}), dvalues({B, T}), new_values({B, T});
  for (rlhf::index_t i = 0; i < B * T; ++i) new_values.data()[i] = values.data()[i] + 0.01;
  const auto pg = rlhf::ppo::policy_loss(cpu, logp.view(), old_logp.view(), adv.advantages.view(), mask.view(),
                                         rlhf::ppo::policy_params::verl(), dlogp.view());
  const auto vf = rlhf::ppo::value_loss(cpu, new_values.view(), adv.returns.view(), values.view(), mask.view(),
                                        rlhf::ppo::value_params::verl(0.2), dvalues.view());

  // 4. Controller.
  beta.update(kl.mean_seq_kl, static_cast<double>(B));

  std::printf("KL to reference (mean per sequence): %.5f, beta -> %.6f\n", kl.mean_seq_kl, beta.value());
  std::printf("policy loss %.5f  clipfrac %.3f  ppo_kl %.5f\n", pg.loss, pg.clipfrac, pg.ppo_kl);
  std::printf("value loss  %.5f  clipfrac %.3f\n", vf.loss, vf.clipfrac);
  double gnorm = 0;
  for (auto g : dlogp.storage()) gnorm += g * g;
  std::printf("|dL/dlogp| = %.5f (hand this to your model's backward)\n", std::sqrt(gnorm));
  return std::isfinite(pg.loss) && std::isfinite(vf.loss) && gnorm > 0 ? 0 : 1;
}
