// rlhf++ — the on-policy RLHF loop (PPO, InstructGPT style; and A2C).
//
// One step, each stage in its own header:
//   rollout.hpp        prompts -> policy.generate -> reward.score (token-level scores)
//                      + the no-gradient log-probs of the policy (old) and the reference
//   kl_advantages.hpp  KL toward the reference (in the reward, or measured for the
//                      loss) -> advantages (GAE with a value function, or GRPO / RLOO /
//                      REINFORCE++) -> batch statistics
//   update.hpp         PPO: epochs x minibatches of the clipped objective (+ value
//                      loss, entropy bonus, KL in the loss), early stop when approx
//                      KL(old || new) > 1.5 target; A2C: one update on the whole batch
//   this file          KL controller, reference update, diagnostics, checkpoints
// The models are reached through model_calls.hpp only. The algorithm, the
// KL estimator and placement, the advantage estimator, the aggregation and
// the working precision are compile-time choices (structure.hpp); numbers
// are rl_options.
#pragma once

#include <chrono>
#include <string>
#include <type_traits>
#include <vector>

#include "../concepts/model_concepts.hpp"
#include "reflect.hpp"
#include "../kl/controller.hpp"
#include "checkpoint.hpp"
#include "diagnostics.hpp"
#include "kl_advantages.hpp"
#include "metrics.hpp"
#include "model_calls.hpp"
#include "options.hpp"
#include "reference.hpp"
#include "rollout.hpp"
#include "structure.hpp"
#include "update.hpp"

namespace rlhf::train {

template <class S, class P, class R, class RM, class V = no_value_function>
class rl_trainer : public runnable<rl_trainer<S, P, R, RM, V>> {
 public:
  using token_type = token_type_of_t<P>;
  using batch_type = basic_batch<token_type>;
  using real_type = real_of_t<S>;

 private:
  using B = batch_type;
  using W = real_type;
  static_assert(check_policy<P, B>());
  static_assert(check_reference_model<R, B>());
  static_assert(check_reward_model<RM, B>());
  static_assert(std::is_same_v<W, float> || std::is_same_v<W, double>,
                "rlhf: the trainer's working precision (the structure's real_type) is float or double");
  static_assert(
      S::algo != algorithm::dpo,
      "rlhf: a DPO experiment learns from preference pairs, not from a reward model: use "
      "train::dpo_trainer (or make_trainer with the pairs, std::vector<train::preference>) (docs/configuration.md)");
  static_assert(S::algo != algorithm::a2c || S::agg == agg_mode::token_mean,
                "rlhf: A2C (Stable-Baselines3) averages its losses over tokens: the only aggregation it supports is "
                "rlhf::agg::token_mean (docs/a2c.md)");
  static_assert(!S::needs_value || ValueFunction<V, B>,
                "rlhf: GAE advantages and A2C need a ValueFunction (values, backward, step); pass one, or choose a "
                "critic-free estimator (grpo, rloo, reinforce_pp, maxrl, loo_grpo, gdpo) for PPO (docs/training.md)");
  static_assert(kl_correction_of<S>() == kl_correction::none || S::kl_where == kl_placement::loss,
                "rlhf: the IS-corrected KL forms (kl::k3_is, k4, k3_on_policy) correct the gradient of a KL in the "
                "loss: choose kl_placement::loss (rlhf::kl_in_loss)");
  static_assert(S::adv != advantage_estimator::gdpo || !ComponentRewardModel<RM, B> ||
                    S::kl_where == kl_placement::loss,
                "rlhf: GDPO with reward components normalises the components, not the token rewards, so a KL in the "
                "reward would be dropped: put the KL in the loss (rlhf::kl_in_loss)");

 public:
  static constexpr bool has_value = ValueFunction<V, B>;
  static constexpr auto be_ = detail::backend_of<S>();
  /// Where the trainer's [B, T] buffers and ops live: the backend tag's memory.
  using space_type = space_of_tag_t<std::remove_cv_t<decltype(be_)>>;

