// rlhf++ — the DPO loop.
//
// A dataset of (prompt, chosen, rejected) token sequences. The reference
// model's sequence log-probabilities are computed once and cached (and
// recomputed only after a reference update: TR-DPO). Each step takes the next
// minibatch of pairs (reshuffled every epoch), sums the policy's token
// log-probs over each completion, evaluates any DPO loss type
// (objectives/dpo.hpp), and back-propagates d loss / d logp = d loss / d sum
// on every completion token.
#pragma once

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "../objectives/dpo.hpp"
#include "rl_trainer.hpp"

namespace rlhf::train {

struct preference {
  std::vector<token_t> prompt, chosen, rejected;
};

/// The structure of a DPO run: the KL estimator of the logged `kl_ref`
/// (DPO's KL toward the reference is inside its loss, through beta; no
/// sampled KL term, no advantages, no token aggregation).
template <kl_estimator KL = kl_estimator::k1>
struct dpo_structure {
  static constexpr algorithm algo = algorithm::dpo;
  static constexpr kl_estimator kl = KL;
};

template <class P, class R, class S = dpo_structure<>>
class dpo_trainer : public runnable<dpo_trainer<P, R, S>> {
  static_assert(S::algo == algorithm::dpo, "rlhf: train::dpo_trainer runs DPO experiments only (rlhf::algo::dpo)");
  static_assert(check_policy<P>());
  static_assert(check_reference_model<R>());

 public:
  dpo_trainer(P& policy, R& reference, std::vector<preference> data, dpo_options o)
      : policy_(policy), ref_(reference), data_(std::move(data)), o_(std::move(o)), rng_(o_.seed) {
    constexpr const char* fn = "train::dpo_trainer";
    if (data_.empty()) rlhf::detail::fail(error_kind::empty, fn, "data", "holds no preference pair");
    for (std::size_t i = 0; i < data_.size(); ++i)
      if (data_[i].prompt.empty() || data_[i].chosen.empty() || data_[i].rejected.empty())
        rlhf::detail::fail(error_kind::empty, fn, "data", "pair " + std::to_string(i) + " has an empty prompt or response");
    rlhf::detail::require_param(o_.batch_size >= 1, fn, "batch_size", "must be >= 1");
    rlhf::detail::require_param(o_.steps >= 0, fn, "steps", "must be >= 0");
    check_reference_policy(o_.ref, fn);
    order_ = detail::permutation(static_cast<index_t>(data_.size()), rng_);
  }

  [[nodiscard]] long long step_count() const noexcept { return step_; }
  [[nodiscard]] const record& last() const noexcept { return last_; }
  [[nodiscard]] const dpo_options& options() const noexcept { return o_; }

  /// The resolved configuration (the metrics file's first record).
  [[nodiscard]] record config() const { return config::config_record<S>(o_); }

  /// Sequence log-probabilities (sum over completion tokens) of pairs `rows`.
  template <class M>
  static void sequence_logps(M& model, const std::vector<preference>& data, const std::vector<index_t>& rows,
                             std::vector<double>& chosen, std::vector<double>& rejected) {
    const batch bc = make_batch(data, rows, true), br = make_batch(data, rows, false);
    chosen = sums(model.log_probs(bc), bc);
    rejected = sums(model.log_probs(br), br);
  }

