// rlhf++ — the DPO loop.
//
// A dataset of (prompt, chosen, rejected) token sequences. The reference
// model's sequence log-probabilities are computed once and cached (and
// recomputed only after a reference update: TR-DPO). Each step takes the next
// minibatch of pairs (reshuffled every epoch), sums the policy's token
// log-probs over each completion (ops::masked_sum_rows), evaluates any DPO
// loss type (objectives/dpo.hpp), and back-propagates d loss / d logp =
// d loss / d sum on every completion token.
//
// Call order per step: f_c = policy.forward(chosen), f_r = policy.forward(rejected),
// policy.backward(f_c, dlogp_c), policy.backward(f_r, dlogp_r), policy.step().
#pragma once

#include <chrono>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "reflect.hpp"
#include "../objectives/dpo.hpp"
#include "../objectives/preference.hpp"
#include "checkpoint.hpp"
#include "metrics.hpp"
#include "model_calls.hpp"
#include "options.hpp"
#include "reference.hpp"
#include "structure.hpp"

namespace rlhf::train {

template <class Tok>
struct basic_preference {
  std::vector<Tok> prompt, chosen, rejected;
};
using preference = basic_preference<token_t>;

namespace detail {
/// The batch of pairs `rows`: prompt i with the chosen (or rejected)
/// completion of pair (i + shift) mod n.
template <class Tok>
void make_pair_batch(const std::vector<basic_preference<Tok>>& data, const std::vector<index_t>& rows, bool chosen,
                     basic_batch<Tok>& b, index_t shift = 0) {
  const auto n = static_cast<index_t>(rows.size());
  auto completion = [&](index_t r) -> const std::vector<Tok>& {
    const auto& d = data[static_cast<std::size_t>(rows[static_cast<std::size_t>((r + shift) % n)])];
    return chosen ? d.chosen : d.rejected;
  };
  index_t width = 0, T = 0;
  for (index_t r = 0; r < n; ++r) {
    const auto& d = data[static_cast<std::size_t>(rows[static_cast<std::size_t>(r)])];
    width = std::max(width, static_cast<index_t>(d.prompt.size()));
    T = std::max(T, static_cast<index_t>(completion(r).size()));
  }
  b.prompts.tokens.resize({n, width});
  b.responses.resize({n, T});
  b.response_mask.resize({n, T});
  b.prompts.lengths.clear();
  b.prompts.ids.clear();
  for (index_t r = 0; r < n; ++r) {
    const auto& d = data[static_cast<std::size_t>(rows[static_cast<std::size_t>(r)])];
    const auto& y = completion(r);
    for (index_t t = 0; t < width; ++t)
      b.prompts.tokens(r, t) = t < static_cast<index_t>(d.prompt.size()) ? d.prompt[static_cast<std::size_t>(t)] : 0;
    for (index_t t = 0; t < T; ++t) {
      const bool on = t < static_cast<index_t>(y.size());
      b.responses(r, t) = on ? y[static_cast<std::size_t>(t)] : 0;
      b.response_mask(r, t) = on ? 1.0 : 0.0;
    }
    b.prompts.lengths.push_back(static_cast<index_t>(d.prompt.size()));
    b.prompts.ids.push_back(rows[static_cast<std::size_t>(r)]);
  }
  b.temperature = 1.0;
}

/// A preference dataset a trainer can use: not empty, no empty prompt or response.
template <class Tok>
void check_pairs(const std::vector<basic_preference<Tok>>& data, const char* fn) {
  if (data.empty()) rlhf::detail::fail(error_kind::empty, fn, "data", "holds no preference pair");
  for (std::size_t i = 0; i < data.size(); ++i)
    if (data[i].prompt.empty() || data[i].chosen.empty() || data[i].rejected.empty())
      rlhf::detail::fail(error_kind::empty, fn, "data",
                         "pair " + std::to_string(i) + " has an empty prompt or response");
}

/// The next `batch` pairs of the epoch's order into `rows`; a new
/// permutation of the pairs when the order is used up.
inline void next_rows(std::vector<index_t>& order, long long& cursor, rng_t& rng, long long batch,
                      std::vector<index_t>& rows) {
  rows.clear();
  for (long long i = 0; i < batch; ++i) {
    if (cursor == static_cast<long long>(order.size())) {
      permutation(static_cast<index_t>(order.size()), rng, order);
      cursor = 0;
    }
    rows.push_back(order[static_cast<std::size_t>(cursor++)]);
  }
}

/// A checkpoint's order of the pairs: a permutation of 0..n-1 (else st.bad).
inline std::vector<index_t> read_order(const state_reader& st, std::size_t size) {
  std::istringstream in(st.field("order"));
  std::size_t n = 0;
  in >> n;
  if (!in || n != size) st.bad("holds an order of another dataset size (not this dataset's checkpoint)");
  std::vector<index_t> order(n);
  std::vector<bool> seen(n, false);
  for (auto& i : order) {
    in >> i;
    if (!in || i < 0 || static_cast<std::size_t>(i) >= n || seen[static_cast<std::size_t>(i)])
      st.bad("holds a malformed order of the pairs");
    seen[static_cast<std::size_t>(i)] = true;
  }
  return order;
}
}  // namespace detail

/// The structure of a DPO run. DPO has no sampled KL term (its KL toward the
/// reference is inside the loss, through beta), no advantages and no token
/// aggregation; the KL estimator is kept for the experiment's record only.
template <kl_estimator KL = kl_estimator::k1, class Real = double>
struct dpo_structure {
  static constexpr algorithm algo = algorithm::dpo;
  static constexpr kl_estimator kl = KL;
  using real_type = Real;
};

template <class P, class R, class S = dpo_structure<>>
class dpo_trainer : public runnable<dpo_trainer<P, R, S>> {
 public:
  using token_type = token_type_of_t<P>;
  using batch_type = basic_batch<token_type>;
  using real_type = real_of_t<S>;
  using pair_type = basic_preference<token_type>;

