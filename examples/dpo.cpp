// dpo — Direct Preference Optimization on the tiny language model.
//
// The reference model is fitted to the corpus (as in tiny_lm); preference
// pairs are two of its samples labelled by the hidden preference
// (Bradley-Terry on the true score). DPO trains the policy from the
// reference on the training pairs; the reference log-probabilities are
// computed once and cached by the trainer. Reports preference accuracy on
// held-out pairs (the implicit reward beta log pi/pi_ref ranks the chosen
// response first) and the KL to the reference of the policy's own samples.
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

/// Fraction of pairs whose implicit reward margin ranks the chosen first.
double accuracy(const mlp_lm& policy, const mlp_lm& ref, const std::vector<tr::preference>& pairs) {
  std::vector<index_t> rows(pairs.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<index_t>(i);
  std::vector<double> pc, pr, rc, rr;
  tr::dpo_trainer<mlp_lm, mlp_lm>::sequence_logps(policy, pairs, rows, pc, pr);
  tr::dpo_trainer<mlp_lm, mlp_lm>::sequence_logps(ref, pairs, rows, rc, rr);
  double ok = 0;  // a tie (policy = reference) counts one half
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const double margin = (pc[i] - rc[i]) - (pr[i] - rr[i]);
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
  mlp_lm policy = ref;
  policy.set_lr(1e-3);
  const auto [kl0, truth0] = kl_and_truth(policy, ref, g);
  std::printf("before: held-out accuracy %.3f, true score %.3f, KL to reference %.3f\n",
              accuracy(policy, ref, held_out), truth0, kl0);

  tr::dpo_options o;
  o.steps = steps;
  o.batch_size = 64;
  o.loss = rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid, 0.1);
  o.metrics_path = out + "/dpo.jsonl";
  o.progress_every = std::max(1LL, steps / 10);
  o.seed = 3;
  mlp_lm reference = ref;
  tr::dpo_trainer<mlp_lm, mlp_lm> trainer(policy, reference, train, o);
  trainer.run();

  const double acc = accuracy(policy, ref, held_out);
  const auto [kl, truth] = kl_and_truth(policy, ref, g);
  std::printf("RESULT algo=dpo heldout_accuracy=%.3f true_score=%.3f kl_to_ref=%.3f (before: true_score=%.3f)\n", acc,
              truth, kl, truth0);
  std::printf("metrics: %s\n", o.metrics_path.c_str());
  return 0;
}