  record step() {
    if (!cache_valid_) refresh_reference_cache();
    std::vector<index_t> rows;
    for (long long i = 0; i < o_.batch_size; ++i) {
      if (cursor_ == static_cast<long long>(order_.size())) {
        order_ = detail::permutation(static_cast<index_t>(data_.size()), rng_);
        cursor_ = 0;
      }
      rows.push_back(order_[static_cast<std::size_t>(cursor_++)]);
    }
    const auto n = static_cast<index_t>(rows.size());
    const batch bc = make_batch(data_, rows, true), br = make_batch(data_, rows, false);
    auto fc = detail::forward(policy_, bc, false);
    auto fr = detail::forward(policy_, br, false);
    const auto c = sums(fc.logp, bc), r = sums(fr.logp, br);
    std::vector<double> rc, rr;
    for (auto i : rows) {
      rc.push_back(ref_chosen_[static_cast<std::size_t>(i)]);
      rr.push_back(ref_rejected_[static_cast<std::size_t>(i)]);
    }
    std::vector<double> dc(rows.size()), dr(rows.size());
    dpo::outputs<double> out;
    out.dchosen = tensor_view<double, 1>(dc.data(), {n});
    out.drejected = tensor_view<double, 1>(dr.data(), {n});
    std::vector<double> lc(rows.size()), lr(rows.size());
    for (index_t i = 0; i < n; ++i) {
      lc[static_cast<std::size_t>(i)] = static_cast<double>(data_[static_cast<std::size_t>(rows[static_cast<std::size_t>(i)])].chosen.size());
      lr[static_cast<std::size_t>(i)] = static_cast<double>(data_[static_cast<std::size_t>(rows[static_cast<std::size_t>(i)])].rejected.size());
    }
    auto v1 = [&](const std::vector<double>& x) { return tensor_view<const double, 1>(x.data(), {n}); };
    const auto s = dpo::loss(cpu, v1(c), v1(r), v1(rc), v1(rr), o_.loss, out, v1(lc), v1(lr));
    tensor<double, 2> gc(bc.response_mask.shape()), gr(br.response_mask.shape());
    double g2 = 0;
    for (index_t i = 0; i < n; ++i) {
      for (index_t t = 0; t < gc.extent(1); ++t) gc(i, t) = dc[static_cast<std::size_t>(i)] * bc.response_mask(i, t);
      for (index_t t = 0; t < gr.extent(1); ++t) gr(i, t) = dr[static_cast<std::size_t>(i)] * br.response_mask(i, t);
      g2 += dc[static_cast<std::size_t>(i)] * dc[static_cast<std::size_t>(i)] + dr[static_cast<std::size_t>(i)] * dr[static_cast<std::size_t>(i)];
    }
    detail::backward(policy_, bc, fc, gc, nullptr);
    detail::backward(policy_, br, fr, gr, nullptr);
    policy_.step();
    ++step_;
    record rec;
    rec.set("step", step_).set("loss", s.loss).set("reward_margin", s.reward_margin);
    rec.set("reward_accuracy", s.reward_accuracy).set("chosen_reward", s.chosen_reward);
    rec.set("rejected_reward", s.rejected_reward).set("grad_norm", std::sqrt(g2));
    double kl = 0;  // mean over the batch of sum_t (logp - ref_logp) on the chosen completions
    for (index_t i = 0; i < n; ++i) kl += (c[static_cast<std::size_t>(i)] - rc[static_cast<std::size_t>(i)]) / static_cast<double>(n);
    rec.set("kl_ref_chosen", kl);
    // the structure's estimator of KL(pi || pi_ref) from each chosen
    // completion's sequence log-ratio (k1: the same as kl_ref_chosen)
    double est = 0;
    const kl_params kp{S::kl, false, INFINITY, INFINITY};
    for (index_t i = 0; i < n; ++i)
      est += math::kl_token(c[static_cast<std::size_t>(i)], rc[static_cast<std::size_t>(i)], kp).value / static_cast<double>(n);
    rec.set("kl_ref", est);
    const bool updated = update_reference(ref_, policy_, o_.ref, step_);
    if (updated) cache_valid_ = false;
    rec.set("ref_updated", updated);
    last_ = rec;
    return rec;
  }

  void save(const std::string& path) const {
    std::ostringstream os;
    os << "dpo_trainer\nstep " << step_ << "\ncursor " << cursor_ << "\nrng " << rng_ << "\norder " << order_.size();
    for (auto i : order_) os << ' ' << i;
    os << '\n';
    std::string pol, ref;
    if constexpr (Checkpointable<P>) {
      std::ostringstream ms;
      policy_.save(ms);
      pol = ms.str();
    }
    if constexpr (Checkpointable<R>) {
      std::ostringstream ms;
      ref_.save(ms);
      ref = ms.str();
    }
    os << "policy " << pol.size() << '\n' << pol << "reference " << ref.size() << '\n' << ref;
    write_checkpoint(path, os.str());
  }