 private:
  using B = batch_type;
  using W = real_type;
  static_assert(S::algo == algorithm::dpo, "rlhf: train::dpo_trainer runs DPO experiments only (rlhf::algo::dpo)");
  static_assert(check_policy<P, B>());
  static_assert(check_reference_model<R, B>());
  static constexpr auto be_ = detail::backend_of<S>();

 public:
  /// Where the trainer's buffers and ops live: the backend tag's memory.
  using space_type = space_of_tag_t<std::remove_cv_t<decltype(be_)>>;

  dpo_trainer(P& policy, R& reference, std::vector<pair_type> data, dpo_options o)
      : policy_(policy), ref_(reference), data_(std::move(data)), o_(std::move(o)), rng_(o_.seed) {
    constexpr const char* fn = "train::dpo_trainer";
    detail::check_pairs(data_, fn);
    check_dpo_options(o_, fn);
    rlhf::detail::require_param(o_.objective == preference_objective::dpo || std::is_same_v<space_type, host_space>, fn,
                                "objective", "kto, cpo and orpo run on the CPU only for now (dpo runs on rlhf::cuda)");
    check_reference_update<R, P>(o_.ref, fn);
    order_ = detail::permutation(static_cast<index_t>(data_.size()), rng_);
  }

  [[nodiscard]] long long step_count() const noexcept { return step_; }
  [[nodiscard]] const record& last() const noexcept { return last_; }
  [[nodiscard]] const dpo_options& options() const noexcept { return o_; }
  [[nodiscard]] const step_profile& profile() const noexcept { return prof_; }

  /// The resolved configuration (the metrics file's first record).
  [[nodiscard]] record config() const { return config::config_record<S>(o_); }

