// rlhf++ GPU benchmark: the fused logits ops, the [B, T] objectives and the
// fused linear path, timed with CUDA events next to a device-to-device copy
// and a large bf16 GEMM measured in the same run. One JSON object per line
// on stdout (bench/gpu/report.py turns them into the ratio table).
//
//   bench_gpu [--quick]     (--quick: small shapes, for a machine check)
#include <cuda_bf16.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <rlhf/backend/cuda/advantage.cuh>
#include <rlhf/backend/cuda/fused_linear.cuh>
#include <rlhf/backend/cuda/logits.cuh>
#include <rlhf/backend/cuda/objectives.cuh>
#include <rlhf/objectives/fused.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using rlhf::index_t;
using bf16 = __nv_bfloat16;

void check(cudaError_t e, const char* what) { rlhf::detail::check_cuda(e, "bench_gpu", what); }

/// Median milliseconds of `reps` runs of f after `warm` warm-ups (CUDA events).
template <class F>
double time_ms(F&& f, int warm = 3, int reps = 10) {
  for (int i = 0; i < warm; ++i) f();
  check(cudaDeviceSynchronize(), "sync");
  std::vector<float> t;
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(a), "record");
    f();
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <class T>
__global__ void fill_normal(T* x, std::size_t n, unsigned seed, float scale) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    // a cheap hash -> approximately normal (sum of 4 uniforms)
    unsigned h = static_cast<unsigned>(i) * 2654435761u ^ seed;
    float s = 0;
    for (int k = 0; k < 4; ++k) {
      h ^= h << 13;
      h ^= h >> 17;
      h ^= h << 5;
      s += static_cast<float>(h & 0xffffff) / 16777216.0f;
    }
    x[i] = static_cast<T>((s - 2.0f) * 1.7320508f * scale);
  }
}
template <class T>
void fill(T* x, std::size_t n, unsigned seed, float scale = 1.0f) {
  fill_normal<T><<<4096, 256>>>(x, n, seed, scale);
  check(cudaGetLastError(), "fill");
}
__global__ void fill_labels(long long* l, index_t n, index_t V) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    l[i] = (i * 7919) % V;
}
__global__ void fill_value(double* x, index_t n, double v) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    x[i] = v;
}

void emit(const std::string& json) {
  std::printf("%s\n", json.c_str());
  std::fflush(stdout);
}
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