  void load(const std::string& path) {
    std::istringstream in(read_checkpoint(path));
    std::string k;
    long long step = 0, cursor = 0;
    std::size_t n = 0;
    rng_t g;
    auto bad = [&] {
      rlhf::detail::fail(error_kind::param, "train::dpo_trainer::load", "checkpoint", "'" + path + "' is not a DPO checkpoint");
    };
    in >> k;
    if (k != "dpo_trainer") bad();
    in >> k >> step >> k >> cursor >> k >> g >> k >> n;
    if (!in || n != data_.size()) bad();
    std::vector<index_t> order(n);
    for (auto& i : order) in >> i;
    auto blob = [&](const char* name) {
      std::size_t sz = 0;
      in >> k >> sz;
      if (k != name) bad();
      in.get();
      std::string s(sz, '\0');
      in.read(s.data(), static_cast<std::streamsize>(sz));
      return s;
    };
    const std::string pol = blob("policy"), ref = blob("reference");
    if constexpr (Checkpointable<P>) {
      std::istringstream ms(pol);
      policy_.load(ms);
    }
    if constexpr (Checkpointable<R>) {
      std::istringstream ms(ref);
      ref_.load(ms);
    }
    step_ = step;
    cursor_ = cursor;
    rng_ = g;
    order_ = order;
    cache_valid_ = false;
  }

 private:
  static batch make_batch(const std::vector<preference>& data, const std::vector<index_t>& rows, bool chosen) {
    const auto n = static_cast<index_t>(rows.size());
    index_t width = 0, T = 0;
    for (auto i : rows) {
      const auto& d = data[static_cast<std::size_t>(i)];
      width = std::max(width, static_cast<index_t>(d.prompt.size()));
      T = std::max(T, static_cast<index_t>((chosen ? d.chosen : d.rejected).size()));
    }
    batch b;
    b.prompts.tokens = tensor<token_t, 2>({n, width});
    b.responses = tensor<token_t, 2>({n, T});
    b.response_mask = tensor<double, 2>({n, T});
    for (index_t r = 0; r < n; ++r) {
      const auto& d = data[static_cast<std::size_t>(rows[static_cast<std::size_t>(r)])];
      for (std::size_t t = 0; t < d.prompt.size(); ++t) b.prompts.tokens(r, static_cast<index_t>(t)) = d.prompt[t];
      b.prompts.lengths.push_back(static_cast<index_t>(d.prompt.size()));
      b.prompts.ids.push_back(rows[static_cast<std::size_t>(r)]);
      const auto& y = chosen ? d.chosen : d.rejected;
      for (std::size_t t = 0; t < y.size(); ++t) {
        b.responses(r, static_cast<index_t>(t)) = y[t];
        b.response_mask(r, static_cast<index_t>(t)) = 1.0;
      }
    }
    return b;
  }

  static std::vector<double> sums(const tensor<double, 2>& logp, const batch& b) {
    rlhf::detail::require_same_shape("train::dpo_trainer", "log_probs", logp.view(), "responses", b.responses.view());
    rlhf::detail::require_finite("train::dpo_trainer", "log_probs", logp.view());
    std::vector<double> s(static_cast<std::size_t>(b.size()), 0.0);
    for (index_t i = 0; i < b.size(); ++i)
      for (index_t t = 0; t < b.length(); ++t)
        if (b.response_mask(i, t) != 0) s[static_cast<std::size_t>(i)] += logp(i, t);
    return s;
  }

  void refresh_reference_cache() {
    std::vector<index_t> all(data_.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<index_t>(i);
    constexpr std::size_t chunk = 256;
    ref_chosen_.clear();
    ref_rejected_.clear();
    for (std::size_t s = 0; s < all.size(); s += chunk) {
      std::vector<index_t> rows(all.begin() + static_cast<long>(s),
                                all.begin() + static_cast<long>(std::min(all.size(), s + chunk)));
      std::vector<double> c, r;
      sequence_logps(ref_, data_, rows, c, r);
      ref_chosen_.insert(ref_chosen_.end(), c.begin(), c.end());
      ref_rejected_.insert(ref_rejected_.end(), r.begin(), r.end());
    }
    cache_valid_ = true;
  }

  P& policy_;
  R& ref_;
  std::vector<preference> data_;
  dpo_options o_;
  rng_t rng_;
  std::vector<index_t> order_;
  std::vector<double> ref_chosen_, ref_rejected_;
  bool cache_valid_ = false;
  long long step_ = 0, cursor_ = 0;
  record last_;
};

}  // namespace rlhf::train
