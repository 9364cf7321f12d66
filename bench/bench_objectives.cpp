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
  batch(rlhf::index_t B, rlhf::index_t T) : logp({B, T}), old({B, T}), adv({B, T}), mask({B, T}, 1.0f), grad({B, T}) {
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
    auto r = rlhf::ppo::policy_loss(rlhf::cpu.unchecked(), b.logp.view(), b.old.view(), b.adv.view(), b.mask.view(), p,
                                    b.grad.view());
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

// The rest of the [B, T] objectives, each on the CPU engine. `bytes` is what
// the op must move at least (inputs read once, outputs written once).
template <class F>
void run_case(benchmark::State& s, int tensors, F&& f) {
  for (auto _ : s) {
    f();
    benchmark::ClobberMemory();
  }
  s.SetBytesProcessed(s.iterations() * s.range(0) * s.range(1) * static_cast<int64_t>(sizeof(float)) * tensors);
}
constexpr auto fast = rlhf::cpu.unchecked();

void variant(benchmark::State& s, rlhf::ppo::policy_loss_kind k) {
  batch b(s.range(0), s.range(1));
  auto v = rlhf::ppo::variant_params::verl(k);
  if (k == rlhf::ppo::policy_loss_kind::dro) v.dro_beta = 0.1;
  run_case(s, 5, [&] {
    benchmark::DoNotOptimize(rlhf::ppo::policy_loss_variant(fast, b.logp.view(), b.old.view(), b.adv.view(),
                                                            b.mask.view(), v, b.grad.view()));
  });
}
void BM_variant_gspo(benchmark::State& s) { variant(s, rlhf::ppo::policy_loss_kind::gspo); }
void BM_variant_sapo(benchmark::State& s) { variant(s, rlhf::ppo::policy_loss_kind::sapo); }
void BM_variant_cispo(benchmark::State& s) { variant(s, rlhf::ppo::policy_loss_kind::cispo); }
void BM_variant_dppo_tv(benchmark::State& s) { variant(s, rlhf::ppo::policy_loss_kind::dppo_tv); }
BENCHMARK(BM_variant_gspo)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_variant_sapo)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_variant_cispo)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_variant_dppo_tv)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_is_weights(benchmark::State& s) {  // old, rollout, mask read; weights written
  batch b(s.range(0), s.range(1));
  const rlhf::ppo::is_params p{rlhf::ppo::is_correction::tis, 0.0, 2.0};
  run_case(s, 4, [&] {
    benchmark::DoNotOptimize(
        rlhf::ppo::rollout_is_weights(fast, b.old.view(), b.logp.view(), b.mask.view(), p, b.grad.view()));
  });
}
BENCHMARK(BM_is_weights)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_a2c_loss(benchmark::State& s) {  // 6 inputs read, 3 gradients written
  batch b(s.range(0), s.range(1));
  rlhf::tensor<float, 2> dv({s.range(0), s.range(1)}), dh({s.range(0), s.range(1)});
  auto p = rlhf::a2c::params::sb3();
  p.ent_coef = 0.01;
  run_case(s, 9, [&] {
    benchmark::DoNotOptimize(rlhf::a2c::loss(fast, b.logp.view(), b.old.view(), b.adv.view(), b.adv.view(),
                                             b.old.view(), b.mask.view(), p, b.grad.view(), dv.view(), dh.view()));
  });
}
BENCHMARK(BM_a2c_loss)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_kl_loss(benchmark::State& s) {  // logp, ref, mask read; dlogp written
  batch b(s.range(0), s.range(1));
  const auto kp = rlhf::kl_params::verl(rlhf::kl_estimator::k3);
  run_case(s, 4, [&] {
    benchmark::DoNotOptimize(
        rlhf::kl::loss(fast, b.logp.view(), b.old.view(), b.mask.view(), 0.001, kp, rlhf::agg_params{}, b.grad.view()));
  });
}
BENCHMARK(BM_kl_loss)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_kl_reward(benchmark::State& s) {  // scores, logp, ref, mask read; rewards written
  batch b(s.range(0), s.range(1));
  const auto kp = rlhf::kl_params::verl(rlhf::kl_estimator::k1);
  run_case(s, 5, [&] {
    benchmark::DoNotOptimize(rlhf::kl::apply_in_reward(fast, b.adv.view(), b.logp.view(), b.old.view(), b.mask.view(),
                                                       0.05, kp, b.grad.view()));
  });
}
BENCHMARK(BM_kl_reward)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_kl_estimate(benchmark::State& s) {  // logp, ref read; estimate and derivative written
  batch b(s.range(0), s.range(1));
  rlhf::tensor<float, 2> d({s.range(0), s.range(1)});
  const auto kp = rlhf::kl_params::verl(rlhf::kl_estimator::k3);
  run_case(s, 4, [&] { rlhf::kl::estimate(fast, b.logp.view(), b.old.view(), kp, b.grad.view(), d.view()); });
}
BENCHMARK(BM_kl_estimate)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_actor_loss(benchmark::State& s) {  // logp, old, adv, mask, entropy, ref read; dlogp, dentropy written
  batch b(s.range(0), s.range(1));
  rlhf::tensor<float, 2> dh({s.range(0), s.range(1)});
  rlhf::ppo::actor_params p{};
  p.policy = rlhf::ppo::policy_params::verl();
  p.entropy_coef = 0.01;
  p.kl_coef = 0.001;
  run_case(s, 8, [&] {
    benchmark::DoNotOptimize(rlhf::ppo::actor_loss(fast, b.logp.view(), b.old.view(), b.adv.view(), b.mask.view(),
                                                   b.adv.view(), b.old.view(), p, b.grad.view(), dh.view()));
  });
}
BENCHMARK(BM_actor_loss)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_masked_whiten(benchmark::State& s) {  // values, mask read; out written
  batch b(s.range(0), s.range(1));
  run_case(s, 3, [&] {
    benchmark::DoNotOptimize(
        rlhf::ops::masked_whiten(fast, b.adv.view(), b.mask.view(), rlhf::whiten_params::verl(), b.grad.view()));
  });
}
BENCHMARK(BM_masked_whiten)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_masked_mean(benchmark::State& s) {  // values, mask read; gradient written
  batch b(s.range(0), s.range(1));
  run_case(s, 3, [&] {
    benchmark::DoNotOptimize(rlhf::ops::masked_mean(fast, b.adv.view(), b.mask.view(), 1e-8, b.grad.view()));
  });
}
BENCHMARK(BM_masked_mean)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_aggregate(benchmark::State& s) {  // loss, mask read; gradient written
  batch b(s.range(0), s.range(1));
  rlhf::agg_params p{};
  p.mode = rlhf::agg_mode::seq_mean_token_mean;
  run_case(s, 3, [&] {
    benchmark::DoNotOptimize(rlhf::ops::aggregate(fast, b.adv.view(), b.mask.view(), p, b.grad.view()));
  });
}
BENCHMARK(BM_aggregate)->Args({256, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_copy(benchmark::State& s) { rlhf_bench::copy_bandwidth(s); }
// 512 MiB: the memory's copy bandwidth; 20 MiB: a copy of the objectives'
// working set (20 MB at 256 x 4096 float), which stays in this machine's
// cache when it is large (the objectives' own data does too)
BENCHMARK(BM_copy)
    ->Args({512, 1})
    ->Args({512, 2})
    ->Args({20, 1})
    ->Args({20, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
