// rlhf++ — the reward-model loop: a Bradley-Terry fit of a scalar reward
// model on preference pairs (TRL RewardTrainer, OpenRLHF rm_trainer).
//
// Each step takes the next minibatch of (prompt, chosen, rejected) pairs
// (reshuffled every epoch), scores both completions, evaluates the pairwise
// loss (rm::pairwise_loss: -log sigmoid(r_c - r_r - margin), or OpenRLHF's
// log-exp; TRL's centering term c * mean((r_c + r_r)^2)) and hands the
// model d loss / d score of each side.
//
// Call order per step: s_c = rm.score(chosen), s_r = rm.score(rejected),
// rm.backward(chosen, ds_c), rm.backward(rejected, ds_r), rm.step().
// The model is a TrainableRewardModel: a RewardModel (score) with
// backward(const batch&, tensor_view<const double, 1> dscores) and step().
#pragma once

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "../objectives/reward.hpp"
#include "checkpoint.hpp"
#include "dpo_trainer.hpp"
#include "metrics.hpp"
#include "model_calls.hpp"

namespace rlhf {

/// A reward model the reward trainer can fit: RewardModel plus the gradient
/// of its scores and an optimizer step.
template <class R, class B = batch_for<R>>
concept TrainableRewardModel = RewardModel<R, B> && requires(R& r, const B& b, tensor_view<const double, 1> d) {
  r.backward(b, d);
  r.step();
};

}  // namespace rlhf

namespace rlhf::train {

struct rm_options {
  long long steps = 100;
  long long batch_size = 16;  ///< pairs per step
  /// the pairwise loss: TRL's (sigmoid, optional centering) or OpenRLHF's (sigmoid, logexp)
  rm::pairwise_params loss = rm::pairwise_params::trl();
  std::string metrics_path;
  bool progress = true;
  long long progress_every = 10;
  std::string checkpoint_path;
  long long checkpoint_every = 0;
  unsigned long long seed = 0;
  /// A step that throws gives the model its state back (a Checkpointable model).
  bool rollback = true;
};

inline void check_rm_options(const rm_options& o, const char* fn) {
  using rlhf::detail::require_param;
  check_run_fields(o, fn);
  require_param(o.batch_size >= 1, fn, "batch_size", "must be >= 1");
  if (o.loss.center_coef) {
    rlhf::detail::require_finite_param(*o.loss.center_coef, fn, "loss.center_coef");
    rlhf::detail::require_nonneg_param(*o.loss.center_coef, fn, "loss.center_coef");
  }
}

/// Fits a reward model to preference pairs. `margins` (optional, one per
/// pair): subtracted from r_c - r_r (Llama 2's graded preferences; the
/// logexp loss ignores it, as OpenRLHF does).
template <class RM>
class reward_trainer : public runnable<reward_trainer<RM>> {
 public:
  using token_type = token_type_of_t<RM>;
  using batch_type = basic_batch<token_type>;
  using pair_type = basic_preference<token_type>;

 private:
  using B = batch_type;
  static_assert(check_reward_model<RM, B>());
  static_assert(TrainableRewardModel<RM, B>,
                "rlhf: train::reward_trainer needs a TrainableRewardModel: score(const batch&), "
                "backward(const batch&, rlhf::tensor_view<const double, 1> dscores) and step() (docs/concepts.md)");

 public:
  reward_trainer(RM& model, std::vector<pair_type> data, rm_options o, std::vector<double> margins = {})
      : rm_(model), data_(std::move(data)), margins_(std::move(margins)), o_(std::move(o)), rng_(o_.seed) {
    constexpr const char* fn = "train::reward_trainer";
    detail::check_pairs(data_, fn);
    if (!margins_.empty()) {
      rlhf::detail::require_param(margins_.size() == data_.size(), fn, "margins",
                                  "must hold one margin per pair (" + std::to_string(data_.size()) + "), got " +
                                      std::to_string(margins_.size()));
      for (std::size_t i = 0; i < margins_.size(); ++i)
        if (!std::isfinite(margins_[i]))
          rlhf::detail::fail(error_kind::non_finite, fn, "margins", "is not finite at pair " + std::to_string(i));
    }
    check_rm_options(o_, fn);
    order_ = detail::permutation(static_cast<index_t>(data_.size()), rng_);
  }

  [[nodiscard]] long long step_count() const noexcept { return step_; }
  [[nodiscard]] const record& last() const noexcept { return last_; }
  [[nodiscard]] const rm_options& options() const noexcept { return o_; }
  [[nodiscard]] const step_profile& profile() const noexcept { return prof_; }

  /// The resolved configuration (the metrics file's first record).
  [[nodiscard]] record config() const {
    record r;
    r.set("record", "config").set("trainer", "reward_model");
    r.set("steps", o_.steps).set("batch_size", o_.batch_size).set("loss", to_string(o_.loss.kind));
    if (o_.loss.center_coef)
      r.set("center_coef", *o_.loss.center_coef);
    else
      r.set("center_coef", std::nullopt);
    r.set("margins", !margins_.empty()).set("seed", static_cast<long long>(o_.seed));
    return r;
  }

