// rlhf++ — the on-policy RLHF loop (PPO, InstructGPT style; and A2C).
//
// One step:
//   prompts -> policy.generate -> reward.score -> reference log-probs
//   -> KL toward the reference (in the reward, or in the loss)
//   -> advantages (GAE with a value function, or GRPO / RLOO / REINFORCE++)
//   -> PPO: epochs x minibatches of the clipped objective (+ value loss,
//      entropy bonus), early stop when approx KL(old || new) > 1.5 target;
//      A2C: one unclipped update on the whole batch
//   -> KL controller update -> reference-model update -> metrics, diagnostics.
// The algorithm, the KL estimator, where the KL goes and the advantage
// estimator are compile-time choices (rl_structure); numbers are rl_options.
#pragma once

#include <cmath>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "../advantage/gae.hpp"
#include "../advantage/grpo.hpp"
#include "../advantage/reinforce.hpp"
#include "../advantage/rloo.hpp"
#include "../concepts/model_concepts.hpp"
#include "../kl/controller.hpp"
#include "../kl/penalty.hpp"
#include "../objectives/a2c.hpp"
#include "../objectives/ppo.hpp"
#include "../ops/logits.hpp"
#include "../config/reflect.hpp"
#include "checkpoint.hpp"
#include "diagnostics.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "reference.hpp"

