// The device DPO family against the CPU backend: every loss type with TRL
// 0.28 and TRL 1.x semantics (length-normalized ipo / sigmoid_norm), the
// f-divergence scores, a weighted combination, aot (staged through the
// host); float and double. Exits 77 (ctest: skipped) without a GPU.
#include <rlhf/backend/cuda/dpo.cuh>

#include "cuda_test.hpp"

using namespace cuda_test;
namespace dpo = rlhf::dpo;

namespace {

template <class T>
pair1<T> vec1(index_t n, unsigned seed, double mu, double sd) {
  std::mt19937 g(seed);
  std::normal_distribution<double> nd(mu, sd);
  std::vector<T> h(static_cast<std::size_t>(n));
  for (auto& x : h) x = static_cast<T>(nd(g));
  return pair1<T>(std::move(h));
}

template <class T>
void family(index_t B, unsigned seed) {
  const std::string tag = std::string(sizeof(T) == 8 ? "double " : "float ") + std::to_string(B) + " ";
  const double rt = sizeof(T) == 8 ? 1e-10 : 1e-4, at = sizeof(T) == 8 ? 1e-12 : 1e-6;
  auto c = vec1<T>(B, seed, -40, 5), r = vec1<T>(B, seed + 1, -42, 5), rc = vec1<T>(B, seed + 2, -41, 5),
       rr = vec1<T>(B, seed + 3, -41, 5), lc = vec1<T>(B, seed + 4, 30, 5), lr = vec1<T>(B, seed + 5, 30, 5);
  auto run = [&](const std::string& name, std::span<const dpo::weighted> terms) {
    auto l = vec1<T>(B, 0, 0, 1), cw = vec1<T>(B, 0, 0, 1), rw = vec1<T>(B, 0, 0, 1), dc = vec1<T>(B, 0, 0, 1),
         dr = vec1<T>(B, 0, 0, 1);
    const auto cpu = dpo::weighted_loss(rlhf::cpu, c.hc(), r.hc(), rc.hc(), rr.hc(), terms,
                                        dpo::outputs<T>{l.hv(), cw.hv(), rw.hv(), dc.hv(), dr.hv()}, lc.hc(), lr.hc());
    const auto dev =
        dpo::weighted_loss(rlhf::cuda, c.dc(), r.dc(), rc.dc(), rr.dc(), terms,
                           dpo::dev_outputs<T>{l.dv(), cw.dv(), rw.dv(), dc.dv(), dr.dv()}, lc.dc(), lr.dc());
    check(tag + name + " loss", dev.loss, cpu.loss, rt, at);
    check(tag + name + " margin", dev.reward_margin, cpu.reward_margin, rt, at);
    check(tag + name + " accuracy", dev.reward_accuracy, cpu.reward_accuracy, rt, at);
    check(tag + name + " chosen reward", dev.chosen_reward, cpu.chosen_reward, rt, at);
    check_all(tag + name + " losses", l.read(), l.h, rt, at);
    check_all(tag + name + " chosen_rewards", cw.read(), cw.h, rt, at);
    check_all(tag + name + " dchosen", dc.read(), dc.h, rt, at);
    check_all(tag + name + " drejected", dr.read(), dr.h, rt, at);
  };
  for (int k = 0; k <= static_cast<int>(dpo::loss_type::sigmoid_norm); ++k) {
    const auto t = static_cast<dpo::loss_type>(k);
    for (bool v1 : {false, true}) {
      const dpo::weighted one[] = {{v1 ? dpo::params::trl_v1(t, 0.1, 0.1) : dpo::params::trl(t, 0.1, 0.1), 1.0}};
      run(std::string(dpo::to_string(t)) + (v1 ? " (trl 1.x)" : " (trl 0.28)"), one);
    }
  }
  for (const char* f : {"js_divergence", "alpha_divergence"}) {
    auto p = dpo::params::trl(dpo::loss_type::sigmoid, 0.1);
    dpo::set_f_divergence(p, f, 0.5, true);
    const dpo::weighted one[] = {{p, 1.0}};
    run(f, one);
  }
  const dpo::weighted mpo[] = {{dpo::params::trl(dpo::loss_type::sigmoid, 0.1), 0.8},
                               {dpo::params::trl(dpo::loss_type::bco_pair, 0.1), 0.2},
                               {dpo::params::trl(dpo::loss_type::sppo_hard, 0.1), 1.0}};
  run("weighted sigmoid + bco_pair + sppo_hard", mpo);
}

}  // namespace

int main() {
  return run([] {
    family<double>(37, 1);
    family<float>(full_size() ? 1000 : 100, 2);
  });
}