  /// Sequence log-probabilities (sum over completion tokens, no gradient) of pairs `rows`.
  template <class M>
  static void sequence_logps(M& model, const std::vector<pair_type>& data, const std::vector<index_t>& rows,
                             std::vector<double>& chosen, std::vector<double>& rejected) {
    detail::nograd_eval<double, M, B, space_type> ev;
    detail::batch_mirror<token_type, space_type> bm;
    detail::work_t<double, 1, space_type> sums;
    detail::boundary_buf<double, 1, host_space> host;
    step_profile prof;
    for (int side = 0; side < 2; ++side) {
      B b;
      make_batch(data, rows, side == 0, b);
      bm.set(be_, b, prof.batch_bytes);
      ev.run(be_, model, b, bm, prof);
      auto& out = side == 0 ? chosen : rejected;
      out.assign(rows.size(), 0.0);
      detail::memory<space_type>::require_finite(be_, "train::dpo_trainer", "log_probs", ev.logp());
      sums.resize({b.size()});
      ops::masked_sum_rows(be_, ev.logp(), bm.mask(), sums.view());
      const auto h = detail::bring<double, host_space>(be_, tensor_view<const double, 1, space_type>(sums.view()), host,
                                                       prof.batch_bytes);
      for (index_t i = 0; i < b.size(); ++i) out[static_cast<std::size_t>(i)] = h(i);
    }
  }

  /// One step; a step that throws leaves the cursor, the engine and the order of the pairs as they were.
  record step() {
    return detail::guarded_step(
        prof_, [&] { return step_impl(); }, rollback_, o_.rollback, cursor_, rng_, order_, step_, last_, cache_valid_);
  }

  void save(const std::string& path) const {
    state_writer w("dpo_trainer", structure_name<S>());
    std::ostringstream g, ord;
    g << rng_;
    ord << order_.size();
    for (auto i : order_) ord << ' ' << i;
    w.number("step", step_).number("cursor", cursor_).field("rng", g.str()).field("order", ord.str());
    w.model("policy", policy_).model("reference", ref_);
    write_checkpoint(path, w.str());
  }

  void load(const std::string& path) {
    const state_reader st(read_checkpoint(path), path, "dpo_trainer", structure_name<S>());
    st.expect_only({"step", "cursor", "rng", "order"}, {"policy", "reference"});
    const long long step = st.integer("step"), cursor = st.integer("cursor");
    rng_t g;
    st.read("rng", g);
    std::vector<index_t> order = detail::read_order(st, data_.size());
    if (step < 0 || cursor < 0 || static_cast<std::size_t>(cursor) > order.size()) st.bad("holds a bad step or cursor");
    st.expect_model<P>("policy");
    st.expect_model<R>("reference");
    load_models(st, {slot("policy", policy_), slot("reference", ref_)});
    step_ = step;
    cursor_ = cursor;
    rng_ = g;
    order_ = std::move(order);
    cache_valid_ = false;
  }