namespace rlhf::train {

using rlhf::advantage_estimator;
using rlhf::algorithm;
using rlhf::kl_placement;

/// The structural (compile-time) choices of a run.
/// (rlhf::experiment, config/experiment.hpp, is the same with tag objects,
/// reflection and checks; the trainers accept either.)
template <algorithm Algo = algorithm::ppo, kl_estimator KL = kl_estimator::k1, kl_placement Where = kl_placement::reward,
          advantage_estimator Adv = advantage_estimator::gae, agg_mode Agg = agg_mode::token_mean>
struct rl_structure {
  static constexpr algorithm algo = Algo;
  static constexpr kl_estimator kl = KL;
  static constexpr kl_placement kl_where = Where;
  static constexpr advantage_estimator adv = Adv;
  static constexpr agg_mode agg = Agg;
  static constexpr bool needs_value = Adv == advantage_estimator::gae || Algo == algorithm::a2c;
};

namespace detail {
/// Log-probs (and entropy) of a batch under a policy, through the logits
/// path when the model offers one.
struct forward_result {
  tensor<double, 2> logp, entropy, logits;
  bool has_entropy = false;
};

template <class P>
forward_result forward(P& p, const batch& b, bool want_entropy) {
  forward_result f;
  const index_t B = b.size(), T = b.length();
  if constexpr (LogitsPolicy<P>) {
    f.logits = p.logits(b);
    rlhf::detail::require_extent("train::forward", "logits", f.logits.view(), 0, B * T, "one row per response token");
    tensor<token_t, 1> labels({B * T});
    for (index_t i = 0; i < B * T; ++i) labels.data()[i] = b.responses.data()[i];
    f.logp = tensor<double, 2>({B, T});
    f.entropy = tensor<double, 2>({B, T});
    ops::logprobs_entropy(cpu, f.logits.view(), labels.view(), tensor_view<double, 1>(f.logp.data(), {B * T}),
                          tensor_view<double, 1>(f.entropy.data(), {B * T}));
    f.has_entropy = true;
  } else {
    f.logp = p.log_probs(b);
    if constexpr (EntropyPolicy<P>) {
      if (want_entropy) {
        f.entropy = p.entropy(b);
        f.has_entropy = true;
      }
    }
  }
  rlhf::detail::require_same_shape("train::forward", "log_probs", f.logp.view(), "responses", b.responses.view());
  return f;
}

template <class P>
void backward(P& p, const batch& b, const forward_result& f, const tensor<double, 2>& dlogp,
              const tensor<double, 2>* dentropy) {
  const index_t B = b.size(), T = b.length();
  if constexpr (LogitsPolicy<P>) {
    tensor<token_t, 1> labels({B * T});
    for (index_t i = 0; i < B * T; ++i) labels.data()[i] = b.responses.data()[i];
    tensor<double, 2> dlogits(f.logits.shape());
    ops::logprobs_entropy_backward(
        cpu, f.logits.view(), labels.view(), tensor_view<const double, 1>(dlogp.data(), {B * T}),
        dentropy ? tensor_view<const double, 1>(dentropy->data(), {B * T}) : tensor_view<const double, 1>{},
        dlogits.view());
    p.backward_logits(b, tensor_view<const double, 2>(dlogits.view()));
  } else if constexpr (EntropyPolicy<P>) {
    if (dentropy) p.backward(b, dlogp.view(), dentropy->view());
    else p.backward(b, dlogp.view());
  } else {
    p.backward(b, dlogp.view());
  }
}

/// The structure's backend tag (rlhf::experiment carries one; rlhf::cpu otherwise).
template <class S>
constexpr cpu_t backend_of() {
  if constexpr (requires { S::backend; }) return S::backend;
  else return cpu;
}

inline std::vector<index_t> permutation(index_t n, rng_t& g) {
  std::vector<index_t> v(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  for (index_t i = n - 1; i > 0; --i) std::swap(v[static_cast<std::size_t>(i)], v[g() % static_cast<std::uint64_t>(i + 1)]);
  return v;
}

inline double masked_mean_or_zero(const tensor<double, 2>& x, const tensor<double, 2>& m) {
  double s = 0, n = 0;
  for (index_t i = 0; i < x.size(); ++i) {
    n += m.data()[i];
    if (m.data()[i] != 0) s += m.data()[i] * x.data()[i];
  }
  return n > 0 ? s / n : 0.0;
}
}  // namespace detail

template <class S, class P, class R, class RM, class V = no_value_function>
class rl_trainer : public runnable<rl_trainer<S, P, R, RM, V>> {
  static_assert(check_policy<P>());
  static_assert(check_reference_model<R>());
  static_assert(check_reward_model<RM>());
  static_assert(S::algo != algorithm::dpo,
                "rlhf: a DPO experiment learns from preference pairs, not from a reward model: use "
                "train::dpo_trainer (or make_trainer with the pairs, std::vector<train::preference>) (docs/configuration.md)");
  static_assert(S::algo != algorithm::a2c || S::agg == agg_mode::token_mean,
                "rlhf: A2C (Stable-Baselines3) averages its losses over tokens: the only aggregation it supports is "
                "rlhf::agg::token_mean (docs/a2c.md)");
  static_assert(!S::needs_value || ValueFunction<V>,
                "rlhf: GAE advantages and A2C need a ValueFunction (values, backward, step); pass one, or choose a "
                "critic-free estimator (grpo, rloo, reinforce_pp) for PPO (docs/training.md)");

 public:
  static constexpr bool has_value = ValueFunction<V>;
  static constexpr cpu_t be_ = detail::backend_of<S>();

