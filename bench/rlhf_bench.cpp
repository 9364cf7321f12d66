// rlhf-bench — Google Benchmark of the logits hot path, with the machine's
// copy and read bandwidth measured in the same run.
//
//   BM_logits_fwd_bwd/N/V/threads  log-prob + entropy + dlogits through the fused
//                                  entry point (an entropy-regularized token loss),
//                                  float; must move: read logits + write dlogits
//   BM_logits_fwd/N/V/threads      log-prob + entropy only; must move: read logits
//   BM_fused_linear/N/V/H/threads  hidden x LM-head in chunks, same objective,
//                                  dhidden and dW; must move: X, W read, dX, dW written
//   BM_gemm3/N/V/H/threads         the three GEMMs of the fused linear path alone
//                                  (materialized), the time it is compared with
//   BM_gjsd/N/V/threads            GKD's generalized JSD (beta 0.5) of student and
//                                  teacher logits, loss and d/d student logits,
//                                  float; must move: read both, write dstudent
//   BM_copy/MiB/threads, BM_read/MiB/threads   STREAM-style bandwidth
// bytes_per_second is set from the bytes each case must move.
#include <benchmark/benchmark.h>

#include "bandwidth.hpp"

#include <Eigen/Core>
#include <cstdint>
#include <cstring>
#include <random>
#include <rlhf/ops/fused_linear.hpp>
#include <rlhf/rlhf.hpp>
#include <vector>

#if defined(_OPENMP)
#  include <omp.h>
#endif

namespace {

using rlhf::index_t;

void set_threads(benchmark::State& s, int t) {
#if defined(_OPENMP)
  omp_set_num_threads(t);
#endif
  Eigen::setNbThreads(t);
  s.counters["threads"] = t;
}

struct logits_case {
  index_t N, V;
  std::vector<float> z, dz, adv, w;
  std::vector<int> labels;
  logits_case(index_t n, index_t v)
      : N(n), V(v), z(static_cast<std::size_t>(n * v)), dz(z.size()), adv(n), w(n, 1.0f / n), labels(n) {
    std::mt19937 g(1);
    std::normal_distribution<float> nd(0, 2);
    for (auto& x : z) x = nd(g);
    for (index_t i = 0; i < n; ++i) {
      adv[i] = nd(g);
      labels[i] = static_cast<int>((i * 7919) % v);
    }
  }
};

void BM_logits_fwd_bwd(benchmark::State& s) {
  set_threads(s, static_cast<int>(s.range(2)));
  logits_case c(s.range(0), s.range(1));
  rlhf::ops::pg_entropy_objective<float> obj{c.adv.data(), c.w.data(), 0.01};
  const rlhf::tensor_view<const float, 2> Z(c.z.data(), {c.N, c.V});
  const rlhf::tensor_view<float, 2> dZ(c.dz.data(), {c.N, c.V});
  const auto L = rlhf::view(std::as_const(c.labels));
  for (auto _ : s) benchmark::DoNotOptimize(rlhf::ops::fused_token_objective(rlhf::cpu.unchecked(), Z, L, obj, dZ));
  s.SetBytesProcessed(s.iterations() * c.N * c.V * 8);
}

void BM_logits_fwd(benchmark::State& s) {
  set_threads(s, static_cast<int>(s.range(2)));
  logits_case c(s.range(0), s.range(1));
  std::vector<float> lp(c.N), h(c.N);
  const rlhf::tensor_view<const float, 2> Z(c.z.data(), {c.N, c.V});
  const auto L = rlhf::view(std::as_const(c.labels));
  for (auto _ : s) {
    rlhf::ops::logprobs_entropy(rlhf::cpu.unchecked(), Z, L, rlhf::view(lp), rlhf::view(h));
    benchmark::ClobberMemory();
  }
  s.SetBytesProcessed(s.iterations() * c.N * c.V * 4);
}

void BM_gjsd(benchmark::State& s) {
  set_threads(s, static_cast<int>(s.range(2)));
  logits_case c(s.range(0), s.range(1));
  std::vector<float> y(c.z.size());
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0, 2);
  for (auto& x : y) x = nd(g);
  const rlhf::tensor_view<const float, 2> Z(c.z.data(), {c.N, c.V}), Y(y.data(), {c.N, c.V});
  const rlhf::tensor_view<float, 2> dZ(c.dz.data(), {c.N, c.V});
  rlhf::distill::jsd_params p;  // beta 0.5, temperature 1, batchmean
  for (auto _ : s)
    benchmark::DoNotOptimize(
        rlhf::distill::generalized_jsd(rlhf::cpu.unchecked(), Z, Y, rlhf::tensor_view<const int, 1>{}, p, dZ).loss);
  s.SetBytesProcessed(s.iterations() * c.N * c.V * 12);
}