 private:
  record step_impl() {
    if (!cache_valid_) refresh_reference_cache();
    detail::next_rows(order_, cursor_, rng_, o_.batch_size, rows_);
    const auto n = static_cast<index_t>(rows_.size());
    make_batch(data_, rows_, true, bc_);
    make_batch(data_, rows_, false, br_);
    bmc_.set(be_, bc_, prof_.batch_bytes);
    bmr_.set(be_, br_, prof_.batch_bytes);
    if constexpr (std::is_same_v<space_type, host_space>)
      if (o_.objective == preference_objective::kto) {  // KTO's KL inputs, before the policy's forwards
        mismatched_logps(policy_, kl_pol_ev_, kl_pol_);
        mismatched_logps(ref_, kl_ref_ev_, kl_ref_);
      }
    // both forwards are alive until their backwards (two handles)
    pass_c_.forward(be_, policy_, bc_, bmc_, false, prof_);
    pass_r_.forward(be_, policy_, br_, bmr_, false, prof_);
    using mem = detail::memory<space_type>;
    mem::require_finite(be_, "train::dpo_trainer::step", "policy log_probs (chosen)", pass_c_.logp());
    mem::require_finite(be_, "train::dpo_trainer::step", "policy log_probs (rejected)", pass_r_.logp());
    for (auto* v : {&c_, &r_, &dc_, &dr_}) v->resize({n});
    // the pairs' cached reference log-probs and lengths: host numbers, then where the ops run
    for (auto* v : {&rc_h_, &rr_h_, &lc_h_, &lr_h_}) v->resize({n});
    for (index_t i = 0; i < n; ++i) {
      const auto row = static_cast<std::size_t>(rows_[static_cast<std::size_t>(i)]);
      rc_h_(i) = static_cast<W>(ref_chosen_[row]);
      rr_h_(i) = static_cast<W>(ref_rejected_[row]);
      lc_h_(i) = static_cast<W>(data_[row].chosen.size());
      lr_h_(i) = static_cast<W>(data_[row].rejected.size());
    }
    using V1 = tensor_view<const W, 1, space_type>;
    auto put = [&](const tensor<W, 1>& h, detail::boundary_buf<W, 1, space_type>& d) {
      return detail::bring<W, space_type>(be_, h.view(), d, prof_.batch_bytes);
    };
    const V1 rc = put(rc_h_, rc_), rr = put(rr_h_, rr_), lc = put(lc_h_, lc_), lr = put(lr_h_, lr_);
    gc_.resize(bc_.response_mask.shape());
    gr_.resize(br_.response_mask.shape());
    double g2 = 0;
    record extra;  // the objective's own statistics (nll, kto_kl, log odds)
    const auto s = detail::timed(prof_.ops_s, [&] {
      ops::masked_sum_rows(be_, pass_c_.logp(), bmc_.mask(), c_.view());
      ops::masked_sum_rows(be_, pass_r_.logp(), bmr_.mask(), r_.view());
      dpo::outputs<W, space_type> out;
      out.dchosen = dc_.view();
      out.drejected = dr_.view();
      const auto sum = [&] {
        if constexpr (std::is_same_v<space_type, host_space>)
          if (o_.objective != preference_objective::dpo) return other_loss(n, extra);
        return dpo::loss(be_, V1(c_.view()), V1(r_.view()), rc, rr, o_.loss, out, lc, lr);
      }();
      // d loss / d logp_t = d loss / d sum on every completion token
      ops::masked_sum_rows_backward(be_, bmc_.mask(), V1(dc_.view()), gc_.view());
      ops::masked_sum_rows_backward(be_, bmr_.mask(), V1(dr_.view()), gr_.view());
      g2 = ops::sum_squares(be_, tensor_view<const W, 2, space_type>(dc_.data(), {n, 1})) +
           ops::sum_squares(be_, tensor_view<const W, 2, space_type>(dr_.data(), {n, 1}));
      return sum;
    });
    using CV = tensor_view<const W, 2, space_type>;
    rollback_.keep("policy", policy_);  // given back if the step throws from here on
    pass_c_.backward(be_, policy_, CV(gc_.view()), CV{}, prof_);
    pass_r_.backward(be_, policy_, CV(gr_.view()), CV{}, prof_);
    detail::timed(prof_.model_s, [&] { policy_.step(); });
    ++step_;
    record rec;
    rec.set("step", step_).set("loss", s.loss).set("reward_margin", s.reward_margin);
    rec.set("reward_accuracy", s.reward_accuracy).set("chosen_reward", s.chosen_reward);
    rec.set("rejected_reward", s.rejected_reward).set("grad_norm", std::sqrt(g2));
    for (const auto& [k, v] : extra.items()) rec.set(k, std::get<double>(v));
    // what DPO can measure toward the reference without sampling: the mean sequence
    // log-ratios log pi(y|x) - log pi_ref(y|x) of the dataset's completions (not a KL: the
    // completions are not the policy's samples, and these can be negative)
    const auto ch = detail::bring<W, host_space>(be_, V1(c_.view()), c_h_, prof_.batch_bytes);
    const auto rh = detail::bring<W, host_space>(be_, V1(r_.view()), r_h_, prof_.batch_bytes);
    double lrc = 0, lrr = 0;
    for (index_t i = 0; i < n; ++i) {
      lrc += (static_cast<double>(ch(i)) - static_cast<double>(rc_h_(i))) / static_cast<double>(n);
      lrr += (static_cast<double>(rh(i)) - static_cast<double>(rr_h_(i))) / static_cast<double>(n);
    }
    rec.set("chosen_log_ratio", lrc).set("rejected_log_ratio", lrr);
    if (o_.ref.kind != ref_update::frozen && step_ % o_.ref.every == 0) rollback_.keep("reference", ref_);
    const bool updated = detail::timed(prof_.model_s, [&] { return update_reference(ref_, policy_, o_.ref, step_); });
    if (updated) cache_valid_ = false;
    rec.set("ref_updated", updated);
    last_ = rec;
    return rec;
  }

