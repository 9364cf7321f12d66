// The bandit (examples/bandit.cpp's problem) trained by experiments whose
// backend is rlhf::cuda — rlhf::experiment<..., rlhf::cuda> through
// make_trainer, every [B, T] buffer and op on the device — against the same
// experiments on rlhf::cpu: PPO with RLOO and the KL in the reward, A2C with
// a tabular critic (GAE), DPO. Every step's record, and the final policy,
// must agree (double, different summation order: 1e-9 relative). The
// bandit's policy exposes logits (the device logits kernels run on them).
// Exits 77 (skipped) without a GPU. Needs Boost.Hana (the experiment layer).
#include <rlhf/backend/cuda/train.cuh>  // first: the device ops, then the trainers
#include <rlhf/experiment.hpp>

#include <cmath>
#include <cstdio>
#include <string>

#include "../../examples/tabular_models.hpp"
#include "device_models.hpp"
#include "lockstep.hpp"

namespace {

using namespace bandit;
using device_test::device_model;
namespace tr = rlhf::train;
using device_test::check;
using device_test::same_record;

void same_policy(const tabular_policy& a, const tabular_policy& b, double rel, const std::string& what) {
  double worst = 0;
  for (std::size_t i = 0; i < a.theta.size(); ++i) worst = std::fmax(worst, std::fabs(a.theta[i] - b.theta[i]));
  if (!(worst <= rel)) std::printf("  %s: theta differs by %.3g\n", what.c_str(), worst);
  check(worst <= rel, what + ": the same policy");
}

/// Runs both trainers step by step and compares.
template <class A, class B>
void lockstep(A& cpu, B& gpu, long long steps, const std::string& what) {
  for (long long s = 0; s < steps; ++s)
    same_record(cpu.step(), gpu.step(), 1e-9, what + " step " + std::to_string(s + 1));
}

constexpr double rel = 1e-9;

}  // namespace

int main() {
  if (!rlhf::cuda_available()) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  try {
    const problem pb(2024);
    {  // PPO, k1 KL in the reward, RLOO
      using Ecpu = rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k1, rlhf::kl_in_reward, rlhf::adv::rloo>;
      using Egpu = rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k1, rlhf::kl_in_reward, rlhf::adv::rloo, rlhf::cuda>;
      Ecpu ec;
      Egpu eg;
      for (auto* o : {&ec.options, &eg.options}) {
        o->steps = 40;
        o->prompts_per_step = K;
        o->group_size = 32;
        o->ppo_epochs = 2;
        o->minibatch_size = 64;
        o->kl_coef = pb.beta;
        o->whiten_advantages = false;
        o->progress = false;
        o->seed = 1;
      }
      check(Egpu::name() == Ecpu::name() + "/cuda", "the experiment's name says cuda: " + Egpu::name());
      check(eg.json().find("\"backend\": \"cuda\"") != std::string::npos, "the config record says backend cuda");
      tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
      device_model<tabular_policy> dpi(pb.ref_logits), dref(pb.ref_logits);
      table_reward rm{pb.reward};
      auto tc = rlhf::make_trainer(ec, pi, ref, rm, pb.prompts());
      auto tg = rlhf::make_trainer(eg, dpi, dref, rm, pb.prompts());
      lockstep(tc, tg, ec.options.steps, "ppo");
      same_policy(pi, dpi.m, rel, "ppo");
    }
    {  // A2C with a tabular critic (GAE), k1 KL in the reward
      using Ecpu = rlhf::experiment<rlhf::algo::a2c, rlhf::kl::k1, rlhf::kl_in_reward, rlhf::adv::gae>;
      using Egpu = rlhf::experiment<rlhf::algo::a2c, rlhf::kl::k1, rlhf::kl_in_reward, rlhf::adv::gae, rlhf::cuda>;
      Ecpu ec;
      Egpu eg;
      for (auto* o : {&ec.options, &eg.options}) {
        o->steps = 40;
        o->prompts_per_step = K;
        o->group_size = 64;
        o->kl_coef = pb.beta;
        o->gamma = 1.0;
        o->lam = 1.0;
        o->whiten_advantages = false;
        o->a2c.vf_coef = 0.5;
        o->progress = false;
        o->seed = 2;
      }
      tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
      device_model<tabular_policy> dpi(pb.ref_logits), dref(pb.ref_logits);
      tabular_value critic;
      device_model<tabular_value> dcritic;
      table_reward rm{pb.reward};
      auto tc = rlhf::make_trainer(ec, pi, ref, rm, pb.prompts(), &critic);
      auto tg = rlhf::make_trainer(eg, dpi, dref, rm, pb.prompts(), &dcritic);
      lockstep(tc, tg, ec.options.steps, "a2c");
      same_policy(pi, dpi.m, rel, "a2c");
    }
    {  // DPO
      rlhf::experiment<rlhf::algo::dpo> ec;
      rlhf::experiment<rlhf::algo::dpo, rlhf::cuda> eg;
      for (auto* o : {&ec.options, &eg.options}) {
        o->steps = 30;
        o->batch_size = 256;
        o->loss = rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid, pb.beta);
        o->progress = false;
        o->seed = 4;
      }
      tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
      device_model<tabular_policy> dpi(pb.ref_logits), dref(pb.ref_logits);
      auto tc = rlhf::make_trainer(ec, pi, ref, pb.preferences(5000, 3));
      auto tg = rlhf::make_trainer(eg, dpi, dref, pb.preferences(5000, 3));
      lockstep(tc, tg, ec.options.steps, "dpo");
      same_policy(pi, dpi.m, rel, "dpo");
    }
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    ++device_test::failures;
  }
  return device_test::report();
}
