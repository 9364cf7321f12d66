// torch_lm — RLHF on a libtorch transformer through rlhf::torch::causal_lm.
//
// 1. A small causal transformer (2 layers, d_model 64, 4 heads; libtorch,
//    autograd, Adam) is fitted to a synthetic corpus of grammatical
//    sentences (tiny_language.hpp): the SFT model, the frozen reference.
// 2. A reward model — a libtorch module with a learned weight per token,
//    summed along the sequence (a bag of words), read at the last token —
//    is trained on preference pairs of SFT samples labelled by a hidden
//    "true" preference, with the library's pairwise (Bradley–Terry) loss
//    pushed through autograd. It learns "a positive word is good", which a
//    policy can game by repeating positive words.
// 3. PPO (RLOO baseline) with the KL toward the frozen reference in the
//    reward, and without it; GRPO with the k3 KL in the loss; DPO on the
//    preference pairs. Each prints
//      RESULT run=<name> rm_score=... true_score=... kl_to_ref=... grammatical=...
//    Without the KL the policy games the reward model (rm_score up,
//    true_score and grammaticality down, KL up); with it the text stays good.
// Writes OUT/<run>.jsonl (metrics), OUT/<run>.tsv and OUT/torch_lm.png
// (gnuplot, when installed).
// Usage: torch_lm [--steps N] [--fit-steps N] [--pairs N] [--beta B] [--grpo-beta B] [--out DIR] [--quick]
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <rlhf/adapt/torch_lm.hpp>
#include <rlhf/rlhf.hpp>
#include <string>
#include <vector>

#include "tiny_language.hpp"

namespace tr = rlhf::train;
namespace rt = rlhf::torch;
using rlhf::index_t;
using tiny::token_t;

namespace {

constexpr std::int64_t V = 18, D = 64, HEADS = 4, LAYERS = 2, CTX = 16;

// ---------------------------------------------------------------------------
// The transformer: token + position embeddings, pre-LN blocks (causal
// self-attention, GELU MLP), a final LayerNorm and an untied head.
struct BlockImpl : torch::nn::Module {
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc{nullptr}, out{nullptr};
  BlockImpl() {
    ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
    ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
    qkv = register_module("qkv", torch::nn::Linear(D, 3 * D));
    proj = register_module("proj", torch::nn::Linear(D, D));
    fc = register_module("fc", torch::nn::Linear(D, 4 * D));
    out = register_module("out", torch::nn::Linear(4 * D, D));
  }
  torch::Tensor forward(const torch::Tensor& x) {  // [B, L, D]
    const auto B = x.size(0), L = x.size(1), dh = D / HEADS;
    auto h = qkv(ln1(x)).view({B, L, 3, HEADS, dh}).permute({2, 0, 3, 1, 4});  // [3, B, H, L, dh]
    const auto q = h[0], k = h[1], v = h[2];
    auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(dh));
    const auto causal = torch::ones({L, L}, torch::kBool).triu(1);
    att = torch::softmax(att.masked_fill(causal, -1e9), -1);
    const auto y = torch::matmul(att, v).permute({0, 2, 1, 3}).reshape({B, L, D});
    const auto x1 = x + proj(y);
    return x1 + out(torch::gelu(fc(ln2(x1))));
  }
};
TORCH_MODULE(Block);

struct TransformerImpl : torch::nn::Module {
  torch::nn::Embedding tok{nullptr}, pos{nullptr};
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm lnf{nullptr};
  torch::nn::Linear head{nullptr};
  TransformerImpl() {
    tok = register_module("tok", torch::nn::Embedding(V, D));
    pos = register_module("pos", torch::nn::Embedding(CTX, D));
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int l = 0; l < LAYERS; ++l) blocks->push_back(Block());
    lnf = register_module("lnf", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D})));
    head = register_module("head", torch::nn::Linear(D, V));
  }
  /// tokens [B, L] -> next-token logits [B, L, V]
  torch::Tensor forward(const torch::Tensor& tokens) {
    const auto L = tokens.size(1);
    auto x = tok(tokens) + pos(torch::arange(L, torch::kLong)).unsqueeze(0);
    for (const auto& b : *blocks) x = b->as<BlockImpl>()->forward(x);
    return head(lnf(x));
  }
};
TORCH_MODULE(Transformer);

