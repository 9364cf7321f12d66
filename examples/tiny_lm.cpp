// tiny_lm — RLHF on a real (tiny) language model, with and without the KL
// penalty toward the reference model.
//
// 1. A small autoregressive LM (tiny_lm_model.hpp) is fitted to a synthetic
//    corpus of grammatical sentences: it becomes the reference (SFT) model.
// 2. A bag-of-words reward model is trained (rlhf::train::reward_trainer,
//    Bradley-Terry) on preference pairs labelled by a
//    hidden "true" preference (grammatical sentences with a positive word).
//    Bag-of-words mostly learns "positive word present".
// 3. PPO (RLOO baseline) against the learned reward model, twice: with the
//    KL penalty in the reward (beta = 1) and without it. Without it the
//    policy games the reward model — strings of positive words: reward-model
//    score up, true score and likelihood under the reference down. With it
//    the text stays grammatical and becomes positive.
// Writes OUT/ppo_kl.jsonl, OUT/ppo_nokl.jsonl (metrics), OUT/*.tsv and
// OUT/tiny_lm.png (gnuplot, when installed).
// Usage: tiny_lm [--steps N] [--out DIR] [--quick]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tiny_lm_model.hpp"

using namespace tiny;
namespace tr = rlhf::train;

namespace {

/// Linear bag-of-words reward model: r(y) = bias + sum_t w[y_t], a
/// TrainableRewardModel (score, backward, step: gradient descent with a
/// small L2 penalty) for rlhf::train::reward_trainer.
struct bow_reward {
  std::vector<double> w = std::vector<double>(mlp_lm::V, 0.0), g = w;
  double bias = 0, lr = 2.0, l2 = 1e-3;
  double score_one(const std::vector<token_t>& s) const {
    double r = bias;
    for (auto t : s) r += w[static_cast<std::size_t>(t)];
    return r;
  }
  std::vector<double> score(const rlhf::batch& b) const {
    std::vector<double> s;
    for (index_t i = 0; i < b.size(); ++i) s.push_back(score_one(response(b, i)));
    return s;
  }
  /// d score_i / d w[t] = the count of t in response i (the bias cancels in a pair)
  void backward(const rlhf::batch& b, rlhf::tensor_view<const double, 1> d) {
    for (index_t i = 0; i < b.size(); ++i)
      for (auto t : response(b, i)) g[static_cast<std::size_t>(t)] += d(i);
  }
  void step() {
    for (std::size_t k = 0; k < w.size(); ++k) {
      w[k] -= lr * (g[k] + l2 * w[k]);
      g[k] = 0;
    }
  }
};

/// The reward model as the trainer sees it; it also records, for the batch
/// it scores, the true preference and the fluency under the reference model.
struct scored_reward {
  const bow_reward* rm;
  const mlp_lm* reference;
  double last_true = 0, last_fluency = 0, last_grammatical = 0;
  std::vector<double> score(const rlhf::batch& b) {
    std::vector<double> s;
    double truth = 0, gram = 0;
    for (index_t i = 0; i < b.size(); ++i) {
      const auto y = response(b, i);
      s.push_back(rm->score_one(y));
      truth += true_score(y) / static_cast<double>(b.size());
      gram += (grammatical(y) ? 1.0 : 0.0) / static_cast<double>(b.size());
    }
    const auto lp = reference->log_probs(b);
    double ll = 0, n = 0;
    for (index_t i = 0; i < lp.size(); ++i) {
      ll += b.response_mask.data()[i] * lp.data()[i];
      n += b.response_mask.data()[i];
    }
    last_true = truth;
    last_grammatical = gram;
    last_fluency = ll / n;
    return s;
  }
};

rlhf::batch sample(const mlp_lm& m, index_t n, rlhf::rng_t& g, index_t max_tokens) {
  rlhf::prompt_batch x;
  x.tokens = tensor<token_t, 2>({n, 1}, BOS);
  x.lengths.assign(static_cast<std::size_t>(n), 1);
  return m.generate(x, rlhf::sampling{1.0, max_tokens}, g).seqs;
}

void show_samples(const char* title, const mlp_lm& m, rlhf::rng_t& g, const bow_reward& rm) {
  std::printf("%s\n", title);
  const auto b = sample(m, 5, g, 10);
  for (index_t i = 0; i < b.size(); ++i) {
    const auto y = response(b, i);
    std::printf("    [rm %+6.2f | true %.1f] %s\n", rm.score_one(y), true_score(y), text(y).c_str());
  }
}

/// Bradley-Terry fit of the bag-of-words model on pairs of reference samples
/// labelled by the hidden preference: rlhf::train::reward_trainer, full
/// batch (every pair each step), 200 steps.
bow_reward train_reward_model(const mlp_lm& ref, rlhf::rng_t& g, index_t pairs) {
  std::vector<tr::preference> data;
  std::uniform_real_distribution<double> u(0, 1);
  const auto b1 = sample(ref, pairs, g, 10), b2 = sample(ref, pairs, g, 10);
  for (index_t i = 0; i < pairs; ++i) {
    auto y1 = response(b1, i), y2 = response(b2, i);
    const double p1 = 1 / (1 + std::exp(-5.0 * (true_score(y1) - true_score(y2))));
    if (u(g) < p1)
      data.push_back({{BOS}, y1, y2});
    else
      data.push_back({{BOS}, y2, y1});
  }
  bow_reward rm;
  tr::rm_options o;
  o.steps = 200;
  o.batch_size = static_cast<long long>(data.size());
  o.loss = rlhf::rm::pairwise_params::trl();  // -log sigmoid(r_c - r_r)
  o.progress = false;
  const auto n = data.size();
  tr::reward_trainer<bow_reward> t(rm, std::move(data), o);
  t.run();
  std::printf("  reward model: pairwise loss %.4f, accuracy %.3f on %zu pairs (rlhf::train::reward_trainer)\n",
              t.last().number("loss"), t.last().number("accuracy"), n);
  return rm;
}

struct run_summary {
  double rm = 0, truth = 0, kl = 0, fluency = 0, grammatical = 0;
};

run_summary ppo_run(const char* name, double beta, const mlp_lm& ref, const bow_reward& rm, long long steps,
                    const std::string& out, rlhf::rng_t& g) {
  mlp_lm policy = ref;  // the policy starts at the reference
  mlp_lm reference = ref;
  policy.set_lr(2e-3);
  scored_reward reward{&rm, &reference};
  tr::rl_options o;
  o.steps = steps;
  o.prompts_per_step = 16;
  o.group_size = 8;
  o.ppo_epochs = 2;
  o.minibatch_size = 64;
  o.kl_coef = beta;
  o.sample.max_new_tokens = 10;
  o.metrics_path = out + "/" + name + ".jsonl";
  o.progress_every = std::max(1LL, steps / 10);
  o.seed = 7;
  using S = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::reward,
                             tr::advantage_estimator::rloo>;
  tr::rl_trainer<S, mlp_lm, mlp_lm, scored_reward> trainer(policy, reference, reward, {{BOS}}, o);
  std::printf("\n== PPO %s (beta = %.2f): %lld steps, metrics in %s\n",
              beta > 0 ? "with the KL penalty" : "WITHOUT the KL penalty", beta, steps, o.metrics_path.c_str());
  std::ofstream tsv(out + "/" + name + ".tsv");
  tsv << "step\trm_score\ttrue_score\tkl_ref\tfluency\tgrammatical\n";
  run_summary s;
  const long long tail = std::max(1LL, steps / 10);
  trainer.run([](long long) {},
              [&](tr::record& r) {
                r.set("true_score", reward.last_true).set("fluency", reward.last_fluency);
                r.set("grammatical", reward.last_grammatical);
                tsv << r.number("step") << '\t' << r.number("reward") << '\t' << reward.last_true << '\t'
                    << r.number("log_ratio_ref") << '\t' << reward.last_fluency << '\t' << reward.last_grammatical
                    << '\n';
                if (r.number("step") > static_cast<double>(steps - tail)) {
                  const double k = 1.0 / static_cast<double>(tail);
                  s.rm += k * r.number("reward");
                  s.truth += k * reward.last_true;
                  s.kl += k * r.number("log_ratio_ref");
                  s.fluency += k * reward.last_fluency;
                  s.grammatical += k * reward.last_grammatical;
                }
              });
  show_samples("  samples after training:", policy, g, rm);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = parse_example_args(argc, argv, example_args{250, 3000, 3000, "tiny_lm_out", 200});
  const long long steps = args.steps, fit_steps = args.fit_steps;
  const index_t pairs = args.pairs;
  const std::string out = args.out;
  rlhf::rng_t g(42);

  std::printf("== 1. fitting the reference language model to the corpus\n");
  mlp_lm ref(1, 3e-3);
  std::mt19937_64 corpus(7);
  fit_to_corpus(ref, fit_steps, 64, corpus, true);

  std::printf("\n== 2. training the bag-of-words reward model on preference pairs\n");
  const bow_reward rm = train_reward_model(ref, g, pairs);
  std::printf("  weights: good %+.2f great %+.2f happy %+.2f | bad %+.2f sad %+.2f | cat %+.2f . %+.2f\n", rm.w[4],
              rm.w[5], rm.w[6], rm.w[7], rm.w[8], rm.w[11], rm.w[1]);
  show_samples("  samples from the reference model:", ref, g, rm);

  const auto with_kl = ppo_run("ppo_kl", 1.0, ref, rm, steps, out, g);
  const auto no_kl = ppo_run("ppo_nokl", 0.0, ref, rm, steps, out, g);

  std::printf("\n== results (mean over the last 10%% of steps)\n");
  for (auto [name, s] : {std::pair{"kl", with_kl}, std::pair{"no_kl", no_kl}})
    std::printf("RESULT run=%s rm_score=%.3f true_score=%.3f kl_to_ref=%.3f fluency=%.3f grammatical=%.3f\n", name,
                s.rm, s.truth, s.kl, s.fluency, s.grammatical);
  std::printf(
      "(rm_score: learned reward; true_score: hidden preference; kl_to_ref: sum over tokens of\n"
      " log pi - log pi_ref; fluency: mean log-likelihood per token under the reference model)\n");

  // Plot with gnuplot when it is installed.
  std::ofstream gp(out + "/plot.gp");
  gp << "set terminal png size 1400,900\nset output '" << out << "/tiny_lm.png'\nset multiplot layout 2,2\n"
     << "set key center right opaque box\nset xlabel 'PPO step'\n";
  const char* cols[][2] = {{"2", "reward-model score"},
                           {"3", "true score"},
                           {"4", "KL to reference (nats/sequence)"},
                           {"5", "fluency: log-likelihood per token under the reference"}};
  for (auto& c : cols)
    gp << "set title '" << c[1] << "'\nplot '" << out << "/ppo_kl.tsv' using 1:" << c[0]
       << " with lines lw 2 title 'with KL (beta = 1)', '" << out << "/ppo_nokl.tsv' using 1:" << c[0]
       << " with lines lw 2 title 'without KL'\n";
  gp << "unset multiplot\n";
  gp.close();
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0 &&
      std::system(("gnuplot '" + out + "/plot.gp'").c_str()) == 0)
    std::printf("\nplot: %s/tiny_lm.png\n", out.c_str());
  else
    std::printf("\n(gnuplot not found: install it and run gnuplot %s/plot.gp for the plot)\n", out.c_str());
  std::printf("metrics: %s/ppo_kl.jsonl, %s/ppo_nokl.jsonl\n", out.c_str(), out.c_str());
  return 0;
}