  rl_trainer(P& policy, R& reference, RM& reward, std::vector<std::vector<token_type>> prompts, rl_options o,
             V* value = nullptr)
      : policy_(policy),
        ref_(reference),
        reward_(reward),
        value_(value),
        src_{std::move(prompts), 0},
        o_(std::move(o)),
        rng_(o_.seed),
        kl_ctl_(o_.kl_coef, o_.kl_target, o_.kl_horizon),
        diag_(o_.diag) {
    constexpr const char* fn = "train::rl_trainer";
    // The aggregation is the structure's (a compile-time choice).
    for (auto* a : {&o_.ppo.agg, &o_.value.agg}) {
      if (a->mode != S::agg && a->mode != agg_mode::token_mean)
        rlhf::detail::fail(error_kind::param, fn, a == &o_.ppo.agg ? "ppo.agg.mode" : "value.agg.mode",
                           std::string("is ") + to_string(a->mode) + " but the structure's aggregation is " +
                               to_string(S::agg) + ": declare it in the type (rlhf::agg::..., docs/configuration.md)");
      a->mode = S::agg;
    }
    src_.check(fn);
    check_rl_options(o_, fn);
    rejection_ = rejection_options(o_.rollout_corr);  // verl's strings, parsed once (an error names them)
    if (o_.rollout_corr.active()) {
      rlhf::detail::require_param(S::algo == algorithm::ppo, fn, "rollout_corr",
                                  "weights and masks the PPO policy loss: A2C has none (turn it off)");
      rlhf::detail::require_param(std::is_same_v<space_type, host_space>, fn, "rollout_corr",
                                  "runs on the CPU only for now (turn it off on rlhf::cuda)");
    }
    check_reference_update<R, P>(o_.ref, fn);
    if constexpr (group_relative(S::adv))
      rlhf::detail::require_param(o_.group_size >= 2, fn, "group_size",
                                  "must be >= 2 for group-relative advantages (GRPO, RLOO, MaxRL, LOO-GRPO, GDPO)");
    constexpr bool gives_entropy = grad_path<P, B>() != model_path::log_probs || EntropyPolicy<P, B>;
    if (o_.entropy_coef != 0 && !gives_entropy)
      rlhf::detail::fail(error_kind::param, fn, "entropy_coef",
                         "needs a policy that exposes logits, hidden states or entropy (LogitsPolicy, "
                         "HiddenStatePolicy, EntropyPolicy; docs/concepts.md)");
    if (S::algo == algorithm::a2c && o_.a2c.ent_coef != 0 && !gives_entropy)
      rlhf::detail::fail(error_kind::param, fn, "a2c.ent_coef",
                         "needs a policy that exposes logits, hidden states or entropy (docs/concepts.md)");
    if constexpr (S::needs_value)
      if (value_ == nullptr)
        rlhf::detail::fail(error_kind::param, fn, "value", "is null but this structure needs a value function");
  }

  [[nodiscard]] long long step_count() const noexcept { return step_; }
  [[nodiscard]] double kl_coef() const noexcept { return kl_ctl_.value(); }
  [[nodiscard]] const record& last() const noexcept { return last_; }
  [[nodiscard]] const rl_options& options() const noexcept { return o_; }
  /// Time and boundary traffic of the last step (not in the records).
  [[nodiscard]] const step_profile& profile() const noexcept { return prof_; }

  /// The resolved configuration (the metrics file's first record): the
  /// structure, then every option (reflected: config/reflect.hpp).
  [[nodiscard]] record config() const { return config::config_record<S>(o_); }

  /// One training step; returns its metrics. A step that throws leaves the
  /// trainer as it was: the prompt cursor, the random engine, the KL
  /// controller, the diagnostics, the step count, and (rollback, the
  /// default) every Checkpointable model the step had changed.
  record step() {
    return detail::guarded_step(
        prof_, [&] { return step_impl(); }, rollback_, o_.rollback, src_.cursor, rng_, step_, kl_ctl_, diag_, last_);
  }