  rl_trainer(P& policy, R& reference, RM& reward, std::vector<std::vector<token_t>> prompts, rl_options o,
             V* value = nullptr)
      : policy_(policy), ref_(reference), reward_(reward), value_(value), prompts_(std::move(prompts)),
        o_(std::move(o)), rng_(o_.seed), kl_ctl_(o_.kl_coef, o_.kl_target, o_.kl_horizon), diag_(o_.diag) {
    constexpr const char* fn = "train::rl_trainer";
    // The aggregation is the structure's (a compile-time choice).
    for (auto* a : {&o_.ppo.agg, &o_.value.agg}) {
      if (a->mode != S::agg && a->mode != agg_mode::token_mean)
        rlhf::detail::fail(error_kind::param, fn, a == &o_.ppo.agg ? "ppo.agg.mode" : "value.agg.mode",
                           std::string("is ") + to_string(a->mode) + " but the structure's aggregation is " +
                               to_string(S::agg) + ": declare it in the type (rlhf::agg::..., docs/configuration.md)");
      a->mode = S::agg;
    }
    if (prompts_.empty()) rlhf::detail::fail(error_kind::empty, fn, "prompts", "is empty: nothing to train on");
    for (std::size_t i = 0; i < prompts_.size(); ++i)
      if (prompts_[i].empty())
        rlhf::detail::fail(error_kind::empty, fn, "prompts", "holds an empty prompt at index " + std::to_string(i));
    rlhf::detail::require_param(o_.steps >= 0, fn, "steps", "must be >= 0");
    rlhf::detail::require_param(o_.prompts_per_step >= 1, fn, "prompts_per_step", "must be >= 1");
    rlhf::detail::require_param(o_.group_size >= 1, fn, "group_size", "must be >= 1");
    if constexpr (S::adv == advantage_estimator::grpo || S::adv == advantage_estimator::rloo)
      rlhf::detail::require_param(o_.group_size >= 2, fn, "group_size",
                                  "must be >= 2 for group-relative advantages (GRPO, RLOO)");
    rlhf::detail::require_param(o_.ppo_epochs >= 1, fn, "ppo_epochs", "must be >= 1");
    rlhf::detail::require_param(o_.minibatch_size >= 0, fn, "minibatch_size", "must be >= 0 (0 = whole batch)");
    rlhf::detail::require_param(o_.sample.max_new_tokens >= 1, fn, "sample.max_new_tokens", "must be >= 1");
    rlhf::detail::require_nonneg_param(o_.kl_coef, fn, "kl_coef");
    rlhf::detail::require_finite_param(o_.entropy_coef, fn, "entropy_coef");
    rlhf::detail::require_param(!(o_.early_stop_kl <= 0), fn, "early_stop_kl", "must be > 0 (INFINITY = off)");
    ppo::check_policy_params(o_.ppo, fn);
    check_reference_policy(o_.ref, fn);
    if (o_.entropy_coef != 0 && !LogitsPolicy<P> && !EntropyPolicy<P>)
      rlhf::detail::fail(error_kind::param, fn, "entropy_coef",
                         "needs a policy that exposes logits or entropy (LogitsPolicy / EntropyPolicy, docs/concepts.md)");
    if constexpr (S::needs_value)
      if (value_ == nullptr)
        rlhf::detail::fail(error_kind::param, fn, "value", "is null but this structure needs a value function");
  }

  [[nodiscard]] long long step_count() const noexcept { return step_; }
  [[nodiscard]] double kl_coef() const noexcept { return kl_ctl_.value(); }
  [[nodiscard]] const record& last() const noexcept { return last_; }
  [[nodiscard]] const rl_options& options() const noexcept { return o_; }

  /// The resolved configuration (the metrics file's first record): the
  /// structure, then every option (reflected: config/reflect.hpp).
  [[nodiscard]] record config() const { return config::config_record<S>(o_); }

  /// One training step; returns its metrics.
  record step() {
    constexpr const char* fn = "train::rl_trainer::step";
    prompt_batch x = next_prompts();
    rollout ro = policy_.generate(x, o_.sample, rng_);
    batch& b = ro.seqs;
    const index_t B = b.size(), T = b.length();
    if (B != x.size())
      rlhf::detail::fail(error_kind::shape, fn, "generate", "returned " + std::to_string(B) + " sequences for " +
                                                                std::to_string(x.size()) + " prompts");
    b.prompts = x;  // keep the ids/lengths the trainer assigned
    rlhf::detail::require_same_shape(fn, "response_mask", b.response_mask.view(), "responses", b.responses.view());
    const auto& m = b.response_mask;

