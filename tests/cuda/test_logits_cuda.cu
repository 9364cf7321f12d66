// The device logits ops against the CPU backend: log-probs, entropy and
// log-sum-exp; their backward (also in place); the fused token objective —
// in float and double (aligned rows and odd V with a padded row stride), and
// in half and bfloat16 against the CPU on the same rounded values. Exits 77
// (ctest: skipped) without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <rlhf/backend/cuda/logits.cuh>
#include <rlhf/objectives/fused.hpp>

#include "cuda_test.hpp"

using namespace cuda_test;
namespace ops = rlhf::ops;

namespace {

/// T: the device logits type; R: the CPU reference type (double for double, float otherwise).
template <class T>
void logits_case(index_t N, index_t V, index_t pad, unsigned seed, double tau) {
  using R = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const index_t S = V + pad;  // row stride
  const std::string tag = std::string(std::is_same_v<T, double>   ? "double"
                                      : std::is_same_v<T, float>  ? "float"
                                      : std::is_same_v<T, __half> ? "half"
                                                                  : "bf16") +
                          " " + std::to_string(N) + "x" + std::to_string(V) + "+" + std::to_string(pad) + " tau " +
                          std::to_string(tau) + " ";
  const bool low = !std::is_same_v<T, double> && !std::is_same_v<T, float>;
  const double rt = std::is_same_v<T, double> ? 1e-10 : low ? 2e-3 : 1e-4;
  const double at = std::is_same_v<T, double> ? 1e-12 : low ? 1e-5 : 1e-6;
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(0.0, 3.0);
  std::vector<T> x(static_cast<std::size_t>(N * S));
  std::vector<R> xr(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = from_float<T>(static_cast<float>(nd(g)));
    if constexpr (std::is_same_v<T, double>) {
      x[i] = nd(g);
      xr[i] = x[i];
    } else {
      xr[i] = as_float(x[i]);
    }
  }
  std::vector<long long> labels(static_cast<std::size_t>(N));
  for (auto& l : labels) l = static_cast<long long>(g() % static_cast<unsigned>(V));
  pair1<T> dx(x);
  pair1<long long> dl(labels);
  const rlhf::tensor_view<const R, 2> hx(xr.data(), {N, V}, {S, 1});
  const rlhf::tensor_view<const long long, 1> hl(labels.data(), {N});
  const rlhf::device_view<const T, 2> vx(dx.d.data(), {N, V}, {S, 1});
  const rlhf::device_view<const long long, 1> vl(dl.d.data(), {N});
  const ops::logits_params p{tau};

  // forward
  using O = std::conditional_t<std::is_same_v<T, double>, double, float>;
  std::vector<R> lp(static_cast<std::size_t>(N)), h(lp.size()), lse(lp.size());
  ops::logprobs_entropy(rlhf::cpu, hx, hl, rlhf::tensor_view<R, 1>(lp.data(), {N}),
                        rlhf::tensor_view<R, 1>(h.data(), {N}), rlhf::tensor_view<R, 1>(lse.data(), {N}), p);
  pair1<O> dlp(std::vector<O>(lp.size())), dh(std::vector<O>(lp.size())), dlse(std::vector<O>(lp.size()));
  ops::logprobs_entropy(rlhf::cuda, vx, vl, rlhf::device_view<O, 1>(dlp.d.data(), {N}),
                        rlhf::device_view<O, 1>(dh.d.data(), {N}), rlhf::device_view<O, 1>(dlse.d.data(), {N}), p);
  const auto a = dlp.read(), b = dh.read(), c = dlse.read();
  for (index_t i = 0; i < N; ++i) {
    check(tag + "logp", a[i], lp[i], rt, at * 10);
    check(tag + "entropy", b[i], h[i], rt, at * 10);
    check(tag + "lse", c[i], lse[i], rt, at * 10);
  }

  // backward from both upstreams
  std::vector<R> glp(lp.size()), gh(lp.size());
  for (index_t i = 0; i < N; ++i) {
    glp[i] = static_cast<R>(nd(g));
    gh[i] = static_cast<R>(nd(g) * 0.1);
  }
  std::vector<R> dref(static_cast<std::size_t>(N * V));
  ops::logprobs_entropy_backward(rlhf::cpu, hx, hl, rlhf::tensor_view<const R, 1>(glp.data(), {N}),
                                 rlhf::tensor_view<const R, 1>(gh.data(), {N}),
                                 rlhf::tensor_view<R, 2>(dref.data(), {N, V}), p);
  std::vector<O> glpo(glp.begin(), glp.end()), gho(gh.begin(), gh.end());
  pair1<O> dglp(glpo), dgh(gho);
  pair1<T> dd(std::vector<T>(x.size()));
  const rlhf::device_view<T, 2> vd(dd.d.data(), {N, V}, {S, 1});
  ops::logprobs_entropy_backward(rlhf::cuda, vx, vl, rlhf::device_view<const O, 1>(dglp.d.data(), {N}),
                                 rlhf::device_view<const O, 1>(dgh.d.data(), {N}), vd, p);
  const auto grad = dd.read();
  // gradients are compared on the scale of the row's largest one (bf16 rounds them to 2^-8)
  for (index_t i = 0; i < N; ++i) {
    double scale = 0;
    for (index_t j = 0; j < V; ++j) scale = std::fmax(scale, std::fabs(static_cast<double>(dref[i * V + j])));
    for (index_t j = 0; j < V; ++j) {
      const double dv = as_float(grad[static_cast<std::size_t>(i * S + j)]),
                   cv = dref[static_cast<std::size_t>(i * V + j)];
      if (!near(dv, cv, 0, (low ? 8e-3 : std::is_same_v<T, float> ? 1e-5 : 1e-12) * (scale + 1e-30))) {
        std::printf("FAIL %sdlogits [%lld, %lld]: device %.9g cpu %.9g (row scale %.3g)\n", tag.c_str(),
                    static_cast<long long>(i), static_cast<long long>(j), dv, cv, scale);
        ++failures;
        i = N;
        break;
      }
    }
  }

  // in place: the gradient overwrites the logits
  pair1<T> dx2(x);
  const rlhf::device_view<T, 2> vx2(dx2.d.data(), {N, V}, {S, 1});
  ops::logprobs_entropy_backward(rlhf::cuda, vx2, vl, rlhf::device_view<const O, 1>(dglp.d.data(), {N}),
                                 rlhf::device_view<const O, 1>(dgh.d.data(), {N}), vx2, p);
  const auto inplace = dx2.read();
  for (index_t i = 0; i < N; ++i)
    for (index_t j = 0; j < V; ++j)
      if (as_float(inplace[static_cast<std::size_t>(i * S + j)]) !=
          as_float(grad[static_cast<std::size_t>(i * S + j)])) {
        std::printf("FAIL %sin-place backward differs at [%lld, %lld]\n", tag.c_str(), static_cast<long long>(i),
                    static_cast<long long>(j));
        ++failures;
        i = N;
        break;
      }

  // fused token objective: -w (A logp + c H)
  std::vector<R> adv(lp.size()), w(lp.size(), R(1.0 / N));
  for (auto& v : adv) v = static_cast<R>(nd(g));
  std::vector<R> fref(static_cast<std::size_t>(N * V));
  const double cpu_loss =
      ops::fused_token_objective(rlhf::cpu, hx, hl, ops::pg_entropy_objective<R>{adv.data(), w.data(), 0.01},
                                 rlhf::tensor_view<R, 2>(fref.data(), {N, V}));
  pair1<R> dadv(adv), dw(w);
  pair1<T> df(std::vector<T>(x.size()));
  const double dev_loss =
      ops::fused_token_objective(rlhf::cuda, vx, vl, ops::pg_entropy_objective<R>{dadv.d.data(), dw.d.data(), 0.01},
                                 rlhf::device_view<T, 2>(df.d.data(), {N, V}, {S, 1}));
  check(tag + "fused loss", dev_loss, cpu_loss, rt, at * 10);
  const auto fg = df.read();
  double fscale = 0;
  for (auto v : fref) fscale = std::fmax(fscale, std::fabs(static_cast<double>(v)));
  for (index_t i = 0; i < N; ++i)
    for (index_t j = 0; j < V; ++j) {
      const double dv = as_float(fg[static_cast<std::size_t>(i * S + j)]),
                   cv = fref[static_cast<std::size_t>(i * V + j)];
      if (!near(dv, cv, 0, (low ? 8e-3 : std::is_same_v<T, float> ? 1e-5 : 1e-12) * fscale)) {
        std::printf("FAIL %sfused dlogits [%lld, %lld]: device %.9g cpu %.9g\n", tag.c_str(), static_cast<long long>(i),
                    static_cast<long long>(j), dv, cv);
        ++failures;
        i = N;
        break;
      }
    }
}

}  // namespace

int main() {
  return run([] {
    logits_case<double>(7, 1000, 0, 1, 1.0);
    logits_case<double>(5, 3001, 3, 2, 0.7);  // odd V, padded rows: the scalar path
    if (full_size()) logits_case<float>(37, 32000, 0, 3, 1.0);
    logits_case<float>(9, 32003, 5, 4, 1.3);
    logits_case<__half>(16, 32000, 0, 5, 1.0);
    if (full_size()) logits_case<__nv_bfloat16>(16, 128256, 0, 6, 1.0);
    logits_case<__nv_bfloat16>(6, 1001, 7, 7, 0.9);
  });
}