/// The reward model: score at position l = bias + sum_{j <= l} w[token_j].
struct BagOfWordsImpl : torch::nn::Module {
  torch::nn::Embedding w{nullptr};
  torch::Tensor bias;
  BagOfWordsImpl() {
    w = register_module("w", torch::nn::Embedding(V, 1));
    torch::NoGradGuard ng;
    w->weight.zero_();
    bias = register_parameter("bias", torch::zeros({1}));
  }
  torch::Tensor forward(const torch::Tensor& tokens) { return w(tokens).squeeze(-1).cumsum(1) + bias; }
};
TORCH_MODULE(BagOfWords);

using policy_t = rt::causal_lm<Transformer, float>;
/// Sampling: "." ends a sentence.
const rt::lm_options sampling_options{0, 1.0, tiny::EOS, 0};
using reward_t = rt::reward_model<BagOfWords, float>;

/// A copy of a transformer's weights in a new module.
Transformer clone(const Transformer& m) {
  Transformer c;
  torch::NoGradGuard ng;
  auto dst = c->parameters();
  const auto src = m->parameters();
  for (std::size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
  return c;
}

// ---------------------------------------------------------------------------
// 1. SFT: teacher forcing on <s> sentence.
void fit_to_corpus(Transformer& m, long long steps, std::mt19937_64& g) {
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(3e-3));
  const std::int64_t B = 64;
  for (long long s = 0; s < steps; ++s) {
    std::vector<std::vector<token_t>> sent(B);
    std::int64_t L = 0;
    for (auto& x : sent) {
      x = tiny::sample_sentence(g);
      L = std::max<std::int64_t>(L, static_cast<std::int64_t>(x.size()));
    }
    auto in = torch::zeros({B, L}, torch::kLong), target = torch::full({B, L}, -100, torch::kLong);
    auto ia = in.accessor<std::int64_t, 2>();
    auto ta = target.accessor<std::int64_t, 2>();
    for (std::int64_t i = 0; i < B; ++i) {
      const auto& x = sent[static_cast<std::size_t>(i)];
      ia[i][0] = tiny::BOS;
      for (std::size_t t = 0; t < x.size(); ++t) {
        if (t + 1 < static_cast<std::size_t>(L)) ia[i][static_cast<std::int64_t>(t) + 1] = x[t];
        ta[i][static_cast<std::int64_t>(t)] = x[t];
      }
    }
    const auto z = m->forward(in);
    const auto loss =
        torch::nn::functional::cross_entropy(z.reshape({B * L, V}), target.reshape({B * L}),
                                             torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (s == 0 || (s + 1) % std::max(1LL, steps / 4) == 0)
      std::printf("  step %4lld  cross-entropy %.3f\n", s + 1, loss.item<double>());
  }
}

rt::batch sample(const policy_t& m, index_t n, rlhf::rng_t& g) {
  rt::prompt_batch x;
  x.tokens = rlhf::tensor<std::int64_t, 2>({n, 1}, tiny::BOS);
  x.lengths.assign(static_cast<std::size_t>(n), 1);
  return m.generate(x, rlhf::sampling{1.0, 10}, g).seqs;
}

// ---------------------------------------------------------------------------
// 2. The reward model, Bradley–Terry on labelled pairs of SFT samples.
struct pair_data {
  std::vector<std::vector<std::int64_t>> chosen, rejected;
};

pair_data label_pairs(const policy_t& ref, index_t n, rlhf::rng_t& g) {
  pair_data d;
  std::uniform_real_distribution<double> u(0, 1);
  const auto b1 = sample(ref, n, g), b2 = sample(ref, n, g);
  for (index_t i = 0; i < n; ++i) {
    auto y1 = tiny::response(b1, i), y2 = tiny::response(b2, i);
    const double p1 = 1 / (1 + std::exp(-5.0 * (tiny::true_score(y1) - tiny::true_score(y2))));
    if (u(g) >= p1) std::swap(y1, y2);
    d.chosen.emplace_back(y1.begin(), y1.end());
    d.rejected.emplace_back(y2.begin(), y2.end());
  }
  return d;
}

/// A batch of responses after the prompt <s> (mask 1 on each token).
rt::batch batch_of(const std::vector<std::vector<std::int64_t>>& ys) {
  rt::batch b;
  const auto n = static_cast<index_t>(ys.size());
  index_t T = 1;
  for (const auto& y : ys) T = std::max(T, static_cast<index_t>(y.size()));
  b.prompts.tokens = rlhf::tensor<std::int64_t, 2>({n, 1}, tiny::BOS);
  b.prompts.lengths.assign(static_cast<std::size_t>(n), 1);
  b.responses = rlhf::tensor<std::int64_t, 2>({n, T}, 0);
  b.response_mask = rlhf::tensor<double, 2>({n, T}, 0.0);
  for (index_t i = 0; i < n; ++i)
    for (std::size_t t = 0; t < ys[static_cast<std::size_t>(i)].size(); ++t) {
      b.responses(i, static_cast<index_t>(t)) = ys[static_cast<std::size_t>(i)][t];
      b.response_mask(i, static_cast<index_t>(t)) = 1.0;
    }
  return b;
}

void train_reward_model(reward_t& rm, const pair_data& d, int epochs) {
  torch::optim::Adam opt(rm.module()->parameters(), torch::optim::AdamOptions(5e-2));
  const auto bc = batch_of(d.chosen), br = batch_of(d.rejected);
  const auto B = static_cast<index_t>(d.chosen.size());
  for (int e = 0; e < epochs; ++e) {
    const auto sc = rm.last_scores(bc), sr = rm.last_scores(br);  // [B] each, with their graph
    const auto scd = sc.detach(), srd = sr.detach();
    auto gc = torch::zeros({B}), gr = torch::zeros({B});
    const auto s = rlhf::rm::pairwise_loss(rlhf::cpu, rlhf::view<const float, 1>(scd), rlhf::view<const float, 1>(srd),
                                           rlhf::rm::pairwise_params::trl(), {}, rlhf::view<float, 1>(gc),
                                           rlhf::view<float, 1>(gr));
    opt.zero_grad();
    torch::autograd::backward({sc, sr}, {gc, gr});
    opt.step();
    if (e + 1 == epochs)
      std::printf("  reward model: pairwise loss %.4f, accuracy %.3f on %lld pairs\n", s.loss, s.accuracy,
                  static_cast<long long>(B));
  }
}

// ---------------------------------------------------------------------------
// 3. The runs.
/// The reward model as the trainer sees it; it records, for the batch it
/// scores, the hidden preference and the grammaticality of the responses.
struct scored_reward {
  using token_type = std::int64_t;
  const reward_t* rm;
  double last_true = 0, last_grammatical = 0;
  std::vector<double> score(const rt::batch& b) {
    double truth = 0, gram = 0;
    for (index_t i = 0; i < b.size(); ++i) {
      const auto y = tiny::response(b, i);
      truth += tiny::true_score(y) / static_cast<double>(b.size());
      gram += (tiny::grammatical(y) ? 1.0 : 0.0) / static_cast<double>(b.size());
    }
    last_true = truth;
    last_grammatical = gram;
    return rm->score(b);
  }
};

struct summary {
  double rm = 0, truth = 0, kl = 0, grammatical = 0;
};

/// The mean of the last 10% of a run's records.
struct tail_mean {
  long long steps, tail;
  summary s;
  explicit tail_mean(long long n) : steps(n), tail(std::max(1LL, n / 10)) {}
  void add(double step, double rm, double truth, double kl, double gram) {
    if (step <= static_cast<double>(steps - tail)) return;
    const double k = 1.0 / static_cast<double>(tail);
    s.rm += k * rm;
    s.truth += k * truth;
    s.kl += k * kl;
    s.grammatical += k * gram;
  }
};

template <class S>
summary rl_run(const char* name, double beta, const Transformer& sft, const reward_t& rm, long long steps,
               const std::string& out) {
  auto pm = clone(sft), rmod = clone(sft);
  policy_t policy(pm, std::make_shared<torch::optim::Adam>(pm->parameters(), torch::optim::AdamOptions(1e-3)),
                  sampling_options);
  policy_t reference(rmod, nullptr, sampling_options);  // frozen: no optimizer
  scored_reward reward{&rm};
  tr::rl_options o;
  o.steps = steps;
  o.prompts_per_step = 8;
  o.group_size = 8;
  o.ppo_epochs = 2;
  o.minibatch_size = 32;
  o.kl_coef = beta;
  o.sample.max_new_tokens = 10;
  o.metrics_path = out + "/" + name + ".jsonl";
  o.progress_every = std::max(1LL, steps / 5);
  o.seed = 7;
  tr::rl_trainer<S, policy_t, policy_t, scored_reward> trainer(policy, reference, reward, {{tiny::BOS}}, o);
  std::printf("\n== %s (beta = %.2f): %lld steps, metrics in %s\n", name, beta, steps, o.metrics_path.c_str());
  std::ofstream tsv(out + "/" + name + ".tsv");
  tsv << "step\trm_score\ttrue_score\tkl_ref\tgrammatical\n";
  tail_mean t(steps);
  trainer.run([](long long) {},
              [&](tr::record& r) {
                r.set("true_score", reward.last_true).set("grammatical", reward.last_grammatical);
                tsv << r.number("step") << '\t' << r.number("reward") << '\t' << reward.last_true << '\t'
                    << r.number("log_ratio_ref") << '\t' << reward.last_grammatical << '\n';
                t.add(r.number("step"), r.number("reward"), reward.last_true, r.number("log_ratio_ref"),
                      reward.last_grammatical);
              });
  rlhf::rng_t g(99);
  const auto b = sample(policy, 3, g);
  for (index_t i = 0; i < b.size(); ++i) std::printf("    %s\n", tiny::text(tiny::response(b, i)).c_str());
  return t.s;
}

/// Evaluates a policy as the RL runs are measured: fresh samples scored by
/// the reward model, the hidden preference, and the sampled KL to the reference.
summary evaluate(const policy_t& policy, const policy_t& reference, const reward_t& rm, index_t n) {
  rlhf::rng_t g(123);
  const auto b = sample(policy, n, g);
  summary s;
  const auto scores = rm.score(b);
  for (index_t i = 0; i < n; ++i) {
    const auto y = tiny::response(b, i);
    s.rm += scores[static_cast<std::size_t>(i)] / static_cast<double>(n);
    s.truth += tiny::true_score(y) / static_cast<double>(n);
    s.grammatical += (tiny::grammatical(y) ? 1.0 : 0.0) / static_cast<double>(n);
  }
  // sum over tokens of log pi - log pi_ref, mean over sequences
  const auto lp = torch::log_softmax(policy.logits(b).tensor.to(torch::kDouble), -1);
  const auto lr = torch::log_softmax(reference.logits(b).tensor.to(torch::kDouble), -1);
  const auto y = rlhf::to_torch(b.responses.view()).reshape({-1, 1});
  const auto m = rlhf::to_torch(b.response_mask.view()).reshape({-1});
  s.kl = ((lp.gather(1, y).squeeze(1) - lr.gather(1, y).squeeze(1)) * m).sum().item<double>() / static_cast<double>(n);
  return s;
}

summary dpo_run(const Transformer& sft, const reward_t& rm, const pair_data& d, long long steps,
                const std::string& out) {
  auto pm = clone(sft), rmod = clone(sft);
  policy_t policy(pm, std::make_shared<torch::optim::Adam>(pm->parameters(), torch::optim::AdamOptions(1e-4)),
                  sampling_options);
  policy_t reference(rmod, nullptr, sampling_options);
  std::vector<tr::basic_preference<std::int64_t>> pairs;
  for (std::size_t i = 0; i < d.chosen.size(); ++i)
    if (d.chosen[i] != d.rejected[i]) pairs.push_back({{tiny::BOS}, d.chosen[i], d.rejected[i]});
  tr::dpo_options o;
  o.steps = steps;
  o.batch_size = 16;
  o.loss = rlhf::dpo::params::trl(rlhf::dpo::loss_type::sigmoid, 0.1);
  o.metrics_path = out + "/dpo.jsonl";
  o.progress_every = std::max(1LL, steps / 5);
  o.seed = 7;
  tr::dpo_trainer<policy_t, policy_t> trainer(policy, reference, pairs, o);
  std::printf("\n== dpo (sigmoid, beta 0.1): %lld steps on %zu pairs, metrics in %s\n", steps, pairs.size(),
              o.metrics_path.c_str());
  trainer.run();
  rlhf::rng_t g(99);
  const auto b = sample(policy, 3, g);
  for (index_t i = 0; i < b.size(); ++i) std::printf("    %s\n", tiny::text(tiny::response(b, i)).c_str());
  return evaluate(policy, reference, rm, 256);
}

}  // namespace

