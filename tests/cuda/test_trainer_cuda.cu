// The trainers on the device: rl_trainer and dpo_trainer with the backend
// rlhf::cuda (every [B, T] buffer and op on the GPU) against the same runs
// on rlhf::cpu, step by step, for the three model paths (log-probs through
// a forward handle, logits, hidden states + LM head), in double and float.
// The CPU reference of the hidden-state path is the logits path (same weights).
// The device models are the host test models (tests/unit/linear_lm.hpp)
// behind a wrapper whose outputs are device tensors and whose backwards take
// device gradients, as a CUDA engine's would. Exits 77 (skipped) without a GPU.
#include <rlhf/backend/cuda/train.cuh>  // first: the device ops, then the trainers

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../unit/linear_lm.hpp"
#include "device_models.hpp"
#include "lockstep.hpp"

namespace {

using lin::kind;
using rlhf::index_t;
namespace tr = rlhf::train;
using device_test::check;
using device_test::same_record;

/// A float logits model whose device logits are 16-bit (half or bfloat16),
/// as a mixed-precision engine's: the trainer processes them in their own
/// type (float accumulation) and hands back 16-bit gradients.
template <class H>
class low_precision_logits {
 public:
  using batch = rlhf::basic_batch<std::int32_t>;
  lin::model<float, kind::logits> m;
  explicit low_precision_logits(unsigned seed) : m(seed) {}
  auto generate(const rlhf::prompt_batch& x, const rlhf::sampling& s, rlhf::rng_t& g) const {
    return m.generate(x, s, g);
  }
  void step() { m.step(); }
  const rlhf::device_tensor<H, 2>& logits(const batch& b) {
    const auto z = m.logits(b);
    std::vector<H> h(static_cast<std::size_t>(z.size()));
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = H(z.data()[i]);
    z_.resize(z.shape());
    rlhf::detail::check_cuda(cudaMemcpy(z_.data(), h.data(), h.size() * sizeof(H), cudaMemcpyHostToDevice), "test",
                             "upload");
    return z_;
  }
  void backward_logits(const batch& b, rlhf::tensor_view<const H, 2, rlhf::device_space> dz) {
    std::vector<H> h(static_cast<std::size_t>(dz.size()));
    rlhf::detail::check_cuda(cudaDeviceSynchronize(), "test", "synchronize");
    rlhf::detail::check_cuda(cudaMemcpy(h.data(), dz.data(), h.size() * sizeof(H), cudaMemcpyDeviceToHost), "test",
                             "download");
    rlhf::tensor<float, 2> f(dz.shape());
    for (std::size_t i = 0; i < h.size(); ++i) f.data()[i] = static_cast<float>(h[i]);
    m.backward_logits(b, f.view());
  }