  /// The model's scores of completions `side` (chosen or rejected) of pairs `rows`, checked.
  static std::vector<double> scores(RM& model, const std::vector<pair_type>& data, const std::vector<index_t>& rows,
                                    bool chosen) {
    B b;
    detail::make_pair_batch(data, rows, chosen, b);
    return read_scores(model, b);
  }

  /// One step; a step that throws leaves the cursor, the engine and the order of the pairs as they were.
  record step() {
    return detail::guarded_step(
        prof_, [&] { return step_impl(); }, rollback_, o_.rollback, cursor_, rng_, order_, step_, last_);
  }

  void save(const std::string& path) const {
    state_writer w("reward_trainer", "reward_model");
    std::ostringstream g, ord;
    g << rng_;
    ord << order_.size();
    for (auto i : order_) ord << ' ' << i;
    w.number("step", step_).number("cursor", cursor_).field("rng", g.str()).field("order", ord.str());
    w.model("reward", rm_);
    write_checkpoint(path, w.str());
  }

  void load(const std::string& path) {
    const state_reader st(read_checkpoint(path), path, "reward_trainer", "reward_model");
    st.expect_only({"step", "cursor", "rng", "order"}, {"reward"});
    const long long step = st.integer("step"), cursor = st.integer("cursor");
    rng_t g;
    st.read("rng", g);
    std::vector<index_t> order = detail::read_order(st, data_.size());
    if (step < 0 || cursor < 0 || static_cast<std::size_t>(cursor) > order.size()) st.bad("holds a bad step or cursor");
    st.expect_model<RM>("reward");
    load_models(st, {slot("reward", rm_)});
    step_ = step;
    cursor_ = cursor;
    rng_ = g;
    order_ = std::move(order);
  }

 private:
  static std::vector<double> read_scores(RM& model, const B& b) {
    constexpr const char* fn = "train::reward_trainer::step";
    decltype(auto) s = model.score(b);
    std::vector<double> v;
    if constexpr (std::is_convertible_v<decltype(s), std::vector<double>>) {
      v = std::vector<double>(s);
    } else {
      const auto x = rlhf::as_view(s);
      for (index_t i = 0; i < x.extent(0); ++i) v.push_back(static_cast<double>(x(i)));
    }
    if (static_cast<index_t>(v.size()) != b.size())
      rlhf::detail::fail(
          error_kind::shape, fn, "reward score",
          "returned " + std::to_string(v.size()) + " scores for " + std::to_string(b.size()) + " sequences");
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        rlhf::detail::fail(error_kind::non_finite, fn, "reward score",
                           "is not finite for sequence " + std::to_string(i));
    return v;
  }

  record step_impl() {
    detail::next_rows(order_, cursor_, rng_, o_.batch_size, rows_);
    const auto n = static_cast<index_t>(rows_.size());
    detail::make_pair_batch(data_, rows_, true, bc_);
    detail::make_pair_batch(data_, rows_, false, br_);
    const auto sc = detail::timed(prof_.model_s, [&] { return read_scores(rm_, bc_); });
    const auto sr = detail::timed(prof_.model_s, [&] { return read_scores(rm_, br_); });
    std::vector<double> mg;
    if (!margins_.empty())
      for (auto i : rows_) mg.push_back(margins_[static_cast<std::size_t>(i)]);
    std::vector<double> dc(static_cast<std::size_t>(n)), dr(dc.size());
    using V1 = tensor_view<const double, 1>;
    const auto res = detail::timed(prof_.ops_s, [&] {
      return rm::pairwise_loss(cpu, V1(sc.data(), {n}), V1(sr.data(), {n}), o_.loss,
                               mg.empty() ? V1{} : V1(mg.data(), {n}), tensor_view<double, 1>(dc.data(), {n}),
                               tensor_view<double, 1>(dr.data(), {n}));
    });
    double g2 = 0;
    for (std::size_t i = 0; i < dc.size(); ++i) g2 += dc[i] * dc[i] + dr[i] * dr[i];
    rollback_.keep("reward", rm_);  // given back if the step throws from here on
    detail::timed(prof_.model_s, [&] {
      rm_.backward(bc_, V1(dc.data(), {n}));
      rm_.backward(br_, V1(dr.data(), {n}));
      rm_.step();
    });
    ++step_;
    double mc = 0, mr = 0;
    for (index_t i = 0; i < n; ++i) {
      mc += sc[static_cast<std::size_t>(i)] / static_cast<double>(n);
      mr += sr[static_cast<std::size_t>(i)] / static_cast<double>(n);
    }
    record r;
    r.set("step", step_).set("loss", res.loss).set("accuracy", res.accuracy).set("margin", res.margin);
    r.set("chosen_score", mc).set("rejected_score", mr).set("grad_norm", std::sqrt(g2));
    last_ = r;
    return r;
  }

  RM& rm_;
  std::vector<pair_type> data_;
  std::vector<double> margins_;
  rm_options o_;
  rng_t rng_;
  std::vector<index_t> order_, rows_;
  long long step_ = 0, cursor_ = 0;
  record last_;
  step_profile prof_;
  model_rollback rollback_;
  B bc_, br_;
};

}  // namespace rlhf::train