  /// Trainer state and every Checkpointable model, atomically (checkpoint.hpp).
  void save(const std::string& path) const {
    state_writer w("rl_trainer", structure_name<S>());
    std::ostringstream d;
    diag_.save(d);
    w.number("step", step_).number("cursor", src_.cursor).number("kl_coef", kl_ctl_.value());
    std::ostringstream g;
    g << rng_;
    w.field("rng", g.str()).field("diagnostics", d.str());
    w.model("policy", policy_).model("reference", ref_);
    if constexpr (has_value) w.model("value", *value_);
    write_checkpoint(path, w.str());
  }

  /// Loads all or nothing: the whole file is checked (structure, every
  /// section) before anything changes; a model that rejects its bytes gets
  /// its previous state back.
  void load(const std::string& path) {
    const state_reader st(read_checkpoint(path), path, "rl_trainer", structure_name<S>());
    std::vector<std::string> models{"policy", "reference"};
    if constexpr (has_value) models.emplace_back("value");
    st.expect_only({"step", "cursor", "kl_coef", "rng", "diagnostics"}, models);
    const long long step = st.integer("step"), cursor = st.integer("cursor");
    const double coef = st.real("kl_coef");
    if (step < 0 || cursor < 0 || !(coef >= 0) || !std::isfinite(coef))
      st.bad("holds a negative step, cursor or KL coefficient");
    rng_t g;
    st.read("rng", g);
    diagnostics d = diag_;
    try {
      std::istringstream in(st.field("diagnostics"));
      d.load(in);
      if (!in) st.bad("has a malformed field 'diagnostics'");
    } catch (const rlhf::error&) {
      throw;
    } catch (const std::exception&) {  // a number that does not parse
      st.bad("has a malformed field 'diagnostics'");
    }
    st.expect_model<P>("policy");
    st.expect_model<R>("reference");
    std::vector<model_slot> slots{slot("policy", policy_), slot("reference", ref_)};
    if constexpr (has_value) {
      st.expect_model<V>("value");
      slots.push_back(slot("value", *value_));
    }
    load_models(st, slots);
    step_ = step;
    src_.cursor = cursor;
    kl_ctl_.set_value(coef);
    rng_ = g;
    diag_ = d;
  }