 private:
  rlhf::device_tensor<H, 2> z_;
};

template <class F>
using grpo_loss = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::loss,
                                   tr::advantage_estimator::grpo, rlhf::agg_mode::seq_mean_token_mean, F>;
template <class F>
using rpp_reward = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::reward,
                                    tr::advantage_estimator::reinforce_pp, rlhf::agg_mode::token_mean, F>;

/// A structure on the device: the host one plus the backend tag.
template <class S>
struct on_cuda : S {
  static constexpr auto backend = rlhf::cuda;
};

std::vector<std::vector<std::int32_t>> prompts() { return {{1}, {2, 4}, {5}, {3, 1, 2}}; }

tr::rl_options rl_opts(bool entropy) {
  tr::rl_options o;
  o.steps = 4;
  o.prompts_per_step = 4;
  o.group_size = 4;
  o.ppo_epochs = 2;
  o.minibatch_size = 8;
  o.kl_coef = 0.05;
  o.entropy_coef = entropy ? 0.01 : 0.0;
  o.sample.temperature = 0.8;
  o.sample.max_new_tokens = 4;
  o.progress = false;
  o.seed = 3;
  return o;
}

template <class F>
void same_weights(const lin::params<F>& a, const lin::params<F>& b, double rel, const std::string& what) {
  double worst = 0;
  for (auto [x, y] : {std::pair{&a.E, &b.E}, std::pair{&a.P, &b.P}, std::pair{&a.W, &b.W}})
    for (std::size_t i = 0; i < x->size(); ++i)
      worst = std::fmax(worst, std::fabs(static_cast<double>((*x)[i]) - static_cast<double>((*y)[i])));
  if (!(worst <= rel)) std::printf("  %s: weights differ by %.3g\n", what.c_str(), worst);
  check(worst <= rel, what + ": the same weights");
}

/// The CPU reference of a device model path: the same path, except that the
/// hidden-state path is checked against the logits path of the same weights
/// (the CPU's fused linear path needs Eigen, which the GPU machine lacks; the
/// unit tests show the two CPU paths agree).
template <kind K>
inline constexpr kind cpu_kind = K == kind::hidden ? kind::logits : K;

template <class S, class F, kind K>
void rl_case(const std::string& name, double rel) {
  using M = lin::model<F, cpu_kind<K>>;
  using D = device_test::device_model<lin::model<F, K>>;
  M pi(1), ref(1);
  D dpi(1), dref(1);
  lin::reward rm;
  const auto o = rl_opts(K != kind::log_probs);
  tr::rl_trainer<S, M, M, lin::reward> cpu(pi, ref, rm, prompts(), o);
  tr::rl_trainer<on_cuda<S>, D, D, lin::reward> gpu(dpi, dref, rm, prompts(), o);
  static_assert(std::is_same_v<typename decltype(gpu)::space_type, rlhf::device_space>);
  for (int s = 0; s < o.steps; ++s) {
    const auto a = cpu.step();
    const auto b = gpu.step();
    same_record(a, b, rel, name + " step " + std::to_string(s + 1));
  }
  same_weights(pi.parameters(), dpi.m.parameters(), rel, name);
  // the model's own type: nothing converted at the boundary (the wrapper's copies are its own)
  check(gpu.profile().boundary_bytes == 0, name + ": no boundary conversion on the device");
}

/// 16-bit device logits against the float CPU run (loose: the logits are rounded).
template <class H>
void low_precision_case(const std::string& name, double rel) {
  using M = lin::model<float, kind::logits>;
  using D = low_precision_logits<H>;
  using S = grpo_loss<float>;
  M pi(1), ref(1);
  D dpi(1), dref(1);
  lin::reward rm;
  auto o = rl_opts(true);
  o.steps = 2;
  tr::rl_trainer<S, M, M, lin::reward> cpu(pi, ref, rm, prompts(), o);
  tr::rl_trainer<on_cuda<S>, D, D, lin::reward> gpu(dpi, dref, rm, prompts(), o);
  for (int s = 0; s < o.steps; ++s) same_record(cpu.step(), gpu.step(), rel, name + " step " + std::to_string(s + 1));
  same_weights(pi.parameters(), dpi.m.parameters(), rel, name);
}

template <class F, kind K>
void dpo_case(const std::string& name, double rel) {
  using M = lin::model<F, cpu_kind<K>>;
  using D = device_test::device_model<lin::model<F, K>>;
  std::vector<tr::preference> data;
  for (int i = 0; i < 20; ++i) data.push_back({{1 + i % 5}, {3, i % 2 ? 3 : 0}, {1 + i % 4, 0}});
  tr::dpo_options o;
  o.steps = 3;
  o.batch_size = 8;
  o.progress = false;
  o.seed = 4;
  M pi(2), ref(2);
  D dpi(2), dref(2);
  using S = tr::dpo_structure<rlhf::kl_estimator::k1, F>;
  tr::dpo_trainer<M, M, S> cpu(pi, ref, data, o);
  tr::dpo_trainer<D, D, on_cuda<S>> gpu(dpi, dref, data, o);
  for (int s = 0; s < o.steps; ++s) same_record(cpu.step(), gpu.step(), rel, name + " step " + std::to_string(s + 1));
  same_weights(pi.parameters(), dpi.m.parameters(), rel, name);
}

}  // namespace

int main() {
  if (!rlhf::cuda_available()) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  try {
    rl_case<grpo_loss<double>, double, kind::log_probs>("ppo/grpo/kl-in-loss double log_probs", 1e-9);
    rl_case<grpo_loss<double>, double, kind::logits>("ppo/grpo/kl-in-loss double logits", 1e-9);
    rl_case<grpo_loss<double>, double, kind::hidden>("ppo/grpo/kl-in-loss double hidden", 1e-9);
    rl_case<rpp_reward<double>, double, kind::logits>("ppo/reinforce++/kl-in-reward double logits", 1e-9);
    rl_case<grpo_loss<float>, float, kind::log_probs>("ppo/grpo/kl-in-loss float log_probs", 2e-4);
    rl_case<grpo_loss<float>, float, kind::logits>("ppo/grpo/kl-in-loss float logits", 2e-4);
    rl_case<grpo_loss<float>, float, kind::hidden>("ppo/grpo/kl-in-loss float hidden", 2e-4);
    low_precision_case<__half>("ppo/grpo half logits", 3e-2);
    low_precision_case<__nv_bfloat16>("ppo/grpo bfloat16 logits", 6e-2);
    dpo_case<double, kind::log_probs>("dpo double log_probs", 1e-9);
    dpo_case<double, kind::logits>("dpo double logits", 1e-9);
    dpo_case<float, kind::hidden>("dpo float hidden", 2e-4);
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    ++device_test::failures;
  }
  return device_test::report();
}