    // Old log-probs (recomputed, as verl does), reference log-probs, rewards.
    auto f_old = detail::forward(policy_, b, false);
    tensor<double, 2> old_logp = std::move(f_old.logp);
    rlhf::detail::require_finite(fn, "policy log_probs", old_logp.view());
    tensor<double, 2> ref_logp = ref_.log_probs(b);
    rlhf::detail::require_same_shape(fn, "reference log_probs", ref_logp.view(), "responses", b.responses.view());
    rlhf::detail::require_finite(fn, "reference log_probs", ref_logp.view());
    std::vector<double> scores = reward_.score(b);
    if (static_cast<index_t>(scores.size()) != B)
      rlhf::detail::fail(error_kind::shape, fn, "reward score", "returned " + std::to_string(scores.size()) +
                                                                    " scores for " + std::to_string(B) + " sequences");
    for (std::size_t i = 0; i < scores.size(); ++i)
      if (!std::isfinite(scores[i]))
        rlhf::detail::fail(error_kind::non_finite, fn, "reward score",
                           "is not finite for sequence " + std::to_string(i) + " (" + std::to_string(scores[i]) + ")");
    tensor<double, 2> token_scores({B, T});
    if constexpr (TokenRewardModel<RM>) {
      token_scores = reward_.token_scores(b);
      rlhf::detail::require_same_shape(fn, "reward token_scores", token_scores.view(), "responses", b.responses.view());
      rlhf::detail::require_finite(fn, "reward token_scores", token_scores.view());
    } else {
      for (index_t i = 0; i < B; ++i) {
        index_t last = -1;
        for (index_t t = 0; t < T; ++t)
          if (m(i, t) != 0) last = t;
        if (last < 0) rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has an empty response at row " + std::to_string(i));
        token_scores(i, last) = scores[static_cast<std::size_t>(i)];
      }
    }

    const kl_params klp = kl_params::verl(S::kl);
    tensor<double, 2> rewards({B, T});
    kl::in_reward_stats kst{};
    const double beta = kl_ctl_.value();
    if constexpr (S::kl_where == kl_placement::reward)
      kst = kl::apply_in_reward(be_, token_scores.view(), old_logp.view(), ref_logp.view(), m.view(), beta, klp,
                                rewards.view());
    else {
      rewards = token_scores;
      tensor<double, 2> tmp({B, T});
      kst = kl::apply_in_reward(be_, token_scores.view(), old_logp.view(), ref_logp.view(), m.view(), 0.0, klp,
                                tmp.view());
    }

    // Advantages and returns.
    tensor<double, 2> advantages({B, T}), returns({B, T}), old_values({B, T});
    double zero_groups = 0;
    adv::outputs<double> out{advantages.view(), returns.view()};
    if constexpr (S::adv == advantage_estimator::gae) {
      old_values = value_->values(b);
      rlhf::detail::require_same_shape(fn, "values", old_values.view(), "responses", b.responses.view());
      adv::gae_params gp{o_.gamma, o_.lam, o_.whiten_advantages};
      adv::gae(be_, rewards.view(), old_values.view(), m.view(), gp, out);
    } else {
      if constexpr (has_value) old_values = value_->values(b);
      std::vector<long long> index(static_cast<std::size_t>(B));
      for (index_t i = 0; i < B; ++i) index[static_cast<std::size_t>(i)] = i / o_.group_size;
      auto idx = tensor_view<const long long, 1>(index.data(), {B});
      if constexpr (S::adv == advantage_estimator::grpo) adv::grpo(be_, rewards.view(), m.view(), idx, o_.grpo, out);
      else if constexpr (S::adv == advantage_estimator::rloo)
        adv::rloo(be_, rewards.view(), m.view(), idx, adv::rloo_params{true}, out);
      else {
        adv::reinforce_pp_params rp;
        rp.gamma = o_.gamma;
        adv::reinforce_pp(be_, rewards.view(), m.view(), rp, out);
      }
      if (o_.group_size >= 2) {
        for (index_t g = 0; g < B / o_.group_size; ++g) {
          double lo = INFINITY, hi = -INFINITY;
          for (index_t i = g * o_.group_size; i < (g + 1) * o_.group_size; ++i) {
            double s = 0;
            for (index_t t = 0; t < T; ++t) s += rewards(i, t);
            lo = std::fmin(lo, s);
            hi = std::fmax(hi, s);
          }
          if (hi - lo == 0) zero_groups += 1;
        }
        zero_groups /= static_cast<double>(B / o_.group_size);
      }
    }