 private:
  record step_impl() {
    constexpr const char* fn = "train::rl_trainer::step";
    auto x = src_.next(o_.prompts_per_step, o_.group_size);
    ro_ = detail::sample(policy_, x, o_.sample, rng_, prof_);
    const B& b = ro_.seqs;
    const index_t B_ = b.size();
    bm_.set(be_, b, prof_.batch_bytes);  // the mask and labels where the ops run (no copy on the host)
    // the no-gradient log-probs at the sampling temperature: old (recomputed, as verl does) and reference
    old_.run(be_, policy_, b, bm_, prof_);
    ref_eval_.run(be_, ref_, b, bm_, prof_);
    mem::require_finite(be_, fn, "policy log_probs", old_.logp());
    mem::require_finite(be_, fn, "reference log_probs", ref_eval_.logp());
    record r;
    r.set("step", step_ + 1);
    r.set("reward", detail::score<W>(be_, reward_, b, bm_.mask(), ws_.scores, prof_));
    tensor_view<const W, 2, space_type> old_values{};
    if constexpr (has_value) {
      val_eval_.run(be_, *value_, b, prof_);
      old_values = val_eval_.values();
      mem::require_finite(be_, fn, "values", old_values);
    }
    tensor_view<const double, 2, space_type> sampled{};
    if (ro_.logprobs.size() > 0) {
      // the sampler's log-probs against the trainer's recomputation (same temperature: ~0)
      rlhf::detail::require_same_shape(fn, "rollout logprobs", ro_.logprobs.view(), "responses", b.responses.view());
      sampled = detail::bring<double, space_type>(be_, ro_.logprobs.view(), sampled_, prof_.batch_bytes);
      const auto d = detail::timed(prof_.ops_s, [&] { return ops::prob_diff(be_, old_.logp(), sampled, bm_.mask()); });
      r.set("rollout_probs_diff_max", d.max).set("rollout_probs_diff_mean", d.mean);
    }
    const double beta = kl_ctl_.value();
    const double kl_in = detail::kl_and_advantages<S, W>(be_, b, bm_.mask(), old_.logp(), ref_eval_.logp(), old_values,
                                                         beta, o_, ws_, r, prof_);
    detail::rollout_views<W, space_type> in{old_.logp(), ref_eval_.logp(), ws_.advantages.view(), ws_.returns.view(),
                                            old_values};
    if (o_.rollout_corr.active()) {
      if constexpr (std::is_same_v<space_type, host_space>) {
        if (sampled.null())
          rlhf::detail::fail(error_kind::empty, fn, "rollout logprobs",
                             "are needed by rollout_corr: generate must return the sampler's log-probs");
        std::tie(in.loss_mask, in.is_weights) = detail::timed(prof_.ops_s, [&] {
          return detail::rollout_correct<W>(be_, old_.logp(), sampled, bm_.mask(), o_.rollout_corr, rejection_, ws_, r);
        });
      }
    }
    // the update changes the models: they are kept first (given back if the step throws)
    rollback_.keep("policy", policy_);
    if constexpr (has_value) rollback_.keep("value", *value_);
    if constexpr (S::algo == algorithm::ppo) {
      detail::value_pass<W, V, B, space_type>* vp = nullptr;
      if constexpr (has_value) vp = &vpass_;
      detail::ppo_update<S, W>(be_, policy_, value_, b, in, o_, beta, rng_, upd_, gpass_, vp, r, prof_);
    } else {
      detail::a2c_update<S, W>(be_, policy_, *value_, b, bm_, in, o_, beta, upd_, gpass_, vpass_, r, prof_);
    }
    if (o_.adaptive_kl) kl_ctl_.update(kl_in, static_cast<double>(B_));
    ++step_;
    if (o_.ref.kind != ref_update::frozen && step_ % o_.ref.every == 0) rollback_.keep("reference", ref_);
    r.set("ref_updated", detail::timed(prof_.model_s, [&] { return update_reference(ref_, policy_, o_.ref, step_); }));
    diag_.observe(step_, r);
    last_ = r;
    return r;
  }

  struct none {};
  using mem = detail::memory<space_type>;
  using value_eval_t = std::conditional_t<has_value, detail::value_eval<W, V, B, space_type>, none>;
  using value_pass_t =
      std::conditional_t<has_value, detail::value_pass<W, V, B, space_type>, detail::value_pass<W, V, B, space_type>*>;

  P& policy_;
  R& ref_;
  RM& reward_;
  V* value_;
  detail::prompt_source<token_type> src_;
  rl_options o_;
  rng_t rng_;
  kl::adaptive_controller kl_ctl_;
  diagnostics diag_;
  long long step_ = 0;
  record last_;
  step_profile prof_;
  model_rollback rollback_;
  // the step's state and buffers, reused from step to step
  basic_rollout<token_type> ro_;
  detail::batch_mirror<token_type, space_type> bm_;
  detail::boundary_buf<double, 2, space_type> sampled_;
  detail::nograd_eval<W, P, B, space_type> old_;
  detail::nograd_eval<W, R, B, space_type> ref_eval_;
  value_eval_t val_eval_;
  detail::step_buffers<W, space_type> ws_;
  detail::update_buffers<W, B, space_type> upd_;
  std::vector<rollout_corr::rs_option> rejection_;
  detail::grad_pass<W, P, B, space_type> gpass_;
  value_pass_t vpass_{};
};

}  // namespace rlhf::train