struct linear_case {
  index_t N, V, H;
  std::vector<float> X, W, dX, dW, adv, w;
  std::vector<int> labels;
  linear_case(index_t n, index_t v, index_t h)
      : N(n),
        V(v),
        H(h),
        X(static_cast<std::size_t>(n * h)),
        W(static_cast<std::size_t>(v * h)),
        dX(X.size()),
        dW(W.size()),
        adv(n),
        w(n, 1.0f / n),
        labels(n) {
    std::mt19937 g(2);
    std::normal_distribution<float> nd(0, 1);
    for (auto& x : X) x = nd(g);
    for (auto& x : W) x = 0.05f * nd(g);
    for (index_t i = 0; i < n; ++i) {
      adv[i] = nd(g);
      labels[i] = static_cast<int>((i * 7919) % v);
    }
  }
};

void BM_fused_linear(benchmark::State& s) {
  set_threads(s, static_cast<int>(s.range(3)));
  linear_case c(s.range(0), s.range(1), s.range(2));
  rlhf::ops::pg_entropy_objective<float> obj{c.adv.data(), c.w.data(), 0.01};
  const rlhf::tensor_view<const float, 2> X(c.X.data(), {c.N, c.H}), W(c.W.data(), {c.V, c.H});
  const rlhf::tensor_view<float, 2> dX(c.dX.data(), {c.N, c.H}), dW(c.dW.data(), {c.V, c.H});
  const auto L = rlhf::view(std::as_const(c.labels));
  rlhf::ops::fused_linear_result r{};
  for (auto _ : s) {
    r = rlhf::ops::fused_linear_objective(rlhf::cpu.unchecked(), X, W, L, obj, dX, dW);
    benchmark::DoNotOptimize(r);
  }
  const double grads = static_cast<double>((c.N + c.V) * c.H) * 4;
  s.counters["chunk_rows"] = static_cast<double>(r.chunk_rows);
  s.counters["workspace_MiB"] = static_cast<double>(r.chunk_rows * c.V) * 4 / 1048576.0;
  s.counters["grads_MiB"] = grads / 1048576.0;
  s.SetBytesProcessed(s.iterations() * static_cast<int64_t>(2 * grads));
  s.counters["GFLOPs"] = benchmark::Counter(6.0 * c.N * c.V * c.H * s.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_gemm3(benchmark::State& s) {
  set_threads(s, static_cast<int>(s.range(3)));
  linear_case c(s.range(0), s.range(1), s.range(2));
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const Mat> X(c.X.data(), c.N, c.H), W(c.W.data(), c.V, c.H);
  Eigen::Map<Mat> dX(c.dX.data(), c.N, c.H), dW(c.dW.data(), c.V, c.H);
  Mat Z(c.N, c.V);
  for (auto _ : s) {
    Z.noalias() = X * W.transpose();
    dX.noalias() = Z * W;
    dW.noalias() = Z.transpose() * X;
    benchmark::ClobberMemory();
  }
  s.counters["GFLOPs"] = benchmark::Counter(6.0 * c.N * c.V * c.H * s.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_copy(benchmark::State& s) {
  set_threads(s, static_cast<int>(s.range(1)));
  rlhf_bench::copy_bandwidth(s);
}

void BM_read(benchmark::State& s) {
  set_threads(s, static_cast<int>(s.range(1)));
  const std::size_t n = static_cast<std::size_t>(s.range(0)) << 20 >> 2;
  std::vector<std::uint32_t> a(n, 1u);  // integer sum: vectorizes without fast-math, so DRAM is the limit
  for (auto _ : s) {
    std::uint32_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) total += a[i];
    benchmark::DoNotOptimize(total);
  }
  s.SetBytesProcessed(s.iterations() * static_cast<int64_t>(n) * 4);
}

}  // namespace

BENCHMARK(BM_copy)->Args({512, 1})->Args({512, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_read)->Args({512, 1})->Args({512, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
// the logits cases' shapes (N, V, threads)
void logits_shapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, v] : {std::pair<long, long>{2048, 32000}, {512, 128256}})
    for (long threads : {1, 2}) b->Args({n, v, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_logits_fwd_bwd)->Apply(logits_shapes);
BENCHMARK(BM_logits_fwd)->Apply(logits_shapes);
BENCHMARK(BM_gjsd)->Apply(logits_shapes);
// the fused linear op and its three-GEMM baseline on the same shapes (N, V, H, threads)
void linear_shapes(benchmark::internal::Benchmark* b) {
  for (const auto& [n, v] : {std::pair<long, long>{2048, 32000}, {512, 128256}})
    for (long threads : {1, 2}) b->Args({n, v, 1024, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(3);
}
BENCHMARK(BM_fused_linear)->Apply(linear_shapes);
BENCHMARK(BM_gemm3)->Apply(linear_shapes);

BENCHMARK_MAIN();