/// Peak of (free-before - free) while f runs (a polling thread; cudaMemGetInfo).
template <class F>
std::size_t peak_extra_bytes(F&& f) {
  std::size_t free0 = 0, total = 0;
  check(cudaDeviceSynchronize(), "sync");
  check(cudaMemGetInfo(&free0, &total), "meminfo");
  std::atomic<bool> done{false};
  std::atomic<std::size_t> low{free0};
  std::thread poll([&] {
    int dev = 0;
    cudaGetDevice(&dev);
    cudaSetDevice(dev);
    while (!done) {
      std::size_t fr = 0, tt = 0;
      if (cudaMemGetInfo(&fr, &tt) == cudaSuccess && fr < low) low = fr;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  f();
  check(cudaDeviceSynchronize(), "sync");
  done = true;
  poll.join();
  return free0 - low.load();
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (!rlhf::cuda_available()) {
    std::printf("{\"error\": \"no CUDA device\"}\n");
    return 77;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  emit(std::string("{\"case\": \"device\", \"name\": \"") + prop.name +
       "\", \"sms\": " + std::to_string(prop.multiProcessorCount) +
       ", \"memory_gib\": " + num(static_cast<double>(prop.totalGlobalMem) / (1 << 30)) + "}");

  // 1. device-to-device copy: the bandwidth reference (bytes read + written)
  double copy_gbs = 0;
  {
    const std::size_t bytes = quick ? (std::size_t{256} << 20) : (std::size_t{4} << 30);
    rlhf::device_buffer<char> a(bytes), b(bytes);
    check(cudaMemset(a.data(), 1, bytes), "memset");
    const double ms =
        time_ms([&] { check(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice), "copy"); });
    copy_gbs = 2.0 * static_cast<double>(bytes) / (ms * 1e6);
    emit("{\"case\": \"copy\", \"bytes\": " + std::to_string(bytes) + ", \"ms\": " + num(ms) +
         ", \"gbs\": " + num(copy_gbs) + "}");
  }

  // 2. bf16 GEMM peak (8192^3), the tensor-core reference
  double peak_tflops = 0;
  const rlhf::cublas_handle blas;
  {
    const index_t n = quick ? 2048 : 8192;
    rlhf::device_buffer<bf16> A(static_cast<std::size_t>(n * n)), B(static_cast<std::size_t>(n * n)),
        C(static_cast<std::size_t>(n * n));
    fill(A.data(), A.size(), 1);
    fill(B.data(), B.size(), 2);
    const double ms = time_ms([&] {
      rlhf::cuda_kernels::gemm<bf16, bf16>(blas.get(), "bench", CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, A.data(), n,
                                           B.data(), n, C.data(), n, 0.0);
    });
    peak_tflops = 2.0 * static_cast<double>(n) * n * n / (ms * 1e9);
    emit("{\"case\": \"gemm_bf16\", \"n\": " + std::to_string(n) + ", \"ms\": " + num(ms) +
         ", \"tflops\": " + num(peak_tflops) + "}");
  }

  // 3. fused logits, bf16 [N, V]: forward, backward, fused forward+backward
  {
    const index_t N = quick ? 1024 : 16384, V = 128256;
    const std::size_t n = static_cast<std::size_t>(N * V);
    rlhf::device_buffer<bf16> z(n), dz(n);
    rlhf::device_buffer<long long> labels(static_cast<std::size_t>(N));
    rlhf::device_buffer<float> lp(static_cast<std::size_t>(N)), h(static_cast<std::size_t>(N)),
        g(static_cast<std::size_t>(N));
    rlhf::device_buffer<double> adv(static_cast<std::size_t>(N)), w(static_cast<std::size_t>(N));
    fill(z.data(), n, 3, 2.0f);
    fill(g.data(), static_cast<std::size_t>(N), 4);
    fill_labels<<<256, 256>>>(labels.data(), N, V);
    fill_value<<<64, 256>>>(adv.data(), N, 1.0);
    fill_value<<<64, 256>>>(w.data(), N, 1.0 / static_cast<double>(N));
    const rlhf::device_view<const bf16, 2> zv(z.data(), {N, V});
    const rlhf::device_view<const long long, 1> lv(labels.data(), {N});
    const double bytes = static_cast<double>(n) * sizeof(bf16);
    const double fwd = time_ms([&] {
      rlhf::ops::logprobs_entropy(rlhf::cuda, zv, lv, rlhf::device_view<float, 1>(lp.data(), {N}),
                                  rlhf::device_view<float, 1>(h.data(), {N}));
    });
    const double bwd = time_ms([&] {
      rlhf::ops::logprobs_entropy_backward(rlhf::cuda, zv, lv, rlhf::device_view<const float, 1>(g.data(), {N}),
                                           rlhf::device_view<const float, 1>(g.data(), {N}),
                                           rlhf::device_view<bf16, 2>(dz.data(), {N, V}));
    });
    const double fused = time_ms([&] {
      rlhf::ops::fused_token_objective(rlhf::cuda, zv, lv,
                                       rlhf::ops::pg_entropy_objective<double>{adv.data(), w.data(), 0.01},
                                       rlhf::device_view<bf16, 2>(dz.data(), {N, V}));
    });
    auto line = [&](const char* name, double ms, double moved) {
      emit(std::string("{\"case\": \"") + name + "\", \"N\": " + std::to_string(N) + ", \"V\": " + std::to_string(V) +
           ", \"dtype\": \"bf16\", \"ms\": " + num(ms) + ", \"bytes\": " + num(moved) +
           ", \"gbs\": " + num(moved / (ms * 1e6)) + ", \"of_copy\": " + num(moved / (ms * 1e6) / copy_gbs) + "}");
    };
    const double fused_nocache = time_ms([&] {  // the same without the shared-memory row cache
      rlhf::ops::fused_token_objective(rlhf::cuda.cache_rows(false), zv, lv,
                                       rlhf::ops::pg_entropy_objective<double>{adv.data(), w.data(), 0.01},
                                       rlhf::device_view<bf16, 2>(dz.data(), {N, V}));
    });
    line("logits_fwd", fwd, bytes);      // read the logits once
    line("logits_bwd", bwd, 3 * bytes);  // read twice, write the gradient
    line("logits_fwd_bwd_separate", fwd + bwd, 4 * bytes);
    line("logits_fused_fwd_bwd", fused, 2 * bytes);  // the bytes it must move: read once, write once
    line("logits_fused_fwd_bwd_nocache", fused_nocache, 2 * bytes);
  }

  // 4. [B, T] objectives at B = 256, T = 4096 (float)
  {
    const index_t B = quick ? 64 : 256, T = 4096;
    const std::size_t n = static_cast<std::size_t>(B * T);
    rlhf::device_buffer<float> lp(n), old(n), adv(n), mask(n), dlp(n), vals(n), ret(n), a_out(n), r_out(n);
    fill(lp.data(), n, 5, 0.5f);
    fill(old.data(), n, 6, 0.5f);
    fill(adv.data(), n, 7);
    fill(vals.data(), n, 8);
    fill(ret.data(), n, 9);
    std::vector<float> hm(n, 1.0f);
    mask.copy_from_host(hm.data(), n);
    auto v = [&](const rlhf::device_buffer<float>& x) { return rlhf::device_view<const float, 2>(x.data(), {B, T}); };
    const auto pp = rlhf::ppo::policy_params::verl();
    const double pol = time_ms([&] {
      rlhf::ppo::policy_loss(rlhf::cuda, v(lp), v(old), v(adv), v(mask), pp,
                             rlhf::device_view<float, 2>(dlp.data(), {B, T}));
    });
    const double bytes_pol = 5.0 * static_cast<double>(n) * sizeof(float);  // 4 inputs + the gradient
    // the asynchronous form: queued work only (the scalars stay on the device)
    const double pol_async = time_ms([&] {
      (void)rlhf::ppo::policy_loss_async(rlhf::cuda, v(lp), v(old), v(adv), v(mask), pp,
                                         rlhf::device_view<float, 2>(dlp.data(), {B, T}));
    });
    emit("{\"case\": \"ppo_policy_loss_async\", \"B\": " + std::to_string(B) + ", \"T\": " + std::to_string(T) +
         ", \"dtype\": \"float\", \"ms\": " + num(pol_async) + ", \"bytes\": " + num(bytes_pol) + ", \"gbs\": " +
         num(bytes_pol / (pol_async * 1e6)) + ", \"of_copy\": " + num(bytes_pol / (pol_async * 1e6) / copy_gbs) + "}");
    emit("{\"case\": \"ppo_policy_loss\", \"B\": " + std::to_string(B) + ", \"T\": " + std::to_string(T) +
         ", \"dtype\": \"float\", \"ms\": " + num(pol) + ", \"bytes\": " + num(bytes_pol) + ", \"gbs\": " +
         num(bytes_pol / (pol * 1e6)) + ", \"of_copy\": " + num(bytes_pol / (pol * 1e6) / copy_gbs) + "}");
    const auto vp = rlhf::ppo::value_params::verl(0.2);
    const double vl = time_ms([&] {
      rlhf::ppo::value_loss(rlhf::cuda, v(vals), v(ret), v(old), v(mask), vp,
                            rlhf::device_view<float, 2>(dlp.data(), {B, T}));
    });
    emit("{\"case\": \"ppo_value_loss\", \"B\": " + std::to_string(B) + ", \"T\": " + std::to_string(T) +
         ", \"dtype\": \"float\", \"ms\": " + num(vl) + ", \"bytes\": " + num(bytes_pol) + ", \"gbs\": " +
         num(bytes_pol / (vl * 1e6)) + ", \"of_copy\": " + num(bytes_pol / (vl * 1e6) / copy_gbs) + "}");
    const double gae = time_ms([&] {
      rlhf::adv::gae(rlhf::cuda, v(ret), v(vals), v(mask), rlhf::adv::gae_params{1.0, 0.95, true},
                     rlhf::adv::dev_outputs<float>{rlhf::device_view<float, 2>(a_out.data(), {B, T}),
                                                   rlhf::device_view<float, 2>(r_out.data(), {B, T})});
    });
    const double bytes_gae = 5.0 * static_cast<double>(n) * sizeof(float);
    emit("{\"case\": \"gae_whitened\", \"B\": " + std::to_string(B) + ", \"T\": " + std::to_string(T) +
         ", \"dtype\": \"float\", \"ms\": " + num(gae) + ", \"bytes\": " + num(bytes_gae) + ", \"gbs\": " +
         num(bytes_gae / (gae * 1e6)) + ", \"of_copy\": " + num(bytes_gae / (gae * 1e6) / copy_gbs) + "}");
  }

  // 5. fused linear: hidden [N, H] x weight [V, H], bf16, dweight in float
  {
    const index_t N = quick ? 2048 : 16384, H = quick ? 1024 : 4096, V = 128256;
    rlhf::device_buffer<bf16> x(static_cast<std::size_t>(N * H)), wt(static_cast<std::size_t>(V * H)),
        dx(static_cast<std::size_t>(N * H));
    rlhf::device_buffer<float> dw(static_cast<std::size_t>(V * H));
    rlhf::device_buffer<long long> labels(static_cast<std::size_t>(N));
    rlhf::device_buffer<double> adv(static_cast<std::size_t>(N)), w(static_cast<std::size_t>(N));
    fill(x.data(), x.size(), 10);
    fill(wt.data(), wt.size(), 11, 0.02f);
    fill_labels<<<256, 256>>>(labels.data(), N, V);
    fill_value<<<64, 256>>>(adv.data(), N, -1.0);  // -(1/N) sum logp: the cross-entropy, as Liger and CCE compute
    fill_value<<<64, 256>>>(w.data(), N, 1.0 / static_cast<double>(N));
    for (index_t chunk : {index_t{1024}, index_t{2048}, index_t{4096}}) {
      if (chunk > N) continue;
      rlhf::ops::fused_linear_params p;
      p.chunk_rows = chunk;
      auto run = [&] {
        rlhf::ops::fused_linear_objective(
            rlhf::cuda.with(blas.get()), rlhf::device_view<const bf16, 2>(x.data(), {N, H}),
            rlhf::device_view<const bf16, 2>(wt.data(), {V, H}),
            rlhf::device_view<const long long, 1>(labels.data(), {N}),
            rlhf::ops::pg_entropy_objective<double>{adv.data(), w.data(), 0.0},
            rlhf::device_view<bf16, 2>(dx.data(), {N, H}), rlhf::device_view<float, 2>(dw.data(), {V, H}),
            rlhf::device_view<float, 1>{}, rlhf::device_view<float, 1>{}, p);
      };
      const double ms = time_ms(run, 2, 5);
      const std::size_t extra = peak_extra_bytes(run);
      const double outputs = static_cast<double>(N * H) * sizeof(bf16) + static_cast<double>(V * H) * sizeof(float);
      const double tflops = 6.0 * static_cast<double>(N) * H * V / (ms * 1e9);
      emit("{\"case\": \"fused_linear\", \"N\": " + std::to_string(N) + ", \"H\": " + std::to_string(H) +
           ", \"V\": " + std::to_string(V) + ", \"chunk\": " + std::to_string(chunk) +
           ", \"dtype\": \"bf16 (dW float)\", \"ms\": " + num(ms) + ", \"tflops\": " + num(tflops) +
           ", \"of_gemm_peak\": " + num(tflops / peak_tflops) + ", \"peak_extra_mib\": " +
           num(static_cast<double>(extra) / (1 << 20)) + ", \"outputs_mib\": " + num(outputs / (1 << 20)) +
           ", \"memory_ratio\": " + num((outputs + static_cast<double>(extra)) / outputs) + "}");
    }
  }
  return 0;
}
