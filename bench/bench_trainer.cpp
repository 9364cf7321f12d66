// Google Benchmark of one PPO trainer step around a model stub, to measure
// what the trainer itself costs: B = 64 responses of T = 256 tokens, a
// 32000-token vocabulary, float. The stub returns fixed logits (a view of
// its own [B*T, V] buffer: no copy) and accepts gradients; generation hands
// back the same fixed responses. Counters (per step, from the trainer's
// step_profile):
//   overhead_fraction      trainer time outside the ops and the model, over the ops' time (goal <= 0.05)
//   boundary_bytes_copied  bytes converted between the model's outputs / gradients and the ops (goal 0)
//   gather_bytes           minibatch rows gathered into the trainer's reused buffers
//   ops_ms, model_ms       time in the library's ops and in the stub
#include <benchmark/benchmark.h>

#include <random>
#include <rlhf/rlhf.hpp>

namespace {
using rlhf::index_t;

constexpr index_t B = 64, T = 256, V = 32000;

/// A LogitsPolicy stub: fixed logits for every row of every batch.
struct stub {
  rlhf::tensor<float, 2> z;
  rlhf::rollout fixed;
  double sink = 0;
  stub() : z({B * T, V}) {
    std::mt19937 g(1);
    std::normal_distribution<float> n(0, 2);
    for (index_t i = 0; i < z.size(); ++i) z.data()[i] = n(g);
    std::uniform_int_distribution<int> tok(0, V - 1);
    fixed.seqs.responses = rlhf::tensor<rlhf::token_t, 2>({B, T});
    fixed.seqs.response_mask = rlhf::tensor<double, 2>({B, T}, 1.0);
    for (index_t i = 0; i < B * T; ++i) fixed.seqs.responses.data()[i] = tok(g);
  }
  // logits of a batch of n rows: the first n*T rows of the fixed buffer (a view, no copy)
  rlhf::tensor_view<const float, 2> logits(const rlhf::batch& b) const { return {z.data(), {b.size() * T, V}}; }
  void backward_logits(const rlhf::batch&, rlhf::tensor_view<const float, 2> dz) { sink += dz(0, 0); }
  rlhf::rollout generate(const rlhf::prompt_batch& x, const rlhf::sampling&, rlhf::rng_t&) const {
    rlhf::rollout r = fixed;
    r.seqs.prompts = x;
    return r;
  }
  void step() {}
};

struct constant_reward {
  std::vector<double> score(const rlhf::batch& b) const {
    std::vector<double> s(static_cast<std::size_t>(b.size()));
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<double>(i % 4);
    return s;
  }
};

void BM_trainer_step(benchmark::State& s) {
  using S = rlhf::train::rl_structure<rlhf::algorithm::ppo, rlhf::kl_estimator::k3, rlhf::kl_placement::loss,
                                      rlhf::advantage_estimator::grpo, rlhf::agg_mode::token_mean, float>;
  stub policy, reference;
  constant_reward rm;
  rlhf::train::rl_options o;
  o.steps = 1 << 30;
  o.prompts_per_step = 16;
  o.group_size = 4;  // B = 64
  o.ppo_epochs = 1;
  o.minibatch_size = 16;  // 4 minibatches
  o.entropy_coef = 0.01;
  o.kl_coef = 0.01;
  o.sample.max_new_tokens = T;
  o.progress = false;
  std::vector<std::vector<rlhf::token_t>> prompts{{1, 2}, {3}, {4, 5, 6}, {7}};
  rlhf::train::rl_trainer<S, stub, stub, constant_reward> t(policy, reference, rm, prompts, o);
  t.step();  // warm-up: the trainer's buffers are allocated by the first step and reused after
  double overhead = 0, ops = 0, model = 0, bytes = 0, gather = 0, n = 0;
  for (auto _ : s) {
    auto r = t.step();
    benchmark::DoNotOptimize(r);
    const auto& p = t.profile();
    overhead += p.overhead_s();
    ops += p.ops_s;
    model += p.model_s;
    bytes += static_cast<double>(p.boundary_bytes);
    gather += static_cast<double>(p.gather_bytes);
    n += 1;
  }
  s.counters["overhead_fraction"] = overhead / ops;
  s.counters["boundary_bytes_copied"] = bytes / n;
  s.counters["gather_bytes"] = gather / n;
  s.counters["ops_ms"] = 1e3 * ops / n;
  s.counters["model_ms"] = 1e3 * model / n;
}
BENCHMARK(BM_trainer_step)->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