  /// KTO, CPO (SimPO, AlphaPO) or ORPO on the step's pairs (host): reads the
  /// policy's sums c_, r_ and the cached reference sums, writes d loss / d
  /// sum into dc_, dr_; the summary has the DPO trainer's fields (each
  /// objective's own rewards), `extra` the objective's statistics.
  dpo::summary other_loss(index_t n, record& extra) {
    const double nn = static_cast<double>(n);
    dpo::summary s;
    // the chosen tokens' mean NLL and its gradient by each chosen sum (-coef / tokens: every
    // chosen token's d/dlogp, which masked_sum_rows_backward spreads as d/dsum times the mask)
    auto nll = [&](double coef) {
      double tokens = 0, sum = 0;
      for (index_t i = 0; i < n; ++i) {
        tokens += static_cast<double>(lc_h_(i));
        sum += static_cast<double>(c_(i));
      }
      for (index_t i = 0; i < n; ++i) dc_(i) = static_cast<W>(static_cast<double>(dc_(i)) - coef / tokens);
      extra.set("nll", -sum / tokens);
      return -coef * sum / tokens;
    };
    if (o_.objective == preference_objective::kto) {
      // 2n unpaired samples: the chosen desirable, the rejected undesirable; z from the
      // mismatched pairs (prompt i with the chosen completion of pair i + 1), no gradient
      tensor<W, 1> lp({2 * n}), ref({2 * n}), label({2 * n}), d({2 * n}), rw({2 * n}), kl({n}), refkl({n});
      for (index_t i = 0; i < n; ++i) {
        lp(i) = c_(i);
        lp(n + i) = r_(i);
        ref(i) = rc_h_(i);
        ref(n + i) = rr_h_(i);
        label(i) = 1;
        label(n + i) = 0;
      }
      for (index_t i = 0; i < n; ++i) {
        kl(i) = static_cast<W>(kl_pol_[static_cast<std::size_t>(i)]);
        refkl(i) = static_cast<W>(kl_ref_[static_cast<std::size_t>(i)]);
      }
      const auto k = pref::kto_loss(be_, lp.view(), in_view<W, 1>(ref.view()), label.view(), in_view<W, 1>(kl.view()),
                                    in_view<W, 1>(refkl.view()), o_.kto, {}, rw.view(), d.view());
      for (index_t i = 0; i < n; ++i) {
        dc_(i) = static_cast<W>(static_cast<double>(d(i)) / (2 * nn));
        dr_(i) = static_cast<W>(static_cast<double>(d(n + i)) / (2 * nn));
        dpo::detail::add_reward_pair(s, static_cast<double>(rw(i)), static_cast<double>(rw(n + i)), nn);
      }
      s.loss = k.loss;
      extra.set("kto_kl", k.kl);
      return s;
    }
    // CPO and ORPO: TRL passes length-averaged log-probs to ORPO, IPO and SimPO, sums otherwise
    const bool avg = o_.objective == preference_objective::orpo || o_.cpo.type == pref::cpo_loss_type::ipo ||
                     o_.cpo.type == pref::cpo_loss_type::simpo;
    tensor<W, 1> x({n}), y({n}), dx({n}), dy({n}), rx({n}), ry({n});
    for (index_t i = 0; i < n; ++i) {
      x(i) = avg ? static_cast<W>(static_cast<double>(c_(i)) / static_cast<double>(lc_h_(i))) : c_(i);
      y(i) = avg ? static_cast<W>(static_cast<double>(r_(i)) / static_cast<double>(lr_h_(i))) : r_(i);
    }
    const pref::pair_outputs<W> po{{}, rx.view(), ry.view(), dx.view(), dy.view()};
    double pair_loss = 0, sign = 1;
    if (o_.objective == preference_objective::cpo) {
      pair_loss = pref::cpo_loss(be_, x.view(), in_view<W, 1>(y.view()), o_.cpo, po);
    } else {
      const auto orr = pref::orpo_loss(be_, x.view(), in_view<W, 1>(y.view()), o_.orpo_beta, po);
      pair_loss = -orr.loss;  // the trainer's loss is NLL - mean(beta logsig(log odds))
      sign = -1;
      extra.set("log_odds_ratio", orr.log_odds_ratio).set("log_odds_chosen", orr.log_odds_chosen);
    }
    for (index_t i = 0; i < n; ++i) {
      const double sc = avg ? static_cast<double>(lc_h_(i)) : 1.0, sr = avg ? static_cast<double>(lr_h_(i)) : 1.0;
      dc_(i) = static_cast<W>(sign * static_cast<double>(dx(i)) / nn / sc);
      dr_(i) = static_cast<W>(sign * static_cast<double>(dy(i)) / nn / sr);
      dpo::detail::add_reward_pair(s, static_cast<double>(rx(i)), static_cast<double>(ry(i)), nn);
    }
    s.loss = pair_loss + nll(o_.objective == preference_objective::cpo ? o_.cpo_alpha : 1.0);
    return s;
  }

