// The data-parallel cost (docs/distributed.md, "Cost"): under mpirun, every
// rank runs the same benchmarks with a fixed iteration count (a collective
// per iteration must be made by every rank the same number of times).
//   mpirun -np N --bind-to none build/bench/rlhf-bench-dist
// BM_allgather_frame: one collective of the ops' protocol (16 doubles per
// rank). BM_policy_loss_local / _ranks: ppo::policy_loss with its gradient
// on this rank's rows (float), alone and over the ranks (with the counts
// given: one collective; without: two) — weak scaling at fixed rows per
// rank; the difference is the reduction's cost. Rank 0 prints.
#include <benchmark/benchmark.h>

#include <random>
#include <rlhf/dist/mpi.hpp>
#include <rlhf/rlhf.hpp>
#include <vector>

namespace {

const rlhf::dist::mpi* world = nullptr;
constexpr int iterations = 200;

void BM_allgather_frame(benchmark::State& st) {
  std::vector<double> in(rlhf::dist::frame_size, 1.0), out(in.size() * static_cast<std::size_t>(world->size()));
  for (auto _ : st) {
    world->allgather(in, out);
    benchmark::DoNotOptimize(out.data());
  }
}

struct batch {
  rlhf::index_t B, T;
  std::vector<float> logp, old, adv, mask, dlogp;
  batch(rlhf::index_t b, rlhf::index_t t) : B(b), T(t) {
    const auto n = static_cast<std::size_t>(B * T);
    std::mt19937 g(static_cast<unsigned>(1 + world->rank()));
    std::normal_distribution<float> d(0, 1);
    for (auto* v : {&logp, &old, &adv}) v->resize(n);
    mask.assign(n, 1.0f);
    dlogp.assign(n, 0.0f);
    for (std::size_t i = 0; i < n; ++i) {
      logp[i] = -1.0f + 0.1f * d(g);
      old[i] = logp[i] + 0.05f * d(g);
      adv[i] = d(g);
    }
  }
  rlhf::tensor_view<const float, 2> v(const std::vector<float>& x) const { return {x.data(), {B, T}}; }
};

template <class Tag>
void run_policy(benchmark::State& st, const Tag& tag, bool counts_given) {
  const batch b(st.range(0), st.range(1));
  auto p = rlhf::ppo::policy_params::verl();
  if (counts_given) p.agg = rlhf::ops::global_counts(tag, b.v(b.mask), p.agg);
  std::vector<float> d(b.dlogp);
  for (auto _ : st) {
    const auto r = rlhf::ppo::policy_loss(tag, b.v(b.logp), b.v(b.old), b.v(b.adv), b.v(b.mask), p,
                                          rlhf::tensor_view<float, 2>(d.data(), {b.B, b.T}));
    benchmark::DoNotOptimize(r.loss);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * b.B * b.T * 5 * 4);
}

void BM_policy_loss_local(benchmark::State& st) { run_policy(st, rlhf::cpu, false); }
void BM_policy_loss_ranks_counts_given(benchmark::State& st) { run_policy(st, rlhf::cpu.with(*world), true); }
void BM_policy_loss_ranks(benchmark::State& st) { run_policy(st, rlhf::cpu.with(*world), false); }

/// The other ranks run the same benchmarks and print nothing.
struct silent : benchmark::BenchmarkReporter {
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

BENCHMARK(BM_allgather_frame)->Iterations(2000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_policy_loss_local)
    ->Args({64, 1024})
    ->Args({256, 4096})
    ->Iterations(iterations)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_policy_loss_ranks_counts_given)
    ->Args({64, 1024})
    ->Args({256, 4096})
    ->Iterations(iterations)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_policy_loss_ranks)
    ->Args({64, 1024})
    ->Args({256, 4096})
    ->Iterations(iterations)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  {
    const rlhf::dist::mpi w;
    world = &w;
    benchmark::Initialize(&argc, argv);
    if (w.rank() != 0) {  // every rank runs; rank 0 reports
      silent quiet;
      benchmark::RunSpecifiedBenchmarks(&quiet);
    } else {
      benchmark::RunSpecifiedBenchmarks();
    }
    benchmark::Shutdown();
  }
  MPI_Finalize();
  return 0;
}
