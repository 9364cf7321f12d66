// The device advantage estimators against the CPU backend on random inputs:
// GAE (whitened or not, masked observation tokens), REINFORCE++, GRPO
// (Dr. GRPO too, groups of one, all-equal groups), RLOO (both singleton
// rules); float and double; odd shapes. Exits 77 (ctest: skipped) without a GPU.
#include <rlhf/backend/cuda/advantage.cuh>

#include "cuda_test.hpp"

using namespace cuda_test;
namespace adv = rlhf::adv;

namespace {

template <class T>
void estimators(index_t B, index_t T_, unsigned seed) {
  const std::string tag = std::string(sizeof(T) == 8 ? "double" : "float") + " " + std::to_string(B) + "x" +
                          std::to_string(T_) + " ";
  const double rt = sizeof(T) == 8 ? 1e-10 : 2e-4, at = sizeof(T) == 8 ? 1e-12 : 2e-5;
  auto r = normal<T>(B, T_, seed), v = normal<T>(B, T_, seed + 1);
  auto m = ragged_mask<T>(B, T_);
  pair2<T> a(B, T_), ret(B, T_);
  auto both = [&](const std::string& name) {
    check_all(tag + name + " advantages", a.download(), a.h, rt, at);
    check_all(tag + name + " returns", ret.download(), ret.h, rt, at);
  };
  auto dev_out = [&] { return adv::dev_outputs<T>{a.dv(), ret.dv()}; };
  auto cpu_out = [&] { return adv::outputs<T>{a.hv(), ret.hv()}; };

  for (bool whiten : {false, true}) {
    adv::gae_params gp{0.99, 0.95, whiten};
    adv::gae(rlhf::cpu, r.hc(), v.hc(), m.hc(), gp, cpu_out());
    adv::gae(rlhf::cuda, r.dc(), v.dc(), m.dc(), gp, dev_out());
    both(whiten ? "gae (whitened)" : "gae");
  }
  adv::reinforce_pp(rlhf::cpu, r.hc(), m.hc(), adv::reinforce_pp_params{0.99}, cpu_out());
  adv::reinforce_pp(rlhf::cuda, r.dc(), m.dc(), adv::reinforce_pp_params{0.99}, dev_out());
  both("reinforce_pp");

  // groups of 4 under scattered ids, the last response alone in its group
  std::vector<long long> ids(static_cast<std::size_t>(B));
  for (index_t b = 0; b < B; ++b) ids[static_cast<std::size_t>(b)] = b == B - 1 ? 1000 : (b / 4) * 7 % 5;
  rlhf::device_buffer<long long> d_ids(ids.size());
  d_ids.copy_from_host(ids.data(), ids.size());
  const rlhf::tensor_view<const long long, 1> h_idx(ids.data(), {B});
  const rlhf::device_view<const long long, 1> d_idx(d_ids.data(), {B});
  for (bool norm : {true, false}) {
    const auto gp = adv::grpo_params::verl(norm);
    adv::grpo(rlhf::cpu, r.hc(), m.hc(), h_idx, gp, cpu_out());
    adv::grpo(rlhf::cuda, r.dc(), m.dc(), d_idx, gp, dev_out());
    both(norm ? "grpo" : "dr_grpo");
  }
  for (bool keep : {true, false}) {
    adv::rloo(rlhf::cpu, r.hc(), m.hc(), h_idx, adv::rloo_params{keep}, cpu_out());
    adv::rloo(rlhf::cuda, r.dc(), m.dc(), d_idx, adv::rloo_params{keep}, dev_out());
    both(keep ? "rloo" : "rloo_vectorized");
  }
}

}  // namespace

int main() {
  return run([] {
    estimators<double>(9, 17, 1);
    estimators<float>(33, 2100, 2);
    estimators<double>(256, 1024, 3);
  });
}