    record r;
    r.set("step", step_ + 1);
    double mean_score = 0;
    for (double s : scores) mean_score += s / static_cast<double>(B);
    r.set("reward", mean_score);
    double kl_seq = 0, len = 0;
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) {
        kl_seq += m(i, t) * (old_logp(i, t) - ref_logp(i, t)) / static_cast<double>(B);
        len += m(i, t) / static_cast<double>(B);
      }
    r.set("kl_ref", kl_seq).set("kl_ref_token", kst.mean_seq_kl).set("kl_coef", beta).set("response_length", len);
    {
      double mu = 0, n = 0, v = 0;
      for (index_t i = 0; i < B * T; ++i) {
        n += m.data()[i];
        mu += m.data()[i] * advantages.data()[i];
      }
      mu /= n;
      for (index_t i = 0; i < B * T; ++i) v += m.data()[i] * (advantages.data()[i] - mu) * (advantages.data()[i] - mu);
      r.set("adv_std", std::sqrt(v / n));
    }
    if (o_.group_size >= 2) r.set("zero_variance_groups", zero_groups);

    if constexpr (S::algo == algorithm::ppo) update_ppo(b, old_logp, ref_logp, advantages, returns, old_values, r);
    else update_a2c(b, ref_logp, advantages, returns, r);

    if (o_.adaptive_kl) kl_ctl_.update(kst.mean_seq_kl, static_cast<double>(B));
    ++step_;
    r.set("ref_updated", update_reference(ref_, policy_, o_.ref, step_));
    diag_.observe(step_, r);
    last_ = r;
    return r;
  }

  /// Trainer state and every Checkpointable model, atomically.
  void save(const std::string& path) const {
    std::ostringstream os;
    os.precision(17);
    os << "rl_trainer " << to_string(S::algo) << '\n';
    os << "step " << step_ << "\ncursor " << cursor_ << "\nkl_coef " << kl_ctl_.value() << "\nrng " << rng_ << '\n';
    os << "diagnostics ";
    diag_.save(os);
    save_model(os, "policy", policy_);
    save_model(os, "reference", ref_);
    if constexpr (has_value) save_model(os, "value", *value_);
    write_checkpoint(path, os.str());
  }

  void load(const std::string& path) {
    std::istringstream in(read_checkpoint(path));
    auto expect = [&](const std::string& key) {
      std::string k;
      in >> k;
      if (k != key)
        rlhf::detail::fail(error_kind::param, "train::rl_trainer::load", "checkpoint",
                           "'" + path + "' has '" + k + "' where '" + key + "' was expected (written by another trainer?)");
    };
    expect("rl_trainer");
    std::string algo;
    in >> algo;
    if (algo != to_string(S::algo))
      rlhf::detail::fail(error_kind::param, "train::rl_trainer::load", "checkpoint",
                         "'" + path + "' was written by a " + algo + " trainer");
    long long step = 0, cursor = 0;
    double coef = 0;
    rng_t g;
    expect("step");
    in >> step;
    expect("cursor");
    in >> cursor;
    expect("kl_coef");
    in >> coef;
    expect("rng");
    in >> g;
    expect("diagnostics");
    diagnostics d = diag_;
    d.load(in);
    if (!in) rlhf::detail::fail(error_kind::param, "train::rl_trainer::load", "checkpoint", "'" + path + "' is malformed");
    load_model(in, "policy", policy_, path);
    load_model(in, "reference", ref_, path);
    if constexpr (has_value) load_model(in, "value", *value_, path);
    step_ = step;
    cursor_ = cursor;
    kl_ctl_.set_value(coef);
    rng_ = g;
    diag_ = d;
  }

