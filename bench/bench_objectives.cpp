// Google Benchmark of the [B, T] objectives on the CPU backend. Speed lives
// here, never in tests. bytes_per_second counts the bytes each op must move
// (inputs read once, gradient written once), to compare with the machine's
// copy bandwidth. The fused logits benchmarks (rlhf-bench) come with the
// fused-kernels work.
#include <benchmark/benchmark.h>

#include "bandwidth.hpp"

#include <random>
#include <rlhf/rlhf.hpp>

namespace {
struct batch {
  rlhf::tensor<float, 2> logp, old, adv, mask, grad;
  batch(rlhf::index_t B, rlhf::index_t T)
      : logp({B, T}), old({B, T}), adv({B, T}), mask({B, T}, 1.0f), grad({B, T}) {
    std::mt19937 g(1);
    std::normal_distribution<float> n(0, 1);
    for (rlhf::index_t i = 0; i < B * T; ++i) {
      old.data()[i] = -1 + 0.3f * n(g);
      logp.data()[i] = old.data()[i] + 0.1f * n(g);
      adv.data()[i] = n(g);
    }
  }
};

void BM_ppo_policy_loss(benchmark::State& s) {
  const auto B = s.range(0), T = s.range(1);
  batch b(B, T);
  const auto p = rlhf::ppo::policy_params::verl();
  for (auto _ : s) {
    auto r = rlhf::ppo::policy_loss(rlhf::cpu.unchecked(), b.logp.view(), b.old.view(), b.adv.view(), b.mask.view(),
                                    p, b.grad.view());
    benchmark::DoNotOptimize(r);
  }
  s.SetBytesProcessed(s.iterations() * B * T * static_cast<int64_t>(sizeof(float)) * 5);
}
BENCHMARK(BM_ppo_policy_loss)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ppo_value_loss(benchmark::State& s) {
  const auto B = s.range(0), T = s.range(1);
  batch b(B, T);  // vpreds = logp, returns = adv, old values = old
  const auto p = rlhf::ppo::value_params::verl(0.5);
  for (auto _ : s) {
    auto r = rlhf::ppo::value_loss(rlhf::cpu.unchecked(), b.logp.view(), b.adv.view(), b.old.view(), b.mask.view(), p,
                                   b.grad.view());
    benchmark::DoNotOptimize(r);
  }
  s.SetBytesProcessed(s.iterations() * B * T * static_cast<int64_t>(sizeof(float)) * 5);
}
BENCHMARK(BM_ppo_value_loss)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_entropy_bonus(benchmark::State& s) {
  const auto B = s.range(0), T = s.range(1);
  batch b(B, T);
  rlhf::agg_params agg{};
  for (auto _ : s) {
    auto r = rlhf::ppo::entropy_bonus(rlhf::cpu.unchecked(), b.adv.view(), b.mask.view(), 0.01, agg, b.grad.view());
    benchmark::DoNotOptimize(r);
  }
  s.SetBytesProcessed(s.iterations() * B * T * static_cast<int64_t>(sizeof(float)) * 3);
}
BENCHMARK(BM_entropy_bonus)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_gae(benchmark::State& s) {
  const auto B = s.range(0), T = s.range(1);
  batch b(B, T);
  rlhf::tensor<float, 2> a({B, T}), r({B, T});
  for (auto _ : s) {
    rlhf::adv::gae(rlhf::cpu.unchecked(), b.adv.view(), b.old.view(), b.mask.view(), rlhf::adv::gae_params{1.0, 0.95},
                   rlhf::adv::outputs<float>{a.view(), r.view()});
    benchmark::ClobberMemory();
  }
  s.SetBytesProcessed(s.iterations() * B * T * static_cast<int64_t>(sizeof(float)) * 5);
}
BENCHMARK(BM_gae)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_reinforce_pp(benchmark::State& s) {
  const auto B = s.range(0), T = s.range(1);
  batch b(B, T);
  rlhf::tensor<float, 2> a({B, T}), r({B, T});
  for (auto _ : s) {
    rlhf::adv::reinforce_pp(rlhf::cpu.unchecked(), b.adv.view(), b.mask.view(), rlhf::adv::reinforce_pp_params{},
                            rlhf::adv::outputs<float>{a.view(), r.view()});
    benchmark::ClobberMemory();
  }
  // rewards and mask read, returns and advantages written
  s.SetBytesProcessed(s.iterations() * B * T * static_cast<int64_t>(sizeof(float)) * 4);
}
BENCHMARK(BM_reinforce_pp)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
void BM_copy(benchmark::State& s) { rlhf_bench::copy_bandwidth(s); }
// 512 MiB: the memory's copy bandwidth; 20 MiB: a copy of the objectives'
// working set (20 MB at 256 x 4096 float), which stays in this machine's
// cache when it is large (the objectives' own data does too)
BENCHMARK(BM_copy)->Args({512, 1})->Args({512, 2})->Args({20, 1})->Args({20, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
