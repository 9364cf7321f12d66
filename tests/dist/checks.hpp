// The data-parallel equality checks, over any communicator: each rank holds
// a shard of one global batch (cut unevenly: a rank may hold no row; row 5
// has no valid token), runs an op with rlhf::cpu.with(comm) on its shard,
// and compares with the single-process op on the whole batch (every rank
// computes that too): scalars to 1e-12 relative, this rank's gradient rows
// / size() to the single-process rows; every reduced value bitwise the same
// on every rank; a control (the shard's own, unreduced value) that differs;
// the collectives counted; a rank's error raised on every rank. Run by
// tests/unit/test_dist.cpp over dist::threads and by tests/dist/mpi_main.cpp
// under mpirun.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <rlhf/rlhf.hpp>
#include <span>
#include <string>
#include <vector>

namespace dist_checks {

using rlhf::index_t;

/// Failures of one rank's checks (the test asserts there are none).
struct report {
  std::vector<std::string> failures;
  int checks = 0;
  void require(bool ok, const std::string& what) {
    ++checks;
    if (!ok) failures.push_back(what);
  }
  void close(double got, double want, const std::string& what, double tol = 1e-12) {
    const double scale = std::fabs(want) > 1 ? std::fabs(want) : 1.0;
    require(std::fabs(got - want) <= tol * scale,
            what + ": got " + std::to_string(got) + " want " + std::to_string(want));
  }
};

/// A communicator that counts the collectives it makes (every kind).
template <class C>
struct counting {
  const C* inner;
  mutable long calls = 0;
  [[nodiscard]] int rank() const { return inner->rank(); }
  [[nodiscard]] int size() const { return inner->size(); }
  void allreduce_sum(std::span<double> x) const {
    ++calls;
    inner->allreduce_sum(x);
  }
  void allreduce_max(std::span<double> x) const {
    ++calls;
    inner->allreduce_max(x);
  }
  void allgather(std::span<const double> in, std::span<double> out) const {
    ++calls;
    inner->allgather(in, out);
  }
};

/// The global batch: B rows of T tokens, uneven lengths, row 5 empty, row 9 with holes.
struct batch {
  index_t B = 13, T = 11;
  std::vector<double> logp, old, adv, mask, vpred, ret, vold, ent, ref;
  batch() {
    std::mt19937_64 g(2026);
    std::normal_distribution<double> n(0, 1);
    const auto N = static_cast<std::size_t>(B * T);
    for (auto* v : {&logp, &old, &adv, &vpred, &ret, &vold, &ent, &ref}) v->resize(N);
    mask.assign(N, 0.0);
    for (std::size_t i = 0; i < N; ++i) {
      logp[i] = -1.0 + 0.5 * n(g);
      old[i] = logp[i] + 0.3 * n(g);  // ratios far enough from 1 to clip
      ref[i] = logp[i] + 0.2 * n(g);
      adv[i] = n(g);
      vpred[i] = n(g);
      vold[i] = vpred[i] + 0.4 * n(g);
      ret[i] = n(g);
      ent[i] = 1.0 + 0.5 * std::fabs(n(g));
    }
    for (index_t b = 0; b < B; ++b) {
      const index_t len = b == 5 ? 0 : 1 + static_cast<index_t>((b * 7 + 3) % T);
      for (index_t t = 0; t < len; ++t) mask[static_cast<std::size_t>(b * T + t)] = 1;
    }
    for (index_t t = 1; t < T; t += 3) mask[static_cast<std::size_t>(9 * T + t)] = 0;
  }
  /// Rank r's first row of P: quadratic cuts (uneven; rank 0 holds none at P = 4).
  [[nodiscard]] index_t cut(int r, int P) const { return B * r * r / (static_cast<index_t>(P) * P); }
};

/// Rows [b0, b1) of a [B, T] matrix.
struct shard {
  index_t b0, b1, T;
  [[nodiscard]] rlhf::tensor_view<const double, 2> of(const std::vector<double>& v) const {
    return {v.data() + b0 * T, {b1 - b0, T}};
  }
  /// This shard's own buffer (rows from 0).
  [[nodiscard]] rlhf::tensor_view<double, 2> out(std::vector<double>& v) const { return {v.data(), {b1 - b0, T}}; }
};

/// Every rank's copy of x, for the bitwise comparison.
template <class C>
bool same_on_every_rank(const C& comm, double x) {
  std::vector<double> all(static_cast<std::size_t>(comm.size()));
  comm.allgather(std::span<const double>(&x, 1), all);
  for (double y : all)
    if (std::memcmp(&y, &x, sizeof(double)) != 0) return false;
  return true;
}

inline double hash_of(const std::string& s) {
  return static_cast<double>(std::hash<std::string>{}(s) & ((std::uint64_t{1} << 52) - 1));
}

/// The gradient rows of this rank, / gradient factor, against the single-process rows.
inline void close_rows(report& rep, const shard& s, const std::vector<double>& local, const std::vector<double>& global,
                       double factor, const std::string& what) {
  double worst = 0;
  for (index_t b = s.b0; b < s.b1; ++b)
    for (index_t t = 0; t < s.T; ++t) {
      const auto gi = static_cast<std::size_t>(b * s.T + t), li = static_cast<std::size_t>((b - s.b0) * s.T + t);
      const double want = global[gi], got = local[li] / factor;
      const double d = std::fabs(got - want) / (std::fabs(want) > 1 ? std::fabs(want) : 1.0);
      worst = d > worst ? d : worst;
    }
  rep.require(worst <= 1e-12, what + ": gradient rows differ by " + std::to_string(worst));
}

template <class C>
void run(const C& comm, report& rep) {
  using namespace rlhf;
  const batch d;
  const int P = comm.size(), r = comm.rank();
  const shard s{d.cut(r, P), d.cut(r + 1, P), d.T};
  const shard all{0, d.B, d.T};
  const auto N = static_cast<std::size_t>(d.B * d.T);
  const auto n_local = static_cast<std::size_t>((s.b1 - s.b0) * d.T);
  const auto be = cpu.with(comm);
  const std::string at = " (P=" + std::to_string(P) + ", rank " + std::to_string(r) + ")";

  for (int mi = 0; mi < 5; ++mi) {
    const auto mode = static_cast<agg_mode>(mi);
    const std::string m = std::string(to_string(mode)) + at;
    // the policy loss, its statistics and its gradient
    auto pp = ppo::policy_params::verl(mode);
    std::vector<double> g_all(N), g_loc(n_local + 1);
    const auto want =
        ppo::policy_loss(cpu, all.of(d.logp), all.of(d.old), all.of(d.adv), all.of(d.mask), pp, all.out(g_all));
    const auto got = ppo::policy_loss(be, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), pp, s.out(g_loc));
    rep.close(got.loss, want.loss, "policy_loss " + m);
    rep.close(got.clipfrac, want.clipfrac, "clipfrac " + m);
    rep.close(got.clipfrac_lower, want.clipfrac_lower, "clipfrac_lower " + m);
    rep.close(got.ppo_kl, want.ppo_kl, "ppo_kl " + m);
    close_rows(rep, s, g_loc, g_all, P, "dlogp " + m);
    rep.require(same_on_every_rank(comm, got.loss) && same_on_every_rank(comm, got.clipfrac) &&
                    same_on_every_rank(comm, got.ppo_kl),
                "policy_loss bitwise the same on every rank " + m);
    // summed gradients: the factor dropped
    std::vector<double> g_sum(n_local + 1);
    (void)ppo::policy_loss(be.summed_gradients(), s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), pp,
                           s.out(g_sum));
    close_rows(rep, s, g_sum, g_all, 1.0, "dlogp summed " + m);
    // the value loss
    const auto vp = ppo::value_params::verl(0.5, mode);
    std::vector<double> v_all(N), v_loc(n_local + 1);
    const auto vw =
        ppo::value_loss(cpu, all.of(d.vpred), all.of(d.ret), all.of(d.vold), all.of(d.mask), vp, all.out(v_all));
    const auto vg = ppo::value_loss(be, s.of(d.vpred), s.of(d.ret), s.of(d.vold), s.of(d.mask), vp, s.out(v_loc));
    rep.close(vg.loss, vw.loss, "value_loss " + m);
    rep.close(vg.clipfrac, vw.clipfrac, "vf_clipfrac " + m);
    close_rows(rep, s, v_loc, v_all, P, "dvpreds " + m);
    // the entropy bonus, the KL in the loss, a loss matrix
    agg_params ap;
    ap.mode = mode;
    std::vector<double> e_all(N), e_loc(n_local + 1);
    const auto ew = ppo::entropy_bonus(cpu, all.of(d.ent), all.of(d.mask), 0.01, ap, all.out(e_all));
    const auto eg = ppo::entropy_bonus(be, s.of(d.ent), s.of(d.mask), 0.01, ap, s.out(e_loc));
    rep.close(eg.entropy, ew.entropy, "entropy " + m);
    close_rows(rep, s, e_loc, e_all, P, "dentropy " + m);
    for (auto est : {kl_estimator::k1, kl_estimator::k3, kl_estimator::k2}) {
      const auto kp = kl_params::verl(est);
      std::vector<double> k_all(N), k_loc(n_local + 1);
      const auto kw = kl::loss(cpu, all.of(d.logp), all.of(d.ref), all.of(d.mask), 0.1, kp, ap, all.out(k_all));
      const auto kg = kl::loss(be, s.of(d.logp), s.of(d.ref), s.of(d.mask), 0.1, kp, ap, s.out(k_loc));
      rep.close(kg.mean_kl, kw.mean_kl, std::string("kl::loss ") + to_string(est) + " " + m);
      close_rows(rep, s, k_loc, k_all, P, std::string("kl dlogp ") + to_string(est) + " " + m);
    }
    std::vector<double> a_all(N), a_loc(n_local + 1);
    const double aw = ops::aggregate(cpu, all.of(d.adv), all.of(d.mask), ap, all.out(a_all));
    const double ag = ops::aggregate(be, s.of(d.adv), s.of(d.mask), ap, s.out(a_loc));
    rep.close(ag, aw, "aggregate " + m);
    close_rows(rep, s, a_loc, a_all, P, "dloss_mat " + m);
    rep.require(
        same_on_every_rank(comm, ag) && same_on_every_rank(comm, vg.loss) && same_on_every_rank(comm, eg.entropy),
        "aggregate, value_loss, entropy bitwise the same on every rank " + m);
    // the control: a rank's own (unreduced) value is not the global one
    if (P > 1 && mode != agg_mode::token_sum) {
      double diff = 0;
      double n_tok = 0;
      for (std::size_t i = 0; i < n_local; ++i) n_tok += s.of(d.mask).data()[i];
      if (n_tok > 0) diff = std::fabs(ops::aggregate(cpu, s.of(d.adv), s.of(d.mask), ap) - aw);
      std::vector<double> x{diff};
      comm.allreduce_max(x);
      rep.require(x[0] > 1e-6, "control: the shards' own values equal the global one " + m);
    }
  }

  // the actor's combined loss (policy + entropy bonus + KL in the loss) and the policy variants
  for (auto mode : {agg_mode::token_mean, agg_mode::seq_mean_token_mean}) {
    const std::string m = std::string(to_string(mode)) + at;
    ppo::actor_params ap;
    ap.policy = ppo::policy_params::verl(mode);
    ap.entropy_coef = 0.01;
    ap.kl_coef = 0.05;
    std::vector<double> g_all(N), h_all(N), g_loc(n_local + 1), h_loc(n_local + 1);
    const auto want = ppo::actor_loss(cpu, all.of(d.logp), all.of(d.old), all.of(d.adv), all.of(d.mask), all.of(d.ent),
                                      all.of(d.ref), ap, all.out(g_all), all.out(h_all));
    const auto got = ppo::actor_loss(be, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), s.of(d.ent), s.of(d.ref),
                                     ap, s.out(g_loc), s.out(h_loc));
    rep.close(got.loss, want.loss, "actor_loss " + m);
    rep.close(got.kl, want.kl, "actor_loss kl " + m);
    rep.close(got.entropy, want.entropy, "actor_loss entropy " + m);
    close_rows(rep, s, g_loc, g_all, P, "actor_loss dlogp " + m);
    close_rows(rep, s, h_loc, h_all, P, "actor_loss dentropy " + m);
    for (auto kind : {ppo::policy_loss_kind::sapo, ppo::policy_loss_kind::cispo, ppo::policy_loss_kind::gspo,
                      ppo::policy_loss_kind::dppo_tv, ppo::policy_loss_kind::dro}) {
      auto vp = ppo::variant_params::verl(kind, mode);
      vp.dro_beta = 0.5;
      std::vector<double> v_all(N), v_loc(n_local + 1);
      const auto vw = ppo::policy_loss_variant(cpu, all.of(d.logp), all.of(d.old), all.of(d.adv), all.of(d.mask), vp,
                                               all.out(v_all));
      const auto vg =
          ppo::policy_loss_variant(be, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), vp, s.out(v_loc));
      const std::string k = std::string(to_string(kind)) + " " + m;
      rep.close(vg.loss, vw.loss, "policy_loss_variant " + k);
      rep.close(vg.ppo_kl, vw.ppo_kl, "policy_loss_variant ppo_kl " + k);
      rep.close(vg.clipfrac, vw.clipfrac, "policy_loss_variant clipfrac " + k);
      close_rows(rep, s, v_loc, v_all, P, "policy_loss_variant dlogp " + k);
    }
  }
  if (P > 1) {  // an error between the actor's passes (rank 1's entropy has the wrong shape)
    ppo::actor_params ap;
    ap.entropy_coef = 0.01;
    std::vector<double> ent(n_local + d.T + 1, 1.0);
    bool thrown = false;
    try {
      const rlhf::tensor_view<const double, 2> e(ent.data(), {s.b1 - s.b0 + (r == 1 ? 1 : 0), d.T});
      (void)ppo::actor_loss(be, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), e, {}, ap);
    } catch (const rlhf::error& err) {
      thrown = err.kind() == error_kind::shape && err.argument() == "entropy" && err.rank() == 1;
      rep.require(same_on_every_rank(comm, hash_of(err.what())), "actor_loss's error: the same message" + at);
    }
    rep.require(thrown, "actor_loss: rank 1's entropy shape error on every rank" + at);
  }

  // KL in the reward: this rank's rewards, the adaptive controller's input over every row
  for (auto est : {kl_estimator::k1, kl_estimator::k3}) {
    std::vector<double> r_all(N), r_loc(n_local + 1);
    const auto kw = kl::apply_in_reward(cpu, all.of(d.adv), all.of(d.logp), all.of(d.ref), all.of(d.mask), 0.05,
                                        kl_params::verl(est), all.out(r_all));
    const auto kg = kl::apply_in_reward(be, s.of(d.adv), s.of(d.logp), s.of(d.ref), s.of(d.mask), 0.05,
                                        kl_params::verl(est), s.out(r_loc));
    rep.close(kg.mean_seq_kl, kw.mean_seq_kl, std::string("apply_in_reward mean_seq_kl ") + to_string(est) + at);
    close_rows(rep, s, r_loc, r_all, 1.0, std::string("apply_in_reward rewards ") + to_string(est) + at);
    rep.require(same_on_every_rank(comm, kg.mean_seq_kl), "mean_seq_kl bitwise the same on every rank" + at);
    // the adaptive controller updated from it: the same coefficient on every rank
    kl::adaptive_controller cw(0.1, 0.01, 100), cg(0.1, 0.01, 100);
    cw.update(kw.mean_seq_kl, static_cast<double>(d.B));
    cg.update(kg.mean_seq_kl, static_cast<double>(d.B));
    rep.close(cg.value(), cw.value(), "adaptive controller after one update" + at);
  }

  // the group estimators, groups of 3 cut anywhere by the ranks: bitwise the one-process values
  {
    std::vector<long long> ids(static_cast<std::size_t>(d.B));
    for (index_t b = 0; b < d.B; ++b) ids[static_cast<std::size_t>(b)] = 100 + b / 3;
    const rlhf::tensor_view<const long long, 1> gi_all(ids.data(), {d.B});
    const rlhf::tensor_view<const long long, 1> gi(ids.data() + s.b0, {s.b1 - s.b0});
    auto check = [&](const char* name, const auto& est, const auto& params) {
      std::vector<double> a_all(N), r_all(N), a_loc(n_local + 1), r_loc(n_local + 1), c_loc(n_local + 1),
          c_ret(n_local + 1);
      est(cpu, all.of(d.adv), all.of(d.mask), gi_all, params, adv::outputs<double>{all.out(a_all), all.out(r_all)});
      est(be, s.of(d.adv), s.of(d.mask), gi, params, adv::outputs<double>{s.out(a_loc), s.out(r_loc)});
      close_rows(rep, s, a_loc, a_all, 1.0, std::string(name) + " advantages" + at);
      bool same = true;
      for (index_t b = s.b0; b < s.b1; ++b)
        for (index_t t = 0; t < d.T; ++t)
          same = same &&
                 a_loc[static_cast<std::size_t>((b - s.b0) * d.T + t)] == a_all[static_cast<std::size_t>(b * d.T + t)];
      rep.require(same, std::string(name) + ": bitwise the one-process advantages" + at);
      bool cut = false;  // a group cut by the ranks (at P = 2 every group is whole)
      for (int q = 1; q < P; ++q) cut = cut || (d.cut(q, P) % 3 != 0 && d.cut(q, P) < d.B);
      if (cut) {  // the control: each shard's own groups give other values where a group is cut
        double diff = 0;
        if (s.b1 > s.b0) {
          est(cpu, s.of(d.adv), s.of(d.mask), gi, params, adv::outputs<double>{s.out(c_loc), s.out(c_ret)});
          for (std::size_t i = 0; i < n_local; ++i) diff = std::max(diff, std::fabs(c_loc[i] - a_loc[i]));
        }
        std::vector<double> x{diff};
        comm.allreduce_max(x);
        rep.require(x[0] > 1e-6, std::string(name) + " control: cut groups change the shard's own values" + at);
      }
    };
    check("grpo", adv::grpo, adv::grpo_params::verl());
    check("rloo", adv::rloo, adv::rloo_params{});
    check("maxrl", adv::maxrl, adv::maxrl_params{});
  }

  // DPO over pairs held by the ranks (row b of the batch: pair b): summary and per-pair outputs
  for (auto type : {dpo::loss_type::sigmoid, dpo::loss_type::ipo, dpo::loss_type::aot}) {
    dpo::params dp;
    dp.type = type;
    const std::string k = std::string(to_string(type)) + at;
    auto col = [&](const std::vector<double>& v, const shard& sh) {  // column 0 of rows [b0, b1)
      std::vector<double> c(static_cast<std::size_t>(sh.b1 - sh.b0) + 1);
      for (index_t b = sh.b0; b < sh.b1; ++b)
        c[static_cast<std::size_t>(b - sh.b0)] = v[static_cast<std::size_t>(b * d.T)];
      return c;
    };
    const auto c_all = col(d.logp, all), r_all = col(d.old, all), rc_all = col(d.ref, all), rr_all = col(d.vold, all);
    const auto c_loc = col(d.logp, s), r_loc = col(d.old, s), rc_loc = col(d.ref, s), rr_loc = col(d.vold, s);
    auto v1 = [](const std::vector<double>& v, index_t n) { return rlhf::tensor_view<const double, 1>(v.data(), {n}); };
    std::vector<double> dc_all(static_cast<std::size_t>(d.B)), dc_loc(c_loc.size()), l_all(dc_all.size()),
        l_loc(c_loc.size());
    const index_t nb = s.b1 - s.b0;
    const auto sw = dpo::loss(cpu, v1(c_all, d.B), v1(r_all, d.B), v1(rc_all, d.B), v1(rr_all, d.B), dp,
                              dpo::outputs<double>{{l_all.data(), {d.B}}, {}, {}, {dc_all.data(), {d.B}}, {}});
    const auto sg = dpo::loss(be, v1(c_loc, nb), v1(r_loc, nb), v1(rc_loc, nb), v1(rr_loc, nb), dp,
                              dpo::outputs<double>{{l_loc.data(), {nb}}, {}, {}, {dc_loc.data(), {nb}}, {}});
    rep.require(sg.loss == sw.loss && sg.reward_accuracy == sw.reward_accuracy &&
                    sg.reward_margin == sw.reward_margin && sg.chosen_reward == sw.chosen_reward,
                "dpo::loss summary bitwise the one-process one " + k);
    bool same = true;
    for (index_t b = 0; b < nb; ++b) {
      const auto lb = static_cast<std::size_t>(b), gb = static_cast<std::size_t>(s.b0 + b);
      same = same && l_loc[lb] == l_all[gb] && dc_loc[lb] == P * dc_all[gb];
    }
    rep.require(same, "dpo::loss per-pair losses and gradients (times P) " + k);
  }

  // masked statistics: mean (and its gradient), variance (and its gradient), whitening
  {
    std::vector<double> g_all(N), g_loc(n_local + 1);
    const double mw = ops::masked_mean(cpu, all.of(d.adv), all.of(d.mask), 1e-8, all.out(g_all));
    const double mg = ops::masked_mean(be, s.of(d.adv), s.of(d.mask), 1e-8, s.out(g_loc));
    rep.close(mg, mw, "masked_mean" + at);
    close_rows(rep, s, g_loc, g_all, P, "masked_mean dvalues" + at);
    rep.close(ops::masked_mean(be, s.of(d.adv), s.of(d.mask)), mw, "masked_mean without a gradient" + at);
    for (bool unbiased : {true, false}) {
      std::vector<double> v_all(N), v_loc(n_local + 1);
      const auto vw = ops::masked_var(cpu, all.of(d.ret), all.of(d.mask), unbiased, 1e-8, all.out(v_all));
      const auto vg = ops::masked_var(be, s.of(d.ret), s.of(d.mask), unbiased, 1e-8, s.out(v_loc));
      rep.close(vg.var, vw.var, "masked_var" + at);
      rep.close(vg.mean, vw.mean, "masked_var mean" + at);
      close_rows(rep, s, v_loc, v_all, P, "masked_var dvalues" + at);
      rep.require(same_on_every_rank(comm, vg.var), "masked_var bitwise the same on every rank" + at);
    }
    std::vector<double> w_all(N), w_loc(n_local + 1);
    const auto ww = ops::masked_whiten(cpu, all.of(d.ret), all.of(d.mask), whiten_params::verl(), all.out(w_all));
    const auto wg = ops::masked_whiten(be, s.of(d.ret), s.of(d.mask), whiten_params::verl(), s.out(w_loc));
    rep.close(wg.mean, ww.mean, "masked_whiten mean" + at);
    rep.close(wg.var, ww.var, "masked_whiten var" + at);
    close_rows(rep, s, w_loc, w_all, 1.0, "masked_whiten values" + at);
    if (P > 1) {  // the control: whitening over the shard alone differs
      double diff = 0;
      double n_tok = 0;
      for (std::size_t i = 0; i < n_local; ++i) n_tok += s.of(d.mask).data()[i];
      if (n_tok >= 2) diff = std::fabs(ops::masked_var(cpu, s.of(d.ret), s.of(d.mask)).var - ww.var);
      std::vector<double> x{diff};
      comm.allreduce_max(x);
      rep.require(x[0] > 1e-6, "control: the shards' own variances equal the global one" + at);
    }
  }

  // collectives per call: 2 for a gradient whose weights need the global
  // counts, 1 without a gradient or with the counts given
  {
    counting<C> cc{&comm};
    const auto cb = cpu.with(cc);
    const auto pp = ppo::policy_params::verl();
    std::vector<double> g(n_local + 1);
    (void)ppo::policy_loss(cb, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), pp);
    rep.require(cc.calls == 1, "policy_loss without a gradient: one collective" + at);
    cc.calls = 0;
    (void)ppo::policy_loss(cb, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), pp, s.out(g));
    rep.require(cc.calls == 2, "policy_loss with a gradient: the counts, then the sums" + at);
    cc.calls = 0;
    auto counted = pp;
    counted.agg = ops::global_counts(cb, s.of(d.mask), pp.agg);
    rep.require(cc.calls == 1, "global_counts: one collective" + at);
    cc.calls = 0;
    std::vector<double> g2(n_local + 1);
    const auto got = ppo::policy_loss(cb, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), counted, s.out(g2));
    rep.require(cc.calls == 1, "policy_loss with the counts given: one collective" + at);
    std::vector<double> g_all(N);
    const auto want =
        ppo::policy_loss(cpu, all.of(d.logp), all.of(d.old), all.of(d.adv), all.of(d.mask), pp, all.out(g_all));
    rep.close(got.loss, want.loss, "policy_loss with the counts given" + at);
    close_rows(rep, s, g2, g_all, P, "dlogp with the counts given" + at);
    for (int mi = 1; mi < 5; ++mi) {  // every mode's counts
      agg_params ap;
      ap.mode = static_cast<agg_mode>(mi);
      const auto gc = ops::global_counts(cb, s.of(d.mask), ap);
      std::vector<double> a_loc(n_local + 1), a_all(N);
      const double ag = ops::aggregate(cb, s.of(d.adv), s.of(d.mask), gc, s.out(a_loc));
      const double aw = ops::aggregate(cpu, all.of(d.adv), all.of(d.mask), ap, all.out(a_all));
      rep.close(ag, aw, std::string("aggregate with global_counts ") + to_string(ap.mode) + at);
      close_rows(rep, s, a_loc, a_all, P, std::string("dloss_mat with global_counts ") + to_string(ap.mode) + at);
    }
  }

  // a rank's error: every rank throws it (kind, argument, message, rank)
  if (P > 1) {
    const int bad = P - 1;
    std::vector<double> lp(d.logp);
    lp[static_cast<std::size_t>((d.B - 1) * d.T)] = std::nan("");  // the last row (the last rank's), a valid token
    for (int with_grad = 0; with_grad < 2; ++with_grad) {
      std::vector<double> g(n_local + 1, 7.0);
      bool thrown = false;
      try {
        (void)ppo::policy_loss(be, s.of(static_cast<const std::vector<double>&>(lp)), s.of(d.old), s.of(d.adv),
                               s.of(d.mask), ppo::policy_params::verl(),
                               with_grad ? s.out(g) : rlhf::tensor_view<double, 2>{});
      } catch (const rlhf::error& e) {
        thrown = true;
        rep.require(e.kind() == error_kind::non_finite && e.argument() == "log_prob" && e.rank() == bad,
                    std::string("a NaN on one rank: kind, argument and rank on every rank") + at + ": " + e.what());
        rep.require(same_on_every_rank(comm, hash_of(e.what())), "a NaN on one rank: the same message" + at);
        rep.require(std::string(e.what()).find("rank " + std::to_string(bad)) != std::string::npos,
                    "the message names the rank" + at);
      }
      rep.require(thrown, "a NaN on one rank: every rank throws" + at);
      // the failing rank wrote nothing
      if (r == bad && with_grad)
        for (std::size_t i = 0; i < n_local; ++i) rep.require(g[i] == 7.0, "the failing rank wrote nothing" + at);
    }
    // a shape error before the first collective (rank 0's gradient has the wrong shape)
    {
      std::vector<double> g(n_local + d.T + 1);
      bool thrown = false;
      try {
        const rlhf::tensor_view<double, 2> dl(g.data(), {s.b1 - s.b0 + (r == 0 ? 1 : 0), d.T});
        (void)ppo::policy_loss(be, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), ppo::policy_params::verl(),
                               dl);
      } catch (const rlhf::error& e) {
        thrown = true;
        rep.require(
            e.kind() == error_kind::shape && e.argument() == "dlogp" && e.rank() == 0,
            std::string("a shape error on rank 0: kind, argument and rank on every rank") + at + ": " + e.what());
        rep.require(same_on_every_rank(comm, hash_of(e.what())), "a shape error on rank 0: the same message" + at);
      }
      rep.require(thrown, "a shape error on rank 0: every rank throws" + at);
    }
    // dp_size under a communicator is an error (the ranks are the group)
    {
      auto pp = ppo::policy_params::verl();
      pp.agg.dp_size = 2;
      pp.agg.batch_num_tokens = 10;
      bool thrown = false;
      try {
        (void)ppo::policy_loss(be, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), pp);
      } catch (const rlhf::error& e) {
        thrown = e.kind() == error_kind::param && e.argument() == "dp_size";
      }
      rep.require(thrown, "dp_size != 1 under a communicator: a param error on every rank" + at);
    }
    // the communicator still works after the errors: the next op agrees
    const auto ok =
        ppo::policy_loss(be, s.of(d.logp), s.of(d.old), s.of(d.adv), s.of(d.mask), ppo::policy_params::verl());
    const auto want =
        ppo::policy_loss(cpu, all.of(d.logp), all.of(d.old), all.of(d.adv), all.of(d.mask), ppo::policy_params::verl());
    rep.close(ok.loss, want.loss, "the op after the errors" + at);
  }
}

}  // namespace dist_checks