int main(int argc, char** argv) {
  long long steps = 120, fit_steps = 400, dpo_steps = 150;
  double beta = 2.0, grpo_beta = 1.0;
  index_t pairs = 1024;
  std::string out = "torch_lm_out";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--steps")
      steps = std::stoll(next());
    else if (a == "--fit-steps")
      fit_steps = std::stoll(next());
    else if (a == "--pairs")
      pairs = std::stoll(next());
    else if (a == "--beta")
      beta = std::stod(next());
    else if (a == "--grpo-beta")
      grpo_beta = std::stod(next());
    else if (a == "--out")
      out = next();
    else if (a == "--quick")
      steps = 4, fit_steps = 20, dpo_steps = 4, pairs = 64;
    else {
      std::fprintf(stderr,
                   "usage: torch_lm [--steps N] [--fit-steps N] [--pairs N] [--beta B] [--grpo-beta B] [--out DIR] "
                   "[--quick]\n");
      return 2;
    }
  }
  std::filesystem::create_directories(out);
  torch::set_num_threads(1);  // small matrices: one thread is fastest and deterministic
  torch::manual_seed(1);
  rlhf::rng_t g(42);

  std::printf("== 1. fitting the reference (SFT) transformer to the corpus\n");
  Transformer sft;
  std::mt19937_64 corpus(7);
  fit_to_corpus(sft, fit_steps, corpus);
  const policy_t sft_policy(sft, nullptr, sampling_options);

  std::printf("\n== 2. training the reward model on preference pairs (rlhf::rm::pairwise_loss)\n");
  const auto data = label_pairs(sft_policy, pairs, g);
  reward_t rm{BagOfWords()};
  train_reward_model(rm, data, 300);
  const auto w = rm.module()->w->weight.squeeze(1);
  std::printf("  weights: good %+.2f great %+.2f happy %+.2f | bad %+.2f sad %+.2f | cat %+.2f . %+.2f\n",
              w[4].item<double>(), w[5].item<double>(), w[6].item<double>(), w[7].item<double>(), w[8].item<double>(),
              w[11].item<double>(), w[1].item<double>());
  const auto sft_eval = evaluate(sft_policy, sft_policy, rm, 256);

  using ppo_kl_reward = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::reward,
                                         tr::advantage_estimator::rloo>;
  using grpo_kl_loss = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::loss,
                                        tr::advantage_estimator::grpo, rlhf::agg_mode::seq_mean_token_mean>;
  const auto kl = rl_run<ppo_kl_reward>("ppo_kl", beta, sft, rm, steps, out);
  const auto nokl = rl_run<ppo_kl_reward>("ppo_nokl", 0.0, sft, rm, steps, out);
  const auto grpo = rl_run<grpo_kl_loss>("grpo_kl_loss", grpo_beta, sft, rm, steps, out);
  const auto dpo = dpo_run(sft, rm, data, dpo_steps, out);

  std::printf("\n== results (RL runs: mean over the last 10%% of steps; sft and dpo: 256 fresh samples)\n");
  for (auto [name, s] : {std::pair{"sft", sft_eval}, std::pair{"ppo_kl", kl}, std::pair{"ppo_nokl", nokl},
                         std::pair{"grpo_kl_loss", grpo}, std::pair{"dpo", dpo}})
    std::printf("RESULT run=%s rm_score=%.3f true_score=%.3f kl_to_ref=%.3f grammatical=%.3f\n", name, s.rm, s.truth,
                s.kl, s.grammatical);
  std::printf(
      "(rm_score: the learned reward; true_score: the hidden preference; kl_to_ref: sum over tokens of\n"
      " log pi - log pi_ref per sequence; grammatical: fraction of grammatical responses)\n");

  std::ofstream gp(out + "/plot.gp");
  gp << "set terminal png size 1400,900\nset output '" << out << "/torch_lm.png'\nset multiplot layout 2,2\n"
     << "set key center right opaque box\nset xlabel 'step'\n";
  const char* cols[][2] = {
      {"2", "reward-model score"}, {"3", "true score"}, {"4", "KL to reference (nats/sequence)"}, {"5", "grammatical"}};
  for (auto& c : cols)
    gp << "set title '" << c[1] << "'\nplot '" << out << "/ppo_kl.tsv' using 1:" << c[0]
       << " with lines lw 2 title 'PPO, KL in the reward', '" << out << "/ppo_nokl.tsv' using 1:" << c[0]
       << " with lines lw 2 title 'PPO without KL', '" << out << "/grpo_kl_loss.tsv' using 1:" << c[0]
       << " with lines lw 2 title 'GRPO, KL in the loss'\n";
  gp << "unset multiplot\n";
  gp.close();
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0 &&
      std::system(("gnuplot '" + out + "/plot.gp'").c_str()) == 0)
    std::printf("\nplot: %s/torch_lm.png\n", out.c_str());
  else
    std::printf("\n(gnuplot not found: install it and run gnuplot %s/plot.gp for the plot)\n", out.c_str());
  return 0;
}
