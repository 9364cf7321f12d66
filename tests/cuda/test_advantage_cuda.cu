// The device advantage estimators against the CPU backend on random inputs:
// GAE (whitened or not, masked observation tokens), REINFORCE++ (and with a
// group baseline), GRPO (Dr. GRPO too, groups of one), pass@k, RLOO (both
// singleton rules), OPO, GPG, ReMax; float and double; odd shapes. Exits 77 (ctest: skipped) without a GPU.
#include <rlhf/backend/cuda/advantage.cuh>

#include "cuda_test.hpp"

using namespace cuda_test;
namespace adv = rlhf::adv;

namespace {

template <class T>
void estimators(index_t B, index_t T_, unsigned seed) {
  const std::string tag =
      std::string(sizeof(T) == 8 ? "double" : "float") + " " + std::to_string(B) + "x" + std::to_string(T_) + " ";
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
  adv::opo(rlhf::cpu, r.hc(), m.hc(), h_idx, cpu_out());
  adv::opo(rlhf::cuda, r.dc(), m.dc(), d_idx, dev_out());
  both("opo");
  adv::gpg(rlhf::cpu, r.hc(), m.hc(), h_idx, adv::gpg_params{1.5}, cpu_out());
  adv::gpg(rlhf::cuda, r.dc(), m.dc(), d_idx, adv::gpg_params{1.5}, dev_out());
  both("gpg");
  adv::reinforce_pp_baseline(rlhf::cpu, r.hc(), m.hc(), h_idx, rlhf::whiten_params::verl(), cpu_out());
  adv::reinforce_pp_baseline(rlhf::cuda, r.dc(), m.dc(), d_idx, rlhf::whiten_params::verl(), dev_out());
  both("reinforce_pp_baseline");
  {
    std::vector<T> base(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b) base[static_cast<std::size_t>(b)] = static_cast<T>(0.1 * b);
    rlhf::device_buffer<T> d_base(base.size());
    d_base.copy_from_host(base.data(), base.size());
    adv::remax(rlhf::cpu, r.hc(), rlhf::tensor_view<const T, 1>(base.data(), {B}), m.hc(), cpu_out());
    adv::remax(rlhf::cuda, r.dc(), rlhf::device_view<const T, 1>(d_base.data(), {B}), m.dc(), dev_out());
    both("remax");
  }
  {  // pass@k needs groups of at least 2: pairs of rows
    std::vector<long long> pairs(static_cast<std::size_t>(B - B % 2));
    for (std::size_t b = 0; b < pairs.size(); ++b) pairs[b] = static_cast<long long>(b / 2);
    const index_t Bp = static_cast<index_t>(pairs.size());
    rlhf::device_buffer<long long> d_pairs(pairs.size());
    d_pairs.copy_from_host(pairs.data(), pairs.size());
    pair2<T> ap(Bp, T_), rp(Bp, T_);
    const rlhf::tensor_view<const T, 2> rh(r.h.data(), {Bp, T_}), mh(m.h.data(), {Bp, T_});
    const rlhf::device_view<const T, 2> rd(r.d.data(), {Bp, T_}), md(m.d.data(), {Bp, T_});
    adv::grpo_passk(rlhf::cpu, rh, mh, rlhf::tensor_view<const long long, 1>(pairs.data(), {Bp}),
                    adv::grpo_params::verl(), adv::outputs<T>{ap.hv(), rp.hv()});
    adv::grpo_passk(rlhf::cuda, rd, md, rlhf::device_view<const long long, 1>(d_pairs.data(), {Bp}),
                    adv::grpo_params::verl(), adv::dev_outputs<T>{ap.dv(), rp.dv()});
    check_all(tag + "passk advantages", ap.download(), ap.h, rt, at);
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
    if (full_size()) estimators<double>(256, 1024, 3);
  });
}