  /// Sequence log-probs (no gradient) of the step's mismatched pairs: prompt
  /// of pair i with the chosen completion of pair (i + 1) mod n (KTO's KL).
  template <class M>
  void mismatched_logps(M& model, detail::nograd_eval<double, M, B, space_type>& ev, std::vector<double>& out) {
    make_batch(data_, rows_, true, bk_, 1);
    bmk_.set(be_, bk_, prof_.batch_bytes);
    ev.run(be_, model, bk_, bmk_, prof_);
    detail::memory<space_type>::require_finite(be_, "train::dpo_trainer", "log_probs (KTO's mismatched pairs)",
                                               ev.logp());
    tensor<double, 1> sums({bk_.size()});
    ops::masked_sum_rows(be_, ev.logp(), bmk_.mask(), sums.view());
    out.assign(sums.storage().begin(), sums.storage().end());
  }

  static void make_batch(const std::vector<pair_type>& data, const std::vector<index_t>& rows, bool chosen, B& b,
                         index_t shift = 0) {
    detail::make_pair_batch(data, rows, chosen, b, shift);
  }

  void refresh_reference_cache() {
    constexpr std::size_t chunk = 256;
    ref_chosen_.clear();
    ref_rejected_.clear();
    std::vector<index_t> rows;
    std::vector<double> c, r;
    for (std::size_t s = 0; s < data_.size(); s += chunk) {
      rows.clear();
      for (std::size_t i = s; i < std::min(data_.size(), s + chunk); ++i) rows.push_back(static_cast<index_t>(i));
      sequence_logps(ref_, data_, rows, c, r);
      ref_chosen_.insert(ref_chosen_.end(), c.begin(), c.end());
      ref_rejected_.insert(ref_rejected_.end(), r.begin(), r.end());
    }
    cache_valid_ = true;
  }

  P& policy_;
  R& ref_;
  std::vector<pair_type> data_;
  dpo_options o_;
  rng_t rng_;
  std::vector<index_t> order_, rows_;
  std::vector<double> ref_chosen_, ref_rejected_, kl_pol_, kl_ref_;
  bool cache_valid_ = false;
  long long step_ = 0, cursor_ = 0;
  record last_;
  step_profile prof_;
  model_rollback rollback_;
  B bc_, br_, bk_;
  detail::nograd_eval<double, P, B, space_type> kl_pol_ev_;  // KTO's mismatched pairs
  detail::nograd_eval<double, R, B, space_type> kl_ref_ev_;
  detail::batch_mirror<token_type, space_type> bmc_, bmr_, bmk_;
  detail::grad_pass<W, P, B, space_type> pass_c_, pass_r_;
  detail::work_t<W, 1, space_type> c_, r_, dc_, dr_;
  tensor<W, 1> rc_h_, rr_h_, lc_h_, lr_h_;
  detail::boundary_buf<W, 1, space_type> rc_, rr_, lc_, lr_;
  detail::boundary_buf<W, 1, host_space> c_h_, r_h_;
  detail::work_t<W, 2, space_type> gc_, gr_;
};

}  // namespace rlhf::train
