// sweep — one bandit task, twenty experiment types, one table.
//
// The bandit of examples/bandit.cpp (known KL-regularized optimum pi*) is
// trained by PPO and A2C with each KL estimator (k1, k2, k3) in each place
// (the reward or the loss), with the IS-corrected forms in the loss (k3 *
// pi / pi_old, k4 = pi / pi_old * k1, PPO also k3 on-policy:
// exp(logp - sg(logp)) k3), and by DPO (whose KL is inside its loss; the
// estimator only selects the logged kl_ref). Each experiment is a type; the
// sweep is rlhf::sweep<...> (hana::for_each over the types). The table shows
// which placements optimize E[r] - beta KL(pi || pi_ref): k1 in the reward,
// k2 in the loss and the IS-corrected forms in the loss (KL to the optimum
// ~ 0). k1 in the loss has a zero expected gradient (no regularization: the
// policy runs to the reward maximum) and k3 in the loss without its ratio
// follows the gradient of KL(pi_ref || pi).
//
// Usage: sweep [--steps-scale S] [--jsonl FILE] [--config FILE] [--key=value ...]
//   --steps-scale  multiplies every experiment's step count (default 1)
//   --jsonl FILE   one JSON line per experiment: its resolved configuration
//                  and final metrics (final.reward, final.kl_to_ref, final.kl_to_optimum)
//   --key=value    overrides an option of every experiment that has it,
//                  e.g. --kl_coef=0.3 --ppo.clip_low=0.1 --loss.beta=0.3
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <rlhf/config/experiment.hpp>
#include <rlhf/rlhf.hpp>
#include <string>

#include "tabular_models.hpp"

namespace {

using rlhf::experiment;
namespace algo = rlhf::algo;
namespace kl = rlhf::kl;
namespace adv = rlhf::adv;

// PPO without a critic (RLOO baseline over 32 samples per prompt), A2C with
// a tabular critic (GAE with gamma = lam = 1 on one-token responses).
template <auto KL, auto Where>
using ppo = experiment<algo::ppo, KL, Where, adv::rloo>;
template <auto KL, auto Where>
using a2c = experiment<algo::a2c, KL, Where, adv::gae>;
template <auto KL>
using dpo = experiment<algo::dpo, KL>;

// Each experiment's own settings (the bandit example's); the command line
// may override any of them afterwards.
template <class E>
void defaults(E& e, const bandit::problem& pb, double scale) {
  auto steps = [&](long long n) {
    return std::max(1LL, static_cast<long long>(std::llround(static_cast<double>(n) * scale)));
  };
  auto& o = e.options;
  o.progress = false;
  if constexpr (E::algo == rlhf::algorithm::dpo) {
    o.steps = steps(1500);
    o.batch_size = 256;
    o.loss = rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid, pb.beta);
    o.seed = 4;
  } else {
    o.prompts_per_step = bandit::K;
    o.kl_coef = pb.beta;
    o.whiten_advantages = false;
    if constexpr (E::algo == rlhf::algorithm::ppo) {
      o.steps = steps(400);
      o.group_size = 32;
      o.ppo_epochs = 2;
      o.minibatch_size = 64;
      o.seed = 1;
    } else {
      o.steps = steps(600);
      o.group_size = 64;
      o.gamma = 1.0;
      o.lam = 1.0;
      o.a2c.vf_coef = 0.5;
      o.seed = 2;
    }
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const rlhf::config::command_line cl(argc, argv, {"--steps-scale", "--jsonl"});
  const double scale = cl.has("--steps-scale") ? std::stod(*cl.value("--steps-scale")) : 1.0;
  const bandit::problem pb(2024);

  namespace hana = boost::hana;
  constexpr auto all =
      hana::tuple_t<ppo<kl::k1, rlhf::kl_in_reward>, ppo<kl::k2, rlhf::kl_in_reward>, ppo<kl::k3, rlhf::kl_in_reward>,
                    ppo<kl::k1, rlhf::kl_in_loss>, ppo<kl::k2, rlhf::kl_in_loss>, ppo<kl::k3, rlhf::kl_in_loss>,
                    ppo<kl::k3_is, rlhf::kl_in_loss>, ppo<kl::k4, rlhf::kl_in_loss>,
                    ppo<kl::k3_on_policy, rlhf::kl_in_loss>, a2c<kl::k1, rlhf::kl_in_reward>,
                    a2c<kl::k2, rlhf::kl_in_reward>, a2c<kl::k3, rlhf::kl_in_reward>, a2c<kl::k1, rlhf::kl_in_loss>,
                    a2c<kl::k2, rlhf::kl_in_loss>, a2c<kl::k3, rlhf::kl_in_loss>, a2c<kl::k3_is, rlhf::kl_in_loss>,
                    a2c<kl::k4, rlhf::kl_in_loss>, dpo<kl::k1>, dpo<kl::k2>, dpo<kl::k3>>;

  // Every --key=value must be an option of at least one experiment.
  hana::unpack(all, [&](auto... t) { cl.require_known<typename decltype(t)::type...>(); });

  const auto rows = rlhf::sweep(all, [&](auto& e) {
    using E = std::remove_cvref_t<decltype(e)>;
    std::fprintf(stderr, "-- %s\n", E::name().c_str());  // the trainers' warnings follow
    defaults(e, pb, scale);
    cl.apply(e, /*lenient=*/true);  // keys of the other algorithms are skipped
    bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
    const long long half = e.options.steps / 2;
    auto anneal = [&](long long s) {
      if (s == half) pi.lr = 0.01;
    };
    if constexpr (E::algo == rlhf::algorithm::dpo) {
      auto t = rlhf::make_trainer(e, pi, ref, pb.preferences(100000, 3));
      t.run(anneal);
    } else if constexpr (E::needs_value) {
      bandit::table_reward rm{pb.reward};
      bandit::tabular_value critic;
      auto t = rlhf::make_trainer(e, pi, ref, rm, pb.prompts(), &critic);
      t.run(anneal);
    } else {
      bandit::table_reward rm{pb.reward};
      auto t = rlhf::make_trainer(e, pi, ref, rm, pb.prompts());
      t.run(anneal);
    }
    const auto ev = bandit::evaluate(pi, ref, pb);
    rlhf::train::record r;
    r.set("reward", ev.reward).set("kl_to_ref", ev.kl_to_ref).set("kl_to_optimum", ev.kl_to_optimum);
    return r;
  });

  std::printf("bandit: %d prompts, %d responses, beta = %.2f; optimum reward %.5f\n", static_cast<int>(bandit::K),
              static_cast<int>(bandit::M), pb.beta, [&] {
                bandit::tabular_policy ref(pb.ref_logits), opt(pb.ref_logits);
                for (rlhf::index_t x = 0; x < bandit::K; ++x) {
                  const auto p = pb.optimum(x);
                  for (rlhf::index_t k = 0; k < bandit::M; ++k) opt.theta[x * bandit::M + k] = std::log(p[k]);
                }
                return bandit::evaluate(opt, ref, pb).reward;
              }());
  rlhf::print_table(std::cout, rows, {"reward", "kl_to_ref", "kl_to_optimum"});
  if (auto path = cl.value("--jsonl")) {
    std::ofstream out(*path);
    if (!out) throw rlhf::error(rlhf::error_kind::param, "jsonl", "sweep: cannot open '" + *path + "' for writing");
    for (const auto& r : rows) out << r.json() << '\n';
    std::printf("wrote %zu lines to %s\n", rows.size(), path->c_str());
  }
  return 0;
} catch (const rlhf::error& e) {
  std::fprintf(stderr, "sweep: %s\n", e.what());
  return 2;
}