 private:
  prompt_batch next_prompts() {
    const index_t B = o_.prompts_per_step * o_.group_size;
    index_t width = 0;
    std::vector<std::size_t> which;
    for (long long i = 0; i < o_.prompts_per_step; ++i) {
      which.push_back(static_cast<std::size_t>(cursor_ % static_cast<long long>(prompts_.size())));
      width = std::max(width, static_cast<index_t>(prompts_[which.back()].size()));
      ++cursor_;
    }
    prompt_batch x;
    x.tokens = tensor<token_t, 2>({B, width});
    for (index_t i = 0; i < B; ++i) {
      const auto& p = prompts_[which[static_cast<std::size_t>(i / o_.group_size)]];
      for (std::size_t t = 0; t < p.size(); ++t) x.tokens(i, static_cast<index_t>(t)) = p[t];
      x.lengths.push_back(static_cast<index_t>(p.size()));
      x.ids.push_back(static_cast<index_t>(which[static_cast<std::size_t>(i / o_.group_size)]));
    }
    return x;
  }

  void update_ppo(const batch& b, const tensor<double, 2>& old_logp, const tensor<double, 2>& ref_logp,
                  const tensor<double, 2>& advantages, const tensor<double, 2>& returns,
                  const tensor<double, 2>& old_values, record& r) {
    const index_t B = b.size();
    const index_t mbs = o_.minibatch_size > 0 ? std::min<index_t>(o_.minibatch_size, B) : B;
    ppo::actor_params ap;
    ap.policy = o_.ppo;
    ap.entropy_coef = o_.entropy_coef;
    ap.kl = kl_params::verl(S::kl);
    ap.kl_coef = S::kl_where == kl_placement::loss ? kl_ctl_.value() : 0.0;
    double pg = 0, clip = 0, akl = 0, ent = 0, vf = 0, vclip = 0, gnorm = 0, n_mb = 0, epochs = 0;
    bool stopped = false;
    for (long long e = 0; e < o_.ppo_epochs && !stopped; ++e) {
      const auto perm = detail::permutation(B, rng_);
      for (index_t start = 0; start < B && !stopped; start += mbs) {
        std::vector<index_t> rows(perm.begin() + start, perm.begin() + std::min(B, start + mbs));
        const batch mb = select_rows(b, rows);
        const auto mold = select_rows(old_logp, rows), mref = select_rows(ref_logp, rows);
        const auto madv = select_rows(advantages, rows);
        const auto& mm = mb.response_mask;
        auto f = detail::forward(policy_, mb, o_.entropy_coef != 0);
        tensor<double, 2> dlogp(mold.shape()), dent(mold.shape());
        const auto res = ppo::actor_loss(
            cpu, f.logp.view(), mold.view(), madv.view(), mm.view(),
            f.has_entropy ? tensor_view<const double, 2>(f.entropy.view()) : tensor_view<const double, 2>{},
            S::kl_where == kl_placement::loss ? tensor_view<const double, 2>(mref.view()) : tensor_view<const double, 2>{},
            ap, dlogp.view(), f.has_entropy ? dent.view() : tensor_view<double, 2>{});
        detail::backward(policy_, mb, f, dlogp, f.has_entropy && o_.entropy_coef != 0 ? &dent : nullptr);
        policy_.step();
        pg += res.policy.loss;
        clip += res.policy.clipfrac;
        double k3 = 0, n = 0, g2 = 0;
        for (index_t i = 0; i < mold.size(); ++i) {
          const double mk = mm.data()[i];
          if (mk == 0) continue;
          const double d = f.logp.data()[i] - mold.data()[i];
          k3 += mk * (std::exp(d) - 1 - d);
          n += mk;
          g2 += dlogp.data()[i] * dlogp.data()[i];
        }
        akl += k3 / n;
        gnorm += std::sqrt(g2);
        if (f.has_entropy) ent += detail::masked_mean_or_zero(f.entropy, mm);
        if constexpr (has_value) {
          tensor<double, 2> vpred = value_->values(mb);
          tensor<double, 2> dv(vpred.shape());
          const auto mret = select_rows(returns, rows), mval = select_rows(old_values, rows);
          const auto vr = ppo::value_loss(be_, vpred.view(), mret.view(), mval.view(), mm.view(), o_.value, dv.view());
          value_->backward(mb, tensor_view<const double, 2>(dv.view()));
          value_->step();
          vf += vr.loss;
          vclip += vr.clipfrac;
        }
        n_mb += 1;
        if (k3 / n > 1.5 * o_.early_stop_kl) stopped = true;
      }
      epochs += 1;
    }
    r.set("loss", pg / n_mb).set("clipfrac", clip / n_mb).set("approx_kl", akl / n_mb);
    r.set("grad_norm", gnorm / n_mb).set("epochs", epochs).set("early_stopped", stopped);
    if (o_.entropy_coef != 0 || LogitsPolicy<P>) r.set("entropy", ent / n_mb);
    if constexpr (has_value) r.set("vf_loss", vf / n_mb).set("vf_clipfrac", vclip / n_mb);
  }

