// The device fused linear path (cuBLAS chunks + the fused logits objective)
// against a CPU reference built from plain loops and the CPU fused token
// objective: float with several chunk sizes (a partial last chunk), double,
// and bfloat16 inputs with float gradients. Exits 77 (ctest: skipped)
// without a GPU.
#include <cuda_bf16.h>

#include <rlhf/backend/cuda/fused_linear.cuh>
#include <rlhf/objectives/fused.hpp>

#include "cuda_test.hpp"

using namespace cuda_test;
namespace ops = rlhf::ops;

namespace {

/// T: device inputs; D: device gradients.
template <class T, class D>
void fused_linear_case(index_t N, index_t H, index_t V, index_t chunk, unsigned seed) {
  const std::string tag = std::string(std::is_same_v<T, double>  ? "double"
                                      : std::is_same_v<T, float> ? "float"
                                                                 : "bf16") +
                          " N " + std::to_string(N) + " H " + std::to_string(H) + " V " + std::to_string(V) +
                          " chunk " + std::to_string(chunk) + " ";
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<T> x(static_cast<std::size_t>(N * H)), w(static_cast<std::size_t>(V * H));
  std::vector<double> xd(x.size()), wd(w.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<T>(static_cast<float>(nd(g)));
    xd[i] = as_float(x[i]);
  }
  for (std::size_t i = 0; i < w.size(); ++i) {
    w[i] = static_cast<T>(static_cast<float>(nd(g) * 0.3));
    wd[i] = as_float(w[i]);
  }
  std::vector<long long> labels(static_cast<std::size_t>(N));
  for (auto& l : labels) l = static_cast<long long>(g() % static_cast<unsigned>(V));
  std::vector<double> adv(static_cast<std::size_t>(N)), wt(static_cast<std::size_t>(N), 1.0 / N);
  for (auto& a : adv) a = nd(g);

  // reference: Z = X W^T, the CPU objective in place, dX = dZ W, dW = dZ^T X (double)
  std::vector<double> z(static_cast<std::size_t>(N * V), 0.0), dx(x.size(), 0.0), dw(w.size(), 0.0);
  for (index_t i = 0; i < N; ++i)
    for (index_t v = 0; v < V; ++v) {
      double s = 0;
      for (index_t k = 0; k < H; ++k) s += xd[i * H + k] * wd[v * H + k];
      z[i * V + v] = s;
    }
  rlhf::tensor_view<double, 2> zv(z.data(), {N, V});
  const double ref_loss = ops::fused_token_objective(
      rlhf::cpu, rlhf::tensor_view<const double, 2>(zv), rlhf::tensor_view<const long long, 1>(labels.data(), {N}),
      ops::pg_entropy_objective<double>{adv.data(), wt.data(), 0.01}, zv);
  for (index_t i = 0; i < N; ++i)
    for (index_t v = 0; v < V; ++v) {
      const double d = z[i * V + v];
      for (index_t k = 0; k < H; ++k) {
        dx[i * H + k] += d * wd[v * H + k];
        dw[v * H + k] += d * xd[i * H + k];
      }
    }

  rlhf::device_buffer<T> d_x(x.size()), d_w(w.size());
  d_x.copy_from_host(x.data(), x.size());
  d_w.copy_from_host(w.data(), w.size());
  rlhf::device_buffer<long long> d_l(labels.size());
  d_l.copy_from_host(labels.data(), labels.size());
  rlhf::device_buffer<double> d_adv(adv.size()), d_wt(wt.size());
  d_adv.copy_from_host(adv.data(), adv.size());
  d_wt.copy_from_host(wt.data(), wt.size());
  rlhf::device_buffer<D> d_dx(x.size()), d_dw(w.size());
  const rlhf::cublas_handle blas;
  ops::fused_linear_params p;
  p.chunk_rows = chunk;
  const auto r = ops::fused_linear_objective(
      rlhf::cuda.with(blas.get()), rlhf::device_view<const T, 2>(d_x.data(), {N, H}),
      rlhf::device_view<const T, 2>(d_w.data(), {V, H}), rlhf::device_view<const long long, 1>(d_l.data(), {N}),
      ops::pg_entropy_objective<double>{d_adv.data(), d_wt.data(), 0.01}, rlhf::device_view<D, 2>(d_dx.data(), {N, H}),
      rlhf::device_view<D, 2>(d_dw.data(), {V, H}), rlhf::device_view<float, 1>{}, rlhf::device_view<float, 1>{}, p);
  rlhf::detail::check_cuda(cudaDeviceSynchronize(), "test", "synchronize");
  if (r.chunk_rows != std::min(chunk, N)) {
    std::printf("FAIL %schunk rows %lld\n", tag.c_str(), static_cast<long long>(r.chunk_rows));
    ++failures;
  }
  const bool low = std::is_same_v<T, __nv_bfloat16>;
  const double rt = std::is_same_v<T, double> ? 1e-10 : low ? 2e-2 : 1e-4;
  check(tag + "loss", r.loss, ref_loss, rt, 1e-6);
  std::vector<D> gx(x.size()), gw(w.size());
  d_dx.copy_to_host(gx.data(), gx.size());
  d_dw.copy_to_host(gw.data(), gw.size());
  auto compare = [&](const char* name, const std::vector<D>& got, const std::vector<double>& want) {
    double scale = 0;
    for (double v : want) scale = std::fmax(scale, std::fabs(v));
    for (std::size_t i = 0; i < want.size(); ++i)
      if (!near(as_float(got[i]), want[i], 0, rt * scale + 1e-12)) {
        std::printf("FAIL %s%s[%zu]: device %.9g reference %.9g (scale %.3g)\n", tag.c_str(), name, i,
                    static_cast<double>(as_float(got[i])), want[i], scale);
        ++failures;
        return;
      }
  };
  compare("dhidden", gx, dx);
  compare("dweight", gw, dw);
}

}  // namespace

int main() {
  return run([] {
    fused_linear_case<float, float>(64, 32, 1000, 24, 1);
    fused_linear_case<float, float>(64, 32, 1000, 64, 2);
    fused_linear_case<double, double>(40, 16, 777, 16, 3);
    fused_linear_case<__nv_bfloat16, float>(96, 64, 4096, 32, 4);
  });
}
