// The device objectives and masked statistics against the CPU backend on
// random inputs: PPO policy loss (verl, OpenRLHF, TRL, SB3 rules; every
// aggregation mode; IS weights), every policy-loss variant, rollout IS
// weights, value loss, entropy bonus, KL in the loss and in the reward,
// A2C, masked mean / variance / whitening with gradients; float and double; odd
// shapes, ragged and empty rows. Exits 77 (ctest: skipped) without a GPU.
#include <rlhf/backend/cuda/objectives.cuh>
#include <rlhf/backend/cuda/variants.cuh>

#include "cuda_test.hpp"

using namespace cuda_test;
namespace ppo = rlhf::ppo;

namespace {

template <class T>
void policy_case(const std::string& name, const ppo::policy_params& p, index_t B, index_t T_, unsigned seed,
                 bool with_weights) {
  const double rt = sizeof(T) == 8 ? 1e-10 : 2e-4, at = sizeof(T) == 8 ? 1e-12 : 1e-6;
  auto lp = normal<T>(B, T_, seed, -1.0, 0.5), old = normal<T>(B, T_, seed + 1, -1.0, 0.5);
  auto adv = normal<T>(B, T_, seed + 2), w = normal<T>(B, T_, seed + 3, 1.0, 0.1);
  auto m = ragged_mask<T>(B, T_);
  pair2<T> g(B, T_);
  const auto cpu = ppo::policy_loss(rlhf::cpu, lp.hc(), old.hc(), adv.hc(), m.hc(), p, g.hv(),
                                    with_weights ? w.hc() : rlhf::tensor_view<const T, 2>{});
  const auto dev = ppo::policy_loss(rlhf::cuda, lp.dc(), old.dc(), adv.dc(), m.dc(), p, g.dv(),
                                    with_weights ? w.dc() : rlhf::device_view<const T, 2>{});
  check(name + " loss", dev.loss, cpu.loss, rt, at);
  check(name + " clipfrac", dev.clipfrac, cpu.clipfrac, rt, at);
  check(name + " clipfrac_lower", dev.clipfrac_lower, cpu.clipfrac_lower, rt, at);
  check(name + " ppo_kl", dev.ppo_kl, cpu.ppo_kl, rt, at);
  check_all(name + " dlogp", g.download(), g.h, rt, at);
  // the asynchronous form: the same results once get() has waited
  pair2<T> ga(B, T_);
  const auto pending = ppo::policy_loss_async(rlhf::cuda, lp.dc(), old.dc(), adv.dc(), m.dc(), p, ga.dv(),
                                              with_weights ? w.dc() : rlhf::device_view<const T, 2>{});
  const auto later = pending.get();
  check(name + " async loss", later.loss, cpu.loss, rt, at);
  check(name + " async clipfrac", later.clipfrac, cpu.clipfrac, rt, at);
  check_all(name + " async dlogp", ga.download(), g.h, rt, at);
}

template <class T>
void objectives(index_t B, index_t T_, unsigned seed) {
  const std::string tag =
      std::string(sizeof(T) == 8 ? "double" : "float") + " " + std::to_string(B) + "x" + std::to_string(T_) + " ";
  using rlhf::agg_mode;
  for (auto mode : {agg_mode::token_mean, agg_mode::token_sum, agg_mode::seq_mean_token_sum,
                    agg_mode::seq_mean_token_mean, agg_mode::seq_mean_token_sum_norm}) {
    policy_case<T>(tag + "verl " + rlhf::to_string(mode), ppo::policy_params::verl(mode), B, T_, seed, false);
  }
  policy_case<T>(tag + "openrlhf", ppo::policy_params::openrlhf(false), B, T_, seed + 10, false);
  policy_case<T>(tag + "trl", ppo::policy_params::trl(), B, T_, seed + 20, false);
  policy_case<T>(tag + "sb3", ppo::policy_params::sb3(), B, T_, seed + 30, false);
  policy_case<T>(tag + "verl + IS weights", ppo::policy_params::verl(), B, T_, seed + 40, true);

  const double rt = sizeof(T) == 8 ? 1e-10 : 2e-4, at = sizeof(T) == 8 ? 1e-12 : 1e-6;
  auto m = ragged_mask<T>(B, T_);
  {  // value loss, both clip styles
    auto v = normal<T>(B, T_, seed + 50), r = normal<T>(B, T_, seed + 51), o = normal<T>(B, T_, seed + 52);
    for (auto style : {ppo::value_clip_style::max_of_both, ppo::value_clip_style::clipped_only}) {
      auto vp = ppo::value_params::verl(0.2, rlhf::agg_mode::seq_mean_token_mean);
      vp.style = style;
      pair2<T> g(B, T_);
      const auto cpu = ppo::value_loss(rlhf::cpu, v.hc(), r.hc(), o.hc(), m.hc(), vp, g.hv());
      const auto dev = ppo::value_loss(rlhf::cuda, v.dc(), r.dc(), o.dc(), m.dc(), vp, g.dv());
      check(tag + "value loss", dev.loss, cpu.loss, rt, at);
      check(tag + "value clipfrac", dev.clipfrac, cpu.clipfrac, rt, at);
      check_all(tag + "value dvpreds", g.download(), g.h, rt, at);
    }
  }
  {  // entropy bonus, accumulating into a gradient
    auto h = normal<T>(B, T_, seed + 60, 2.0, 0.5);
    pair2<T> g = normal<T>(B, T_, seed + 61);
    std::vector<T> before = g.h;
    rlhf::agg_params agg;
    agg.mode = rlhf::agg_mode::token_sum;
    const auto cpu = ppo::entropy_bonus(rlhf::cpu, h.hc(), m.hc(), 0.01, agg, g.hv(), true);
    const auto dev = ppo::entropy_bonus(rlhf::cuda, h.dc(), m.dc(), 0.01, agg, g.dv(), true);
    check(tag + "entropy loss", dev.loss, cpu.loss, rt, at);
    check(tag + "entropy", dev.entropy, cpu.entropy, rt, at);
    check_all(tag + "dentropy (accumulated)", g.download(), g.h, rt, at);
  }
  {  // KL in the loss, every estimator
    auto lp = normal<T>(B, T_, seed + 70, -1.0, 0.5), ref = normal<T>(B, T_, seed + 71, -1.0, 0.5);
    for (int e = 0; e < 4; ++e) {
      const auto kp = rlhf::kl_params::verl(static_cast<rlhf::kl_estimator>(e));
      pair2<T> g(B, T_);
      rlhf::agg_params agg;
      const auto cpu = rlhf::kl::loss(rlhf::cpu, lp.hc(), ref.hc(), m.hc(), 0.05, kp, agg, g.hv());
      const auto dev = rlhf::kl::loss(rlhf::cuda, lp.dc(), ref.dc(), m.dc(), 0.05, kp, agg, g.dv());
      check(tag + "kl loss " + rlhf::to_string(kp.estimator), dev.loss, cpu.loss, rt, at);
      check_all(tag + "kl dlogp " + rlhf::to_string(kp.estimator), g.download(), g.h, rt, at);
    }
  }
  {  // A2C (SB3), with and without advantage normalization and an entropy input
    auto lp = normal<T>(B, T_, seed + 100, -1.0, 0.5), v = normal<T>(B, T_, seed + 101);
    auto a = normal<T>(B, T_, seed + 102), ret = normal<T>(B, T_, seed + 103), h = normal<T>(B, T_, seed + 104, 2.0);
    for (bool norm : {false, true})
      for (bool with_h : {false, true}) {
        auto ap = rlhf::a2c::params::sb3();
        ap.normalize_advantage = norm;
        ap.ent_coef = 0.01;
        pair2<T> gl(B, T_), gv(B, T_), gh(B, T_);
        const auto cpu =
            rlhf::a2c::loss(rlhf::cpu, lp.hc(), v.hc(), a.hc(), ret.hc(),
                            with_h ? h.hc() : rlhf::tensor_view<const T, 2>{}, m.hc(), ap, gl.hv(), gv.hv(), gh.hv());
        const auto dev =
            rlhf::a2c::loss(rlhf::cuda, lp.dc(), v.dc(), a.dc(), ret.dc(),
                            with_h ? h.dc() : rlhf::device_view<const T, 2>{}, m.dc(), ap, gl.dv(), gv.dv(), gh.dv());
        const std::string n = tag + "a2c" + (norm ? " normalized" : "") + (with_h ? " entropy" : "") + " ";
        check(n + "loss", dev.loss, cpu.loss, rt, at);
        check(n + "policy", dev.policy_loss, cpu.policy_loss, rt, at);
        check(n + "value", dev.value_loss, cpu.value_loss, rt, at);
        check(n + "entropy", dev.entropy_loss, cpu.entropy_loss, rt, at);
        check_all(n + "dlogp", gl.download(), gl.h, rt, at);
        check_all(n + "dvalues", gv.download(), gv.h, rt, at);
        check_all(n + "dentropy", gh.download(), gh.h, rt, at);
      }
  }
  {  // every policy-loss variant, GSPO's full gradient (OpenRLHF), with IS weights
    auto lp = normal<T>(B, T_, seed + 110, -1.0, 0.3), old = normal<T>(B, T_, seed + 111, -1.0, 0.3);
    auto a = normal<T>(B, T_, seed + 112), w = normal<T>(B, T_, seed + 113, 1.0, 0.1);
    using K = ppo::policy_loss_kind;
    for (K k : {K::gspo, K::sapo, K::cispo, K::gpg, K::geo_mean, K::dro, K::dppo_tv, K::dppo_kl}) {
      auto v = ppo::variant_params::verl(k, rlhf::agg_mode::token_mean);
      if (k == K::dro) v.dro_beta = 0.1;
      for (bool iw : {false, true}) {
        pair2<T> g(B, T_);
        const auto cpu = ppo::policy_loss_variant(rlhf::cpu, lp.hc(), old.hc(), a.hc(), m.hc(), v, g.hv(),
                                                  iw ? w.hc() : rlhf::tensor_view<const T, 2>{});
        const auto dev = ppo::policy_loss_variant(rlhf::cuda, lp.dc(), old.dc(), a.dc(), m.dc(), v, g.dv(),
                                                  iw ? w.dc() : rlhf::device_view<const T, 2>{});
        const std::string n = tag + "variant " + ppo::to_string(k) + (iw ? " weighted " : " ");
        check(n + "loss", dev.loss, cpu.loss, rt, at);
        check(n + "clipfrac", dev.clipfrac, cpu.clipfrac, rt, at);
        check(n + "clipfrac_lower", dev.clipfrac_lower, cpu.clipfrac_lower, rt, at);
        check(n + "ppo_kl", dev.ppo_kl, cpu.ppo_kl, rt, at);
        check_all(n + "dlogp", g.download(), g.h, rt, at);
      }
    }
    const auto gs = ppo::variant_params::openrlhf_gspo();
    pair2<T> g(B, T_);
    const auto cpu = ppo::policy_loss_variant(rlhf::cpu, lp.hc(), old.hc(), a.hc(), m.hc(), gs, g.hv());
    const auto dev = ppo::policy_loss_variant(rlhf::cuda, lp.dc(), old.dc(), a.dc(), m.dc(), gs, g.dv());
    check(tag + "gspo full loss", dev.loss, cpu.loss, rt, at);
    check_all(tag + "gspo full dlogp", g.download(), g.h, rt, at);
    for (auto kind : {ppo::is_correction::tis, ppo::is_correction::icepop, ppo::is_correction::seq_mask_tis}) {
      ppo::is_params ip;
      ip.kind = kind;
      ip.low = 0.8;
      ip.high = 1.25;
      pair2<T> wt(B, T_);
      const double kc = ppo::rollout_is_weights(rlhf::cpu, lp.hc(), old.hc(), m.hc(), ip, wt.hv());
      const double kd = ppo::rollout_is_weights(rlhf::cuda, lp.dc(), old.dc(), m.dc(), ip, wt.dv());
      check(tag + "is vllm_kl", kd, kc, rt, at);
      check_all(tag + "is weights", wt.download(), wt.h, rt, at);
    }
    for (int e = 0; e < 4; ++e) {  // the KL penalty in the reward
      const auto kp = rlhf::kl_params::verl(static_cast<rlhf::kl_estimator>(e));
      pair2<T> rw(B, T_);
      const auto sc = rlhf::kl::apply_in_reward(rlhf::cpu, a.hc(), lp.hc(), old.hc(), m.hc(), 0.1, kp, rw.hv());
      const auto sd = rlhf::kl::apply_in_reward(rlhf::cuda, a.dc(), lp.dc(), old.dc(), m.dc(), 0.1, kp, rw.dv());
      check(tag + "kl in reward mean_seq_kl", sd.mean_seq_kl, sc.mean_seq_kl, rt, at);
      check_all(tag + "kl in reward rewards", rw.download(), rw.h, rt, at);
    }
  }
  {  // masked statistics
    auto x = normal<T>(B, T_, seed + 80, 3.0, 2.0);
    pair2<T> g(B, T_), out(B, T_);
    check(tag + "masked_mean", rlhf::ops::masked_mean(rlhf::cuda, x.dc(), m.dc(), 1e-8, g.dv()),
          rlhf::ops::masked_mean(rlhf::cpu, x.hc(), m.hc(), 1e-8, g.hv()), rt, at);
    check_all(tag + "masked_mean grad", g.download(), g.h, rt, at);
    const auto vd = rlhf::ops::masked_var(rlhf::cuda, x.dc(), m.dc(), true, 1e-8, g.dv());
    const auto vc = rlhf::ops::masked_var(rlhf::cpu, x.hc(), m.hc(), true, 1e-8, g.hv());
    check(tag + "masked_var", vd.var, vc.var, rt, at);
    check(tag + "masked_var mean", vd.mean, vc.mean, rt, at);
    check_all(tag + "masked_var grad", g.download(), g.h, rt, at);
    auto cot = normal<T>(B, T_, seed + 81);
    for (bool shift : {true, false}) {
      const auto wd = rlhf::ops::masked_whiten(rlhf::cuda, x.dc(), m.dc(), rlhf::whiten_params::verl(shift), out.dv());
      const auto wc = rlhf::ops::masked_whiten(rlhf::cpu, x.hc(), m.hc(), rlhf::whiten_params::verl(shift), out.hv());
      check(tag + "whiten var", wd.var, wc.var, rt, at);
      check_all(tag + "whitened", out.download(), out.h, rt, at);
      rlhf::ops::masked_whiten_backward(rlhf::cpu, x.hc(), m.hc(), rlhf::whiten_params::verl(shift), cot.hc(), g.hv());
      rlhf::ops::masked_whiten_backward(rlhf::cuda, x.dc(), m.dc(), rlhf::whiten_params::verl(shift), cot.dc(), g.dv());
      check_all(tag + "whiten backward", g.download(), g.h, rt, at);
    }
    {  // per-row means and their backward
      std::vector<T> mh(static_cast<std::size_t>(B)), ch(static_cast<std::size_t>(B));
      for (index_t b = 0; b < B; ++b) ch[static_cast<std::size_t>(b)] = static_cast<T>(0.5 + b);
      rlhf::device_buffer<T> md(mh.size()), cd(ch.size());
      cd.copy_from_host(ch.data(), ch.size());
      rlhf::ops::masked_mean_rows(rlhf::cpu, x.hc(), m.hc(), 1e-8, rlhf::tensor_view<T, 1>(mh.data(), {B}));
      rlhf::ops::masked_mean_rows(rlhf::cuda, x.dc(), m.dc(), 1e-8, rlhf::device_view<T, 1>(md.data(), {B}));
      std::vector<T> got(mh.size());
      rlhf::detail::check_cuda(cudaDeviceSynchronize(), "test", "sync");
      md.copy_to_host(got.data(), got.size());
      check_all(tag + "masked_mean_rows", got, mh, rt, at);
      rlhf::ops::masked_mean_rows_backward(rlhf::cpu, m.hc(), 1e-8, rlhf::tensor_view<const T, 1>(ch.data(), {B}),
                                           g.hv());
      rlhf::ops::masked_mean_rows_backward(rlhf::cuda, m.dc(), 1e-8, rlhf::device_view<const T, 1>(cd.data(), {B}),
                                           g.dv());
      check_all(tag + "masked_mean_rows backward", g.download(), g.h, rt, at);
    }
  }
  {  // the errors of the CPU: an empty mask, a bad parameter
    pair2<T> zero(B, T_);
    zero.upload();
    auto lp = normal<T>(B, T_, seed + 90);
    bool thrown = false;
    try {
      ppo::policy_loss(rlhf::cuda, lp.dc(), lp.dc(), lp.dc(), zero.dc(), ppo::policy_params::verl());
    } catch (const rlhf::error& e) {
      thrown = e.kind() == rlhf::error_kind::empty;
    }
    if (!thrown) {
      std::printf("FAIL %san all-zero mask is not rlhf::error(empty)\n", tag.c_str());
      ++failures;
    }
    thrown = false;
    auto p = ppo::policy_params::verl();
    p.clip_low = 1.5;
    try {
      ppo::policy_loss(rlhf::cuda, lp.dc(), lp.dc(), lp.dc(), m.dc(), p);
    } catch (const rlhf::error& e) {
      thrown = e.kind() == rlhf::error_kind::param;
    }
    if (!thrown) {
      std::printf("FAIL %sclip_low = 1.5 is not rlhf::error(param)\n", tag.c_str());
      ++failures;
    }
  }
}

/// "True on-policy" (verl #6280): a row's per-token gradient does not depend
/// on the rows that share its batch. token_sum has no batch normaliser, so
/// row r alone gives row r's gradient of the batch bit for bit.
template <class T>
void batch_invariance(index_t B, index_t T_, unsigned seed) {
  auto lp = normal<T>(B, T_, seed, -1.0, 0.5), old = normal<T>(B, T_, seed + 1, -1.0, 0.5);
  auto adv = normal<T>(B, T_, seed + 2);
  auto m = ragged_mask<T>(B, T_);
  auto p = ppo::policy_params::verl();
  p.agg.mode = rlhf::agg_mode::token_sum;
  pair2<T> g(B, T_);
  ppo::policy_loss(rlhf::cuda, lp.dc(), old.dc(), adv.dc(), m.dc(), p, g.dv());
  const auto all = g.download();
  for (index_t r : {index_t{0}, B / 2, B - 1}) {
    auto row = [&](const pair2<T>& x) { return rlhf::device_view<const T, 2>(x.d.data() + r * T_, {1, T_}); };
    if (r == 2 && B > 2) continue;  // (the fully masked row: "empty")
    pair2<T> g1(1, T_);
    ppo::policy_loss(rlhf::cuda, row(lp), row(old), row(adv), row(m), p, g1.dv());
    const auto one = g1.download();
    for (index_t t = 0; t < T_; ++t)
      if (!(one[static_cast<std::size_t>(t)] == all[static_cast<std::size_t>(r * T_ + t)])) {
        std::printf("FAIL batch invariance %s row %td token %td: alone %.17g in the batch %.17g\n",
                    sizeof(T) == 8 ? "double" : "float", r, t, static_cast<double>(one[static_cast<std::size_t>(t)]),
                    static_cast<double>(all[static_cast<std::size_t>(r * T_ + t)]));
        ++failures;
        break;
      }
  }
}

}  // namespace

int main() {
  return run([] {
    batch_invariance<double>(9, 777, 5);
    batch_invariance<float>(9, 2500, 6);
    objectives<double>(5, 13, 1);
    objectives<float>(7, 2500, 2);  // two chunks per row
    if (full_size()) objectives<double>(64, 4099, 3);
  });
}