  void update_a2c(const batch& b, const tensor<double, 2>& ref_logp, const tensor<double, 2>& advantages,
                  const tensor<double, 2>& returns, record& r) {
    const auto& m = b.response_mask;
    auto f = detail::forward(policy_, b, o_.a2c.ent_coef != 0);
    tensor<double, 2> vpred = value_->values(b);
    tensor<double, 2> dlogp(m.shape()), dv(m.shape()), dent(m.shape());
    const bool use_h = f.has_entropy;
    const auto res = a2c::loss(be_, f.logp.view(), vpred.view(), advantages.view(), returns.view(),
                               use_h ? tensor_view<const double, 2>(f.entropy.view()) : tensor_view<const double, 2>{},
                               m.view(), o_.a2c, dlogp.view(), dv.view(), use_h ? dent.view() : tensor_view<double, 2>{});
    double kl_loss = 0;
    if constexpr (S::kl_where == kl_placement::loss) {
      rlhf::agg_params agg;
      kl_loss = kl::loss(be_, f.logp.view(), ref_logp.view(), m.view(), kl_ctl_.value(), kl_params::verl(S::kl), agg,
                         dlogp.view(), true)
                    .loss;
    }
    detail::backward(policy_, b, f, dlogp, use_h ? &dent : nullptr);
    policy_.step();
    value_->backward(b, tensor_view<const double, 2>(dv.view()));
    value_->step();
    double g2 = 0;
    for (index_t i = 0; i < dlogp.size(); ++i) g2 += dlogp.data()[i] * dlogp.data()[i];
    r.set("loss", res.loss + kl_loss).set("pg_loss", res.policy_loss).set("vf_loss", res.value_loss);
    r.set("grad_norm", std::sqrt(g2));
    if (use_h) r.set("entropy", detail::masked_mean_or_zero(f.entropy, m));
  }

  template <class M>
  static void save_model(std::ostream& os, const char* name, const M& model) {
    if constexpr (Checkpointable<M>) {
      std::ostringstream ms;
      model.save(ms);
      const std::string s = ms.str();
      os << "model " << name << ' ' << s.size() << '\n' << s;
    } else {
      os << "model " << name << " none\n";
    }
  }
  template <class M>
  static void load_model(std::istream& in, const char* name, M& model, const std::string& path) {
    std::string tag, n, size;
    in >> tag >> n >> size;
    if (tag != "model" || n != name)
      rlhf::detail::fail(error_kind::param, "train::rl_trainer::load", "checkpoint",
                         "'" + path + "' has no section for the " + std::string(name) + " model");
    if (size == "none") return;
    in.get();
    std::string bytes(std::stoull(size), '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if constexpr (Checkpointable<M>) {
      std::istringstream ms(bytes);
      model.load(ms);
    } else {
      rlhf::detail::fail(error_kind::param, "train::rl_trainer::load", "checkpoint",
                         "'" + path + "' holds " + name + " weights but the model is not Checkpointable");
    }
  }

  P& policy_;
  R& ref_;
  RM& reward_;
  V* value_;
  std::vector<std::vector<token_t>> prompts_;
  rl_options o_;
  rng_t rng_;
  kl::adaptive_controller kl_ctl_;
  diagnostics diag_;
  long long step_ = 0, cursor_ = 0;
  record last_;
};

}  // namespace rlhf::train
