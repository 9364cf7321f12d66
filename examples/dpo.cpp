// dpo — Direct Preference Optimization, and the peers' other preference
// losses, on the tiny language model.
//
// The reference model is fitted to the corpus (as in tiny_lm); preference
// pairs are two of its samples labelled by the hidden preference
// (Bradley-Terry on the true score). DPO, KTO (the pairs unpaired), SimPO
// and ORPO each train a policy from the reference on the same training pairs
// (the reference log-probabilities are computed once and cached by the
// trainer). Reports, per loss, preference accuracy on held-out pairs (by the
// loss's own implicit reward: beta log pi/pi_ref for DPO and KTO, the
// length-averaged log-prob for the reference-free SimPO and ORPO), the true
// score of the policy's own samples, and their KL to the reference: DPO and
// KTO keep the policy near the reference through the log ratio in their loss;
// SimPO and ORPO have no reference term and drift further.
// Usage: dpo [--steps N] [--out DIR] [--quick]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tiny_lm_model.hpp"

using namespace tiny;
namespace tr = rlhf::train;

namespace {

std::vector<tr::preference> make_pairs(const mlp_lm& ref, index_t n, rlhf::rng_t& g) {
  rlhf::prompt_batch x;
  x.tokens = tensor<token_t, 2>({n, 1}, BOS);
  x.lengths.assign(static_cast<std::size_t>(n), 1);
  const auto a = ref.generate(x, {1.0, 10}, g).seqs, b = ref.generate(x, {1.0, 10}, g).seqs;
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<tr::preference> out;
  for (index_t i = 0; i < n; ++i) {
    auto ya = response(a, i), yb = response(b, i);
    if (true_score(ya) == true_score(yb)) continue;  // only informative pairs
    const double pa = 1 / (1 + std::exp(-5.0 * (true_score(ya) - true_score(yb))));
    if (u(g) < pa)
      out.push_back({{BOS}, ya, yb});
    else
      out.push_back({{BOS}, yb, ya});
  }
  return out;
}

/// Fraction of pairs whose implicit reward margin ranks the chosen first:
/// the log ratio to the reference (DPO, KTO), or with `reference_free` the
/// length-averaged log-prob (SimPO, ORPO: their rewards and log odds rise with it).
double accuracy(const mlp_lm& policy, const mlp_lm& ref, const std::vector<tr::preference>& pairs,
                bool reference_free = false) {
  std::vector<index_t> rows(pairs.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<index_t>(i);
  std::vector<double> pc, pr, rc, rr;
  tr::dpo_trainer<mlp_lm, mlp_lm>::sequence_logps(policy, pairs, rows, pc, pr);
  tr::dpo_trainer<mlp_lm, mlp_lm>::sequence_logps(ref, pairs, rows, rc, rr);
  double ok = 0;  // a tie (policy = reference) counts one half
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const double margin = reference_free ? pc[i] / static_cast<double>(pairs[i].chosen.size()) -
                                               pr[i] / static_cast<double>(pairs[i].rejected.size())
                                         : (pc[i] - rc[i]) - (pr[i] - rr[i]);
    ok += margin > 0 ? 1.0 : (margin == 0 ? 0.5 : 0.0);
  }
  return ok / static_cast<double>(pairs.size());
}

/// Mean over the policy's own samples of sum_t log pi - log pi_ref, and their true score.
std::pair<double, double> kl_and_truth(const mlp_lm& policy, const mlp_lm& ref, rlhf::rng_t& g) {
  rlhf::prompt_batch x;
  const index_t n = 512;
  x.tokens = tensor<token_t, 2>({n, 1}, BOS);
  x.lengths.assign(static_cast<std::size_t>(n), 1);
  const auto b = policy.generate(x, {1.0, 10}, g).seqs;
  const auto lp = policy.log_probs(b), lr = ref.log_probs(b);
  double kl = 0, truth = 0;
  for (index_t i = 0; i < n; ++i) {
    for (index_t t = 0; t < b.length(); ++t)
      kl += b.response_mask(i, t) * (lp(i, t) - lr(i, t)) / static_cast<double>(n);
    truth += true_score(response(b, i)) / static_cast<double>(n);
  }
  return {kl, truth};
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = parse_example_args(argc, argv, example_args{300, 3000, 6000, "dpo_out", 400});
  const long long steps = args.steps, fit_steps = args.fit_steps;
  const index_t pairs = args.pairs;
  const std::string out = args.out;
  rlhf::rng_t g(11);
  std::printf("== fitting the reference language model\n");
  mlp_lm ref(1, 3e-3);
  std::mt19937_64 corpus(7);
  fit_to_corpus(ref, fit_steps, 64, corpus, false);

  auto train = make_pairs(ref, pairs, g), held_out = make_pairs(ref, pairs / 4, g);
  std::printf("== %zu training pairs, %zu held-out pairs (labelled by the hidden preference)\n", train.size(),
              held_out.size());
  rlhf::rng_t g0(29);
  const auto [kl0, truth0] = kl_and_truth(ref, ref, g0);
  std::printf("before: held-out accuracy %.3f, true score %.3f, KL to reference %.3f\n", accuracy(ref, ref, held_out),
              truth0, kl0);

  // one policy per loss, each from the reference, on the same pairs
  struct variant {
    const char* name;
    tr::preference_objective objective;
    bool reference_free;
  };
  const variant variants[] = {{"dpo", tr::preference_objective::dpo, false},
                              {"kto", tr::preference_objective::kto, false},
                              {"simpo", tr::preference_objective::cpo, true},
                              {"orpo", tr::preference_objective::orpo, true}};
  for (const auto& v : variants) {
    mlp_lm pol = ref;
    pol.set_lr(1e-3);
    tr::dpo_options o;
    o.steps = steps;
    o.batch_size = 64;
    o.objective = v.objective;
    o.loss = rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid, 0.1);
    o.kto.beta = 0.1;
    o.cpo = rlhf::pref::cpo_params::simpo(2.0, 0.5);  // SimPO's defaults (Meng et al. 2024)
    o.cpo_alpha = 0.0;                                // pure SimPO: no NLL term
    o.orpo_beta = 0.1;
    o.metrics_path = out + "/" + v.name + ".jsonl";
    o.progress_every = std::max(1LL, steps / 10);
    o.seed = 3;
    mlp_lm reference = ref;
    std::printf("== %s\n", v.name);
    tr::dpo_trainer<mlp_lm, mlp_lm> trainer(pol, reference, train, o);
    trainer.run();
    const double acc = accuracy(pol, ref, held_out, v.reference_free);
    rlhf::rng_t ge(29);  // the same samples' seed for every loss
    const auto [kl, truth] = kl_and_truth(pol, ref, ge);
    std::printf("RESULT algo=%s heldout_accuracy=%.3f true_score=%.3f kl_to_ref=%.3f (before: true_score=%.3f)\n",
                v.name, acc, truth, kl, truth0);
    std::printf("metrics: %s\n", o.metrics_path.c_str());
  }
  return 0;
}
