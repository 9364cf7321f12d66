// rlhf-conformance — one handler per op of shared/conformance/OPS.md.
#pragma once

#include "backend.hpp"

namespace rlhf_conformance {

namespace h {
using namespace rlhf;

template <class T>
agg_params agg_from(const ctx<T>& c, agg_mode mode) {
  agg_params a;
  a.mode = mode;
  a.dp_size = c.num_or("dp_size", 1.0);
  if (c.has_param("batch_num_tokens")) a.batch_num_tokens = c.num("batch_num_tokens");
  if (c.has_param("global_batch_size")) a.global_batch_size = c.num("global_batch_size");
  if (c.has_param("loss_scale_factor")) a.loss_scale_factor = c.num("loss_scale_factor");
  return a;
}

/// Advantage estimators share their outputs.
template <class T, class F>
void advantages(ctx<T>& c, result& r, F&& f) {
  auto rewards = c.in.mat("token_level_rewards");
  auto a = c.in.out2(rewards), g = c.in.out2(rewards);
  f(rewards, adv::outputs<T>{a, g});
  r.outputs["advantages"] = to_nd(a);
  r.outputs["returns"] = to_nd(g);
}

/// verl clip_ratio_low/high fall back to clip_ratio when null.
template <class T>
void clip_range(const ctx<T>& c, ppo::policy_params& p) {
  const double base = c.num_or("clip_ratio", 0.2);
  p.clip_low = c.num_or("clip_ratio_low", base);
  p.clip_high = c.num_or("clip_ratio_high", base);
}

template <class T>
void dpo_grads(ctx<T>& c, result& r, const char* cname, const char* rname, const std::string& cot_name,
               tensor_view<T, 1> dc, tensor_view<T, 1> dr, index_t B, bool mean_output) {
  // Gradients are of mean(losses). A uniform cotangent k on the per-pair
  // losses is the mean's gradient times k * B; the scalar "loss" output has it
  // directly.
  double k = 1.0;
  if (!mean_output) {
    auto cv = c.cot_array(cot_name, B);
    k = cv.empty() ? 0.0 : cv[0];
    for (double x : cv)
      if (x != k) throw std::runtime_error("non-uniform cotangent on per-pair DPO losses is not supported");
    k *= static_cast<double>(B);
  } else {
    k = c.cot_scalar(cot_name);
  }
  r.grads[cname] = scaled(dc, k);
  r.grads[rname] = scaled(dr, k);
}
}  // namespace h

template <class T>
std::map<std::string, handler<T>> handlers() {
  using namespace rlhf;
  std::map<std::string, handler<T>> m;

  // ---------------- KL
  auto kl_op = [](const char* lp_name, const char* ref_name, bool openrlhf) {
    return [=](ctx<T>& c, result& r) {
      kl_params p;
      if (openrlhf) {
        const auto s = c.str("kl_estimator");
        if (s != "k1" && s != "k2" && s != "k3")
          rlhf::detail::fail(error_kind::param, "compute_approx_kl", "kl_estimator", "unknown estimator '" + s + "'");
        p = kl_params::openrlhf(parse_kl_estimator(s).estimator);
      } else {
        const auto n = parse_kl_estimator(c.str("kl_penalty"));
        p = kl_params::verl(n.estimator, n.straight_through);
      }
      auto lp = c.in.mat(lp_name);
      auto ref = c.in.mat(ref_name);
      auto k = c.in.out2(lp), d = c.in.out2(lp);
      on_backend(c, [&](auto tag, auto& m_) { kl::estimate(tag, m_(lp), m_(ref), p, m_.out(k), m_.out(d)); });
      r.outputs["kl"] = to_nd(k);
      r.grads[lp_name] = scaled(d, c.cot_array("kl", lp.size()));
      r.grads[ref_name] = scaled(d, 0.0);
    };
  };
  m["kl_penalty"] = kl_op("logprob", "ref_logprob", false);

  // IS-corrected KL (kl/is.hpp): value, and the VJP with the stored cotangent
  auto kl_is_op = [](const char* out_name, const char* lp_name, const char* old_name, const char* ref_name,
                     const char* mask_name, auto make_params) {
    return [=](ctx<T>& c, result& r) {
      cpu_only(c);  // (no device version yet)
      const kl::is_kl_params p = make_params(c);
      auto lp = c.in.mat(lp_name);
      tensor_view<const T, 2> old{}, mask{};
      if (c.in.has(old_name)) old = c.in.mat(old_name);
      if (mask_name != nullptr && c.in.has(mask_name)) mask = c.in.mat(mask_name);
      auto ref = c.in.mat(ref_name);
      auto k = c.in.out2(lp), g = c.in.out2(lp);
      kl::estimate_is(cpu, lp, old, ref, mask, p, k);
      const auto cot = c.cot_array(out_name, lp.size());
      std::vector<T> ct(cot.begin(), cot.end());
      kl::estimate_is_backward(cpu, lp, old, ref, mask, p, tensor_view<const T, 2>(ct.data(), lp.shape()), g);
      r.outputs[out_name] = to_nd(k);
      r.grads[lp_name] = to_nd(g);
    };
  };
  m["kl_penalty_is"] =
      kl_is_op("per_token_kl", "per_token_logps", "old_per_token_logps", "ref_per_token_logps", "mask", [](ctx<T>& c) {
        const auto level = c.str("importance_sampling_level");
        if (level != "token" && level != "sequence")
          rlhf::detail::fail(error_kind::param, "GRPOTrainer", "importance_sampling_level",
                             "must be 'token' or 'sequence'; got '" + level + "'");
        return kl::is_kl_params::trl(level == "token" ? kl::is_weight_level::token : kl::is_weight_level::sequence,
                                     c.flag_or("use_bias_correction_kl", false));
      });
  m["kl_penalty_is_slime"] = kl_is_op("kl", "log_probs", "old_log_probs", "ref_log_probs", nullptr, [](ctx<T>& c) {
    const auto t = c.str("kl_loss_type");
    if (t != "k1" && t != "k2" && t != "k3" && t != "low_var_kl")
      rlhf::detail::fail(error_kind::param, "compute_approx_kl", "kl_loss_type",
                         "must be k1, k2, k3 or low_var_kl; got '" + t + "'");
    const kl_estimator e = t == "k1" ? kl_estimator::k1 : (t == "k2" ? kl_estimator::k2 : kl_estimator::k3);
    return kl::is_kl_params::slime(e, t == "low_var_kl", c.flag_or("use_unbiased_kl", false));
  });
  m["kl_penalty_is_open_instruct"] =
      kl_is_op("kl", "new_logprobs", "old_logprobs", "ref_logprobs", nullptr,
               [](ctx<T>& c) { return kl::is_kl_params::open_instruct(static_cast<int>(c.num("kl_estimator"))); });
  m["kl_penalty_openrlhf"] = kl_op("log_probs", "log_probs_base", true);

  auto controller = [](bool adaptive) {
    return [=](ctx<T>& c, result& r) {
      cpu_only(c);  // a scalar recurrence on the host
      auto kl_v = c.in.vec("current_kl");
      auto n = c.in.vec("n_steps");
      rlhf::detail::require_same_shape("kl_controller", "n_steps", n, "current_kl", kl_v);
      nd out;
      out.shape = {kl_v.extent(0)};
      if (adaptive) {
        kl::adaptive_controller k(c.num("init_kl_coef"), c.num("target_kl"), c.num("horizon"));
        for (index_t i = 0; i < kl_v.extent(0); ++i) {
          k.update(kl_v(i), n(i));
          out.data.push_back(k.value());
        }
      } else {
        kl::fixed_controller k(c.num("kl_coef"));
        for (index_t i = 0; i < kl_v.extent(0); ++i) {
          k.update(kl_v(i), n(i));
          out.data.push_back(k.value());
        }
      }
      r.outputs["kl_coef"] = out;
    };
  };
  m["adaptive_kl_controller"] = controller(true);
  m["fixed_kl_controller"] = controller(false);

  // ---------------- masked statistics and aggregation
  m["masked_mean"] = [](ctx<T>& c, result& r) {
    auto v = c.in.mat("values");
    auto mk = c.in.mat("mask");
    if (!c.has_param("axis")) {
      auto g = c.in.out2(v);
      r.outputs["mean"] = scalar(
          on_backend(c, [&](auto tag, auto& m_) { return ops::masked_mean(tag, m_(v), m_(mk), 1e-8, m_.out(g)); }));
      r.grads["values"] = scaled(g, c.cot_scalar("mean"));
      return;
    }
    const int axis = static_cast<int>(c.num("axis"));
    const bool last = axis == -1 || axis == 1;
    if (!last && axis != 0 && axis != -2)
      rlhf::detail::fail(error_kind::param, "masked_mean", "axis", "must be null, 0, 1, -1 or -2 for [B, T] values");
    auto vv = last ? v : v.transposed();
    auto mm = last ? mk : mk.transposed();
    rlhf::detail::require_same_shape("masked_mean", "mask", mm, "values", vv);
    auto out = c.in.out1(vv.extent(0));
    on_backend(c, [&](auto tag, auto& m_) { ops::masked_mean_rows(tag, m_(vv), m_(mm), 1e-8, m_.out(out)); });
    r.outputs["mean"] = to_nd(out);
    auto cv = c.cot_array("mean", vv.extent(0));
    auto cot = c.in.out1(vv.extent(0));
    for (index_t i = 0; i < cot.extent(0); ++i) cot(i) = static_cast<T>(cv[i]);
    auto g = c.in.out2(v);
    auto gg = last ? g : g.transposed();
    on_backend(c, [&](auto tag, auto& m_) {
      ops::masked_mean_rows_backward(tag, m_(mm), 1e-8, m_(tensor_view<const T, 1>(cot)), m_.out(gg));
    });
    r.grads["values"] = to_nd(g);
  };
  m["masked_var"] = [](ctx<T>& c, result& r) {
    auto v = c.in.mat("values");
    auto g = c.in.out2(v);
    auto mk = c.in.mat("mask");
    const bool unbiased = c.flag_or("unbiased", true);
    const auto st = on_backend(
        c, [&](auto tag, auto& m_) { return ops::masked_var(tag, m_(v), m_(mk), unbiased, 1e-8, m_.out(g)); });
    r.outputs["var"] = scalar(st.var);
    r.grads["values"] = scaled(g, c.cot_scalar("var"));
  };
  m["masked_whiten"] = [](ctx<T>& c, result& r) {
    auto v = c.in.mat("values");
    auto mk = c.in.mat("mask");
    const auto p = whiten_params::verl(c.flag_or("shift_mean", true));
    auto w = c.in.out2(v);
    on_backend(c, [&](auto tag, auto& m_) { ops::masked_whiten(tag, m_(v), m_(mk), p, m_.out(w)); });
    r.outputs["whitened"] = to_nd(w);
    auto cv = c.cot_array("whitened", v.size());
    auto cot = c.in.out2(v);
    for (index_t i = 0; i < cot.size(); ++i) cot.data()[i] = static_cast<T>(cv[i]);
    auto g = c.in.out2(v);
    on_backend(c, [&](auto tag, auto& m_) {
      ops::masked_whiten_backward(tag, m_(v), m_(mk), p, m_(tensor_view<const T, 2>(cot)), m_.out(g));
    });
    r.grads["values"] = to_nd(g);
  };
  m["agg_loss"] = [](ctx<T>& c, result& r) {
    auto lm = c.in.mat("loss_mat");
    auto g = c.in.out2(lm);
    const auto a = h::agg_from(c, parse_agg_mode(c.str("loss_agg_mode")));
    auto lmask = c.in.mat("loss_mask");
    r.outputs["loss"] =
        scalar(on_backend(c, [&](auto tag, auto& m_) { return ops::aggregate(tag, m_(lm), m_(lmask), a, m_.out(g)); }));
    r.grads["loss_mat"] = scaled(g, c.cot_scalar("loss"));
  };

  // ---------------- logits
  m["logprobs_from_logits"] = [](ctx<T>& c, result& r) {
    auto z = c.in.mat("logits");
    auto labels = c.in.ints("labels");
    auto lp = c.in.out1(z.extent(0));
    ops::detail::check_logits(cpu.unchecked(), "logprobs_from_logits", z, labels,
                              true);  // labels in range (not checked on the device)
    on_backend(c, [&](auto tag, auto& m_) { ops::logprobs_entropy(tag, m_(z), m_(labels), m_.out(lp)); });
    r.outputs["logprobs"] = to_nd(lp);
    auto cv = c.cot_array("logprobs", z.extent(0));
    auto cot = c.in.out1(z.extent(0));
    for (index_t i = 0; i < cot.extent(0); ++i) cot(i) = static_cast<T>(cv[i]);
    auto g = c.in.out2(z);
    on_backend(c, [&](auto tag, auto& m_) {
      ops::logprobs_entropy_backward(tag, m_(z), m_(labels), m_(tensor_view<const T, 1>(cot)),
                                     m_(tensor_view<const T, 1>{}), m_.out(g));
    });
    r.grads["logits"] = to_nd(g);
  };
  m["entropy_from_logits"] = [](ctx<T>& c, result& r) {
    auto z = c.in.mat("logits");
    auto h_ = c.in.out1(z.extent(0));
    tensor_view<const long long, 1> none{};
    on_backend(c, [&](auto tag, auto& m_) {
      ops::logprobs_entropy(tag, m_(z), m_(none), m_.out(tensor_view<T, 1>{}), m_.out(h_));
    });
    r.outputs["entropy"] = to_nd(h_);
    auto cv = c.cot_array("entropy", z.extent(0));
    auto cot = c.in.out1(z.extent(0));
    for (index_t i = 0; i < cot.extent(0); ++i) cot(i) = static_cast<T>(cv[i]);
    auto g = c.in.out2(z);
    on_backend(c, [&](auto tag, auto& m_) {
      ops::logprobs_entropy_backward(tag, m_(z), m_(none), m_(tensor_view<const T, 1>{}),
                                     m_(tensor_view<const T, 1>(cot)), m_.out(g));
    });
    r.grads["logits"] = to_nd(g);
  };

  // ---------------- PPO
  m["ppo_policy_loss"] = [](ctx<T>& c, result& r) {
    auto p = ppo::policy_params::verl(parse_agg_mode(c.str("loss_agg_mode")));
    h::clip_range(c, p);
    p.dual_clip = c.num_or("clip_ratio_c", 3.0);
    p.agg = h::agg_from(c, p.agg.mode);
    auto lp = c.in.mat("log_prob");
    auto g = c.in.out2(lp);
    auto old = c.in.mat("old_log_prob"), adv_ = c.in.mat("advantages"), mask = c.in.mat("response_mask");
    const auto res = on_backend(c, [&](auto tag, auto& m_) {
      return ppo::policy_loss(tag, m_(lp), m_(old), m_(adv_), m_(mask), p, m_.out(g));
    });
    r.outputs["pg_loss"] = scalar(res.loss);
    r.outputs["pg_clipfrac"] = scalar(res.clipfrac);
    r.outputs["ppo_kl"] = scalar(res.ppo_kl);
    r.outputs["pg_clipfrac_lower"] = scalar(res.clipfrac_lower);
    r.grads["log_prob"] = scaled(g, c.cot_scalar("pg_loss"));
  };
  m["policy_loss_variants"] = [](ctx<T>& c, result& r) {
    const auto kind = ppo::parse_policy_loss_kind(c.str("policy_loss"));
    auto v = ppo::variant_params::verl(kind, parse_agg_mode(c.str("loss_agg_mode")));
    h::clip_range(c, v.base);
    v.base.agg = h::agg_from(c, v.base.agg.mode);
    if (kind == ppo::policy_loss_kind::gspo || kind == ppo::policy_loss_kind::sapo)
      v.base.agg.mode = agg_mode::seq_mean_token_mean;
    if (kind == ppo::policy_loss_kind::vanilla) v.base.dual_clip = c.num_or("clip_ratio_c", 3.0);
    v.tau_pos = c.num_or("tau_pos", v.tau_pos);
    v.tau_neg = c.num_or("tau_neg", v.tau_neg);
    if (kind == ppo::policy_loss_kind::dro) v.dro_beta = c.num("dro_beta");
    v.dppo_ratio_cap = c.num_or("clip_ratio_c", 20.0);
    auto lp = c.in.mat("log_prob");
    auto g = c.in.out2(lp);
    auto old = c.in.mat("old_log_prob"), adv_ = c.in.mat("advantages"), mask = c.in.mat("response_mask");
    ppo::policy_result res;
    if (kind == ppo::policy_loss_kind::vanilla) {
      res = on_backend(c, [&](auto tag, auto& m_) {
        return ppo::policy_loss(tag, m_(lp), m_(old), m_(adv_), m_(mask), v.base, m_.out(g));
      });
    } else {
      res = on_backend(c, [&](auto tag, auto& m_) {
        return ppo::policy_loss_variant(tag, m_(lp), m_(old), m_(adv_), m_(mask), v, m_.out(g));
      });
    }
    r.outputs["pg_loss"] = scalar(res.loss);
    r.outputs["pg_clipfrac"] = scalar(res.clipfrac);
    r.outputs["ppo_kl"] = scalar(res.ppo_kl);
    r.outputs["pg_clipfrac_lower"] = scalar(res.clipfrac_lower);
    r.grads["log_prob"] = scaled(g, c.cot_scalar("pg_loss"));
  };
  m["ppo_policy_loss_openrlhf"] = [](ctx<T>& c, result& r) {
    const bool token = c.flag_or("token_level_loss", true);
    const auto type = c.has_param("policy_loss_type") ? c.str("policy_loss_type") : std::string("ppo");
    if (type != "ppo" && type != "gspo")
      rlhf::detail::fail(error_kind::param, "PolicyLoss", "policy_loss_type", "unknown type '" + type + "'");
    const bool gspo = type == "gspo";
    ppo::variant_params v = gspo ? ppo::variant_params::openrlhf_gspo() : ppo::variant_params{};
    if (!gspo) v.base = ppo::policy_params::openrlhf(token);
    v.base.clip_low = c.num_or("clip_eps_low", 0.2);
    v.base.clip_high = c.num_or("clip_eps_high", 0.2);
    v.base.dual_clip = c.has_param("dual_clip") ? c.num("dual_clip") : INFINITY;
    auto lp = c.in.mat("log_probs");
    auto old = c.in.mat("old_log_probs");
    auto mask = c.in.mat("action_mask");
    auto g = c.in.out2(lp);
    tensor_view<const T, 2> weights{}, ratio{};
    const bool is = c.flag_or("enable_vllm_is_correction", false);
    double vllm_kl = 0;
    if (is) {
      auto rollout = c.in.mat("rollout_log_probs");
      if (gspo) {
        ratio = rollout;  // the sequence ratio against the rollout engine; ppo_kl against old
      } else {
        ppo::is_params ip;
        ip.kind = ppo::parse_is_correction(c.str("vllm_is_correction_type"));
        const auto th = c.params.at("vllm_is_truncated_threshold");
        ip.low = number(th.at(0));
        ip.high = number(th.at(1));
        auto w = c.in.out2(lp);
        vllm_kl = on_backend(c, [&](auto tag, auto& m_) {
          return ppo::rollout_is_weights(tag, m_(old), m_(rollout), m_(mask), ip, m_.out(w));
        });
        weights = w;
      }
    }
    auto adv_ = c.in.mat("advantages");
    ppo::policy_result res;
    if (v.kind == ppo::policy_loss_kind::vanilla) {
      res = on_backend(c, [&](auto tag, auto& m_) {
        return ppo::policy_loss(tag, m_(lp), m_(old), m_(adv_), m_(mask), v.base, m_.out(g), m_(weights));
      });
    } else {
      res = on_backend(c, [&](auto tag, auto& m_) {
        return ppo::policy_loss_variant(tag, m_(lp), m_(old), m_(adv_), m_(mask), v, m_.out(g), m_(weights), m_(ratio));
      });
    }
    r.outputs["loss"] = scalar(res.loss);
    r.outputs["clip_ratio"] = scalar(res.clipfrac);
    r.outputs["ppo_kl"] = scalar(res.ppo_kl);
    if (is && !gspo) r.outputs["vllm_kl"] = scalar(vllm_kl);
    r.grads["log_probs"] = scaled(g, c.cot_scalar("loss"));
  };
  m["value_loss"] = [](ctx<T>& c, result& r) {
    auto p = ppo::value_params::verl(c.num("cliprange_value"), parse_agg_mode(c.str("loss_agg_mode")));
    p.agg = h::agg_from(c, p.agg.mode);
    auto v = c.in.mat("vpreds");
    auto g = c.in.out2(v);
    auto ret = c.in.mat("returns"), old = c.in.mat("values"), mask = c.in.mat("response_mask");
    const auto res = on_backend(
        c, [&](auto tag, auto& m_) { return ppo::value_loss(tag, m_(v), m_(ret), m_(old), m_(mask), p, m_.out(g)); });
    r.outputs["vf_loss"] = scalar(res.loss);
    r.outputs["vf_clipfrac"] = scalar(res.clipfrac);
    r.grads["vpreds"] = scaled(g, c.cot_scalar("vf_loss"));
  };
  m["value_loss_openrlhf"] = [](ctx<T>& c, result& r) {
    const auto p = ppo::value_params::openrlhf(c.has_param("clip_eps") ? c.num("clip_eps") : INFINITY,
                                               c.flag_or("token_level_loss", true));
    auto v = c.in.mat("values");
    auto g = c.in.out2(v);
    auto ret = c.in.mat("returns"), old = c.in.mat("old_values"), mask = c.in.mat("action_mask");
    const auto res = on_backend(
        c, [&](auto tag, auto& m_) { return ppo::value_loss(tag, m_(v), m_(ret), m_(old), m_(mask), p, m_.out(g)); });
    r.outputs["loss"] = scalar(res.loss);
    r.grads["values"] = scaled(g, c.cot_scalar("loss"));
  };

  // ---------------- A2C
  m["a2c_loss"] = [](ctx<T>& c, result& r) {
    a2c::params p = a2c::params::sb3();
    p.ent_coef = c.num("ent_coef");
    p.vf_coef = c.num("vf_coef");
    p.normalize_advantage = c.flag_or("normalize_advantage", false);
    auto lp = c.in.mat("log_prob");
    const bool has_h = c.in.has("entropy");
    tensor_view<const T, 2> ent = has_h ? c.in.mat("entropy") : tensor_view<const T, 2>{};
    auto adv_ = c.in.mat("advantages");
    auto ones = c.in.out2(adv_);
    for (index_t i = 0; i < ones.size(); ++i) ones.data()[i] = T(1);
    auto glp = c.in.out2(lp), gv = c.in.out2(lp), gh = c.in.out2(lp);
    auto vals = c.in.mat("values"), ret = c.in.mat("returns");
    const auto res = on_backend(c, [&](auto tag, auto& m_) {
      return a2c::loss(tag, m_(lp), m_(vals), m_(adv_), m_(ret), m_(ent), m_(tensor_view<const T, 2>(ones)), p,
                       m_.out(glp), m_.out(gv), m_.out(has_h ? gh : tensor_view<T, 2>{}));
    });
    r.outputs["loss"] = scalar(res.loss);
    r.outputs["policy_loss"] = scalar(res.policy_loss);
    r.outputs["value_loss"] = scalar(res.value_loss);
    r.outputs["entropy_loss"] = scalar(res.entropy_loss);
    const double k = c.cot_scalar("loss");
    r.grads["log_prob"] = scaled(glp, k);
    r.grads["values"] = scaled(gv, k);
    if (has_h) r.grads["entropy"] = scaled(gh, k);
  };

  // ---------------- DPO
  m["dpo_loss"] = [](ctx<T>& c, result& r) {
    auto p = dpo::params::trl(dpo::parse_loss_type(c.str("loss_type")), c.num("beta"), c.num_or("label_smoothing", 0));
    p.reference_free = c.flag_or("reference_free", false);
    p.discopop_tau = c.num_or("discopop_tau", 0.05);
    if (c.has_param("f_divergence_type"))
      dpo::set_f_divergence(p, c.str("f_divergence_type"), c.num_or("f_alpha_divergence_coef", 1.0), true);
    auto ch = c.in.vec("chosen_logps");
    const index_t B = ch.extent(0);
    dpo::outputs<T> o{c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B)};
    auto rj = c.in.vec("rejected_logps"), rc = c.in.vec("ref_chosen_logps"), rr = c.in.vec("ref_rejected_logps");
    on_backend(c, [&](auto tag, auto& m_) { dpo::loss(tag, m_(ch), m_(rj), m_(rc), m_(rr), p, m_.outputs(o)); });
    r.outputs["losses"] = to_nd(o.losses);
    r.outputs["chosen_rewards"] = to_nd(o.chosen_rewards);
    r.outputs["rejected_rewards"] = to_nd(o.rejected_rewards);
    h::dpo_grads(c, r, "chosen_logps", "rejected_logps", "losses", o.dchosen, o.drejected, B, false);
  };
  m["dpo_loss_openrlhf"] = [](ctx<T>& c, result& r) {
    const auto p = dpo::params::openrlhf(c.num("beta"), c.num_or("label_smoothing", 0), c.flag_or("ipo", false));
    auto ch = c.in.vec("policy_chosen_logps");
    const index_t B = ch.extent(0);
    dpo::outputs<T> o{c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B)};
    auto rj = c.in.vec("policy_rejected_logps"), rc = c.in.vec("reference_chosen_logps"),
         rr = c.in.vec("reference_rejected_logps");
    const auto s = on_backend(
        c, [&](auto tag, auto& m_) { return dpo::loss(tag, m_(ch), m_(rj), m_(rc), m_(rr), p, m_.outputs(o)); });
    r.outputs["loss"] = scalar(s.loss);
    r.outputs["chosen_rewards"] = to_nd(o.chosen_rewards);
    r.outputs["rejected_rewards"] = to_nd(o.rejected_rewards);
    h::dpo_grads(c, r, "policy_chosen_logps", "policy_rejected_logps", "loss", o.dchosen, o.drejected, B, true);
  };
  m["dpo_loss_trl_v1"] = [](ctx<T>& c, result& r) {
    std::vector<std::string> names;
    const auto& lt = c.params.at("loss_type");
    if (lt.is_array())
      for (auto& x : lt) names.push_back(x.template get<std::string>());
    else
      names.push_back(lt.template get<std::string>());
    std::vector<double> weights(names.size(), 1.0);
    if (c.has_param("loss_weights")) {
      const auto& lw = c.params.at("loss_weights");
      if (lw.size() != names.size())
        rlhf::detail::fail(error_kind::param, "dpo_loss_trl_v1", "loss_weights", "must have one weight per loss type");
      for (std::size_t i = 0; i < names.size(); ++i) weights[i] = number(lw.at(i));
    }
    std::vector<dpo::weighted> terms;
    for (std::size_t i = 0; i < names.size(); ++i) {
      auto p = dpo::params::trl_v1(dpo::parse_loss_type(names[i]), c.num("beta"), c.num_or("label_smoothing", 0));
      if (c.has_param("f_divergence_type"))
        dpo::set_f_divergence(p, c.str("f_divergence_type"), c.num_or("f_alpha_divergence_coef", 1.0), false);
      terms.push_back({p, weights[i]});
    }
    auto ch = c.in.vec("chosen_logps");
    const index_t B = ch.extent(0);
    auto lc = c.in.out1(B), lr = c.in.out1(B);
    if (c.in.has("completion_mask")) {
      auto cm = c.in.mat("completion_mask");
      rlhf::detail::require_extent("dpo_loss_trl_v1", "completion_mask", cm, 0, 2 * B, "2B rows: chosen then rejected");
      for (index_t i = 0; i < B; ++i)
        for (index_t t = 0; t < cm.extent(1); ++t) {
          lc(i) += cm(i, t);
          lr(i) += cm(B + i, t);
        }
    }
    dpo::outputs<T> o{c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B)};
    auto rj = c.in.vec("rejected_logps"), rc = c.in.vec("ref_chosen_logps"), rr = c.in.vec("ref_rejected_logps");
    const auto s = on_backend(c, [&](auto tag, auto& m_) {
      return dpo::weighted_loss(tag, m_(ch), m_(rj), m_(rc), m_(rr), std::span<const dpo::weighted>(terms),
                                m_.outputs(o), m_(tensor_view<const T, 1>(lc)), m_(tensor_view<const T, 1>(lr)));
    });
    r.outputs["loss"] = scalar(s.loss);
    if (names.size() == 1) r.outputs["per_sequence_loss"] = to_nd(o.losses);
    r.outputs["chosen_rewards"] = to_nd(o.chosen_rewards);
    r.outputs["rejected_rewards"] = to_nd(o.rejected_rewards);
    h::dpo_grads(c, r, "chosen_logps", "rejected_logps", "loss", o.dchosen, o.drejected, B, true);
  };

  // ---------------- advantages
  m["gae"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      adv::gae_params p;
      p.gamma = c.num("gamma");
      p.lam = c.num("lam");
      auto vals = c.in.mat("values"), mask = c.in.mat("response_mask");
      on_backend(c, [&](auto tag, auto& m_) { adv::gae(tag, m_(rw), m_(vals), m_(mask), p, m_.outputs(out)); });
    });
  };
  m["grpo_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      const adv::grpo_params gp{c.num_or("epsilon", 1e-6), c.flag_or("norm_adv_by_std_in_grpo", true)};
      on_backend(c, [&](auto tag, auto& m_) { adv::grpo(tag, m_(rw), m_(mask), m_(idx), gp, m_.outputs(out)); });
    });
  };
  m["maxrl_advantage"] = [](ctx<T>& c, result& r) {
    cpu_only(c);
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      adv::maxrl(cpu, rw, mask, idx, adv::maxrl_params{c.num_or("epsilon", 1e-6)}, out);
    });
  };
  m["gdpo_advantage"] = [](ctx<T>& c, result& r) {
    cpu_only(c);
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      adv::gdpo_params p;
      p.grpo = adv::grpo_params{c.num_or("epsilon", 1e-6), c.flag_or("norm_adv_by_std_in_grpo", true)};
      if (c.has_param("gdpo_reward_weights"))
        for (const auto& w : c.params.at("gdpo_reward_weights")) p.weights.push_back(number(w));
      tensor_view<const T, 2> comps{};
      if (c.in.has("reward_components")) comps = c.in.mat("reward_components");
      adv::gdpo(cpu, rw, mask, idx, comps, p, out);
    });
  };
  m["grpo_advantage_nemo_rl"] = [](ctx<T>& c, result& r) {
    cpu_only(c);
    // samples whose prompt_ids rows are identical form a group
    const nd& ids = c.in.raw("prompt_ids");
    const index_t B = ids.shape.empty() ? 0 : ids.shape[0];
    const index_t S = B == 0 ? 0 : ids.size() / B;
    std::vector<long long> group(static_cast<std::size_t>(B));
    std::vector<std::vector<double>> seen;
    for (index_t b = 0; b < B; ++b) {
      std::vector<double> row(ids.data.begin() + b * S, ids.data.begin() + (b + 1) * S);
      std::size_t g = 0;
      while (g < seen.size() && seen[g] != row) ++g;
      if (g == seen.size()) seen.push_back(row);
      group[static_cast<std::size_t>(b)] = static_cast<long long>(g);
    }
    auto rw = c.in.vec("rewards");
    auto mask = c.in.mat("mask");
    rlhf::detail::require_extent("GRPOAdvantageEstimator", "rewards", rw, 0, B, "one reward per sample");
    rlhf::detail::require_extent("GRPOAdvantageEstimator", "mask", mask, 0, B, "one row per sample");
    auto a = c.in.out2(mask);
    adv::loo_grpo(cpu, rw, tensor_view<const long long, 1>(group.data(), {B}),
                  adv::loo_grpo_params::nemo_rl(c.flag_or("use_leave_one_out_baseline", true),
                                                c.flag_or("normalize_rewards", true)),
                  a);
    r.outputs["advantages"] = to_nd(a);
  };
  m["grpo_passk_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      const adv::grpo_params gp{c.num_or("epsilon", 1e-6), c.flag_or("norm_adv_by_std_in_grpo", true)};
      on_backend(c, [&](auto tag, auto& m_) { adv::grpo_passk(tag, m_(rw), m_(mask), m_(idx), gp, m_.outputs(out)); });
    });
  };
  m["rloo_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      on_backend(c, [&](auto tag, auto& m_) {
        adv::rloo(tag, m_(rw), m_(mask), m_(idx), adv::rloo_params{true}, m_.outputs(out));
      });
    });
  };
  m["rloo_vectorized_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      on_backend(c, [&](auto tag, auto& m_) {
        adv::rloo(tag, m_(rw), m_(mask), m_(idx), adv::rloo_params{false}, m_.outputs(out));
      });
    });
  };
  m["opo_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      on_backend(c, [&](auto tag, auto& m_) { adv::opo(tag, m_(rw), m_(mask), m_(idx), m_.outputs(out)); });
    });
  };
  m["gpg_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      const adv::gpg_params gp{c.num_or("f_norm", 1.0)};
      on_backend(c, [&](auto tag, auto& m_) { adv::gpg(tag, m_(rw), m_(mask), m_(idx), gp, m_.outputs(out)); });
    });
  };
  m["reinforce_pp_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      adv::reinforce_pp_params p;
      p.gamma = c.num("gamma");
      auto mask = c.in.mat("response_mask");
      on_backend(c, [&](auto tag, auto& m_) { adv::reinforce_pp(tag, m_(rw), m_(mask), p, m_.outputs(out)); });
    });
  };
  m["reinforce_pp_baseline_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto mask = c.in.mat("response_mask");
      auto idx = c.in.ints("index");
      on_backend(c, [&](auto tag, auto& m_) {
        adv::reinforce_pp_baseline(tag, m_(rw), m_(mask), m_(idx), whiten_params::verl(), m_.outputs(out));
      });
    });
  };
  m["remax_advantage"] = [](ctx<T>& c, result& r) {
    h::advantages(c, r, [&](auto rw, auto out) {
      auto base = c.in.vec("reward_baselines");
      auto mask = c.in.mat("response_mask");
      on_backend(c, [&](auto tag, auto& m_) { adv::remax(tag, m_(rw), m_(base), m_(mask), m_.outputs(out)); });
    });
  };
  // ---------------- reward models (host only: [B] scores)
  auto pairwise = [](const char* cname, const char* rname, bool openrlhf) {
    return [=](ctx<T>& c, result& r) {
      cpu_only(c);
      const auto p = openrlhf
                         ? rm::pairwise_params::openrlhf(rm::parse_pairwise_kind(c.str("loss")))
                         : rm::pairwise_params::trl(c.has_param("center_rewards_coefficient")
                                                        ? std::optional<double>(c.num("center_rewards_coefficient"))
                                                        : std::nullopt);
      auto ch = c.in.vec(cname), rj = c.in.vec(rname);
      const index_t B = ch.extent(0);
      auto dc = c.in.out1(B), dr = c.in.out1(B);
      tensor_view<const T, 1> margin;
      if (c.in.has("margin")) margin = c.in.vec("margin");
      const auto s = rm::pairwise_loss(rlhf::cpu, ch, rj, p, margin, dc, dr);
      r.outputs["loss"] = scalar(s.loss);
      const double k = c.cot_scalar("loss");
      r.grads[cname] = scaled(dc, k);
      r.grads[rname] = scaled(dr, k);
    };
  };
  m["reward_pairwise_loss"] = pairwise("rewards_chosen", "rewards_rejected", false);

  // ---------------- distillation (objectives/distill.hpp)
  m["generalized_jsd_loss"] = [](ctx<T>& c, result& r) {
    cpu_only(c);
    distill::jsd_params p;
    p.beta = c.num_or("beta", 0.5);
    p.temperature = c.num_or("temperature", 1.0);
    p.reduction =
        distill::parse_jsd_reduction(c.has_param("reduction") ? c.str("reduction") : std::string("batchmean"));
    if (c.has_param("num_items_in_batch")) {
      p.num_items_in_batch = c.num("num_items_in_batch");
      rlhf::detail::require_param(p.num_items_in_batch > 0, "generalized_jsd_loss", "num_items_in_batch",
                                  "must be > 0");
    }
    const nd& raw = c.in.raw("student_logits");
    auto z = c.in.mat("student_logits");
    auto y = c.in.mat("teacher_logits");
    const bool has_labels = c.in.has("labels");
    tensor_view<const long long, 1> lab{};
    if (has_labels) lab = c.in.ints("labels");
    p.batch_rows = raw.shape.empty() ? 1.0 : static_cast<double>(raw.shape[0]);
    const index_t N = z.extent(0), V = z.extent(1);
    auto g = c.in.out2(z), el = c.in.out2(z);
    std::vector<unsigned char> kept(static_cast<std::size_t>(N), 1);
    if (has_labels && lab.extent(0) == N)
      for (index_t i = 0; i < N; ++i) kept[static_cast<std::size_t>(i)] = lab(i) != p.ignore_index ? 1 : 0;
    if (p.reduction == distill::jsd_reduction::none) {
      // the cotangent over the kept rows, spread back to [N, V]
      index_t n = 0;
      for (auto k : kept) n += k;
      const auto cot = c.cot_array("loss", n * V);
      std::vector<T> full(static_cast<std::size_t>(N * V), T(0));
      index_t row = 0;
      for (index_t i = 0; i < N; ++i)
        if (kept[static_cast<std::size_t>(i)] != 0) {
          for (index_t v = 0; v < V; ++v)
            full[static_cast<std::size_t>(i * V + v)] = static_cast<T>(cot[static_cast<std::size_t>(row * V + v)]);
          ++row;
        }
      distill::generalized_jsd(cpu, z, y, lab, p, g, el, tensor_view<const T, 2>(full.data(), z.shape()));
      nd out;
      for (index_t i = 0; i < N; ++i)
        if (kept[static_cast<std::size_t>(i)] != 0)
          for (index_t v = 0; v < V; ++v) out.data.push_back(static_cast<double>(el(i, v)));
      out.shape = has_labels ? std::vector<index_t>{n, V} : raw.shape;
      r.outputs["loss"] = out;
      nd gr = to_nd(g);
      gr.shape = raw.shape;
      r.grads["student_logits"] = gr;
    } else {
      const auto res = distill::generalized_jsd(cpu, z, y, lab, p, g);
      r.outputs["loss"] = scalar(res.loss);
      nd gr = scaled(g, c.cot_scalar("loss"));
      gr.shape = raw.shape;
      r.grads["student_logits"] = gr;
    }
  };

  // ---------------- preference losses beyond DPO (objectives/preference.hpp)
  m["kto_loss"] = [](ctx<T>& c, result& r) {
    cpu_only(c);
    pref::kto_params p;
    p.type = pref::parse_kto_loss_type(c.str("loss_type"));
    p.beta = c.num_or("beta", 0.1);
    p.desirable_weight = c.num_or("desirable_weight", 1.0);
    p.undesirable_weight = c.num_or("undesirable_weight", 1.0);
    auto lp = c.in.vec("completion_logps");
    auto ref = c.in.vec("ref_logps");
    auto lab = c.in.ints("label");
    tensor_view<const T, 1> kl{}, rkl{};
    if (p.type == pref::kto_loss_type::kto) {
      kl = c.in.vec("KL_logps");
      rkl = c.in.vec("ref_KL_logps");
    }
    const index_t B = lp.extent(0);
    auto losses = c.in.out1(B), rw = c.in.out1(B), d = c.in.out1(B);
    const auto res = pref::kto_loss(cpu, lp, ref, lab, kl, rkl, p, losses, rw, d);
    // TRL's order: every desirable sample, then every undesirable one
    nd l, cr, rr;
    for (int pass = 0; pass < 2; ++pass)
      for (index_t b = 0; b < B; ++b)
        if ((lab(b) != 0) == (pass == 0)) {
          l.data.push_back(static_cast<double>(losses(b)));
          (pass == 0 ? cr : rr).data.push_back(static_cast<double>(rw(b)));
        }
    l.shape = {static_cast<index_t>(l.data.size())};
    cr.shape = {static_cast<index_t>(cr.data.size())};
    rr.shape = {static_cast<index_t>(rr.data.size())};
    r.outputs["losses"] = l;
    r.outputs["chosen_rewards"] = cr;
    r.outputs["rejected_rewards"] = rr;
    r.outputs["loss"] = scalar(res.loss);
    r.outputs["kl"] = scalar(res.kl);
    r.grads["completion_logps"] = scaled(d, c.cot_scalar("loss") / static_cast<double>(B));
    if (p.type == pref::kto_loss_type::kto) r.grads["KL_logps"] = scaled(kl, 0.0);
  };
  auto pair_op = [](bool orpo) {
    return [=](ctx<T>& c, result& r) {
      cpu_only(c);
      auto ch = c.in.vec("policy_chosen_logps");
      auto rj = c.in.vec("policy_rejected_logps");
      const index_t B = ch.extent(0);
      pref::pair_outputs<T> o{c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B), c.in.out1(B)};
      if (orpo) {
        const auto res = pref::orpo_loss(cpu, ch, rj, c.num_or("beta", 0.1), o);
        r.outputs["log_odds_ratio"] = scalar(res.log_odds_ratio);
        r.outputs["log_odds_chosen"] = scalar(res.log_odds_chosen);
      } else {
        pref::cpo_params p;
        p.type = pref::parse_cpo_loss_type(c.str("loss_type"));
        p.beta = c.num_or("beta", 0.1);
        p.label_smoothing = c.num_or("label_smoothing", 0.0);
        p.simpo_gamma = c.num_or("simpo_gamma", 0.5);
        p.alpha = c.num_or("alpha", 0.0);
        (void)pref::cpo_loss(cpu, ch, rj, p, o);
      }
      r.outputs["losses"] = to_nd(o.losses);
      r.outputs["chosen_rewards"] = to_nd(o.chosen_rewards);
      r.outputs["rejected_rewards"] = to_nd(o.rejected_rewards);
      const auto cot = c.cot_array("losses", B);
      r.grads["policy_chosen_logps"] = scaled(o.dchosen, cot);
      r.grads["policy_rejected_logps"] = scaled(o.drejected, cot);
    };
  };
  m["cpo_loss"] = pair_op(false);
  m["orpo_loss"] = pair_op(true);

  // ---------------- rollout correction (verl rollout_corr_helper), overlong shaping (OpenRLHF)
  // a threshold given as a JSON number or string, as verl's config takes it
  auto spec = [](ctx<T>& c, const char* k) {
    const auto& j = c.params.at(k);
    if (j.is_boolean())
      rlhf::detail::fail(error_kind::param, "rollout", k, "must be a number or a string, not a boolean");
    if (j.is_string()) return j.template get<std::string>();
    std::ostringstream os;
    os.precision(17);
    os << number(j);
    return os.str();
  };
  m["rollout_rejection_mask"] = [=](ctx<T>& c, result& r) {
    cpu_only(c);
    const auto opts = rollout_corr::parse_rejection(c.str("rollout_rs"), spec(c, "rollout_rs_threshold"));
    auto lr = c.in.mat("log_ratio");
    auto mask = c.in.mat("response_mask");
    auto out = c.in.out2(lr);
    const auto st = rollout_corr::rejection_mask(cpu, lr, mask, opts, out);
    r.outputs["modified_response_mask"] = to_nd(out);
    r.outputs["rollout_rs_masked_fraction"] = scalar(st.masked_fraction);
    r.outputs["rollout_rs_seq_masked_fraction"] = scalar(st.seq_masked_fraction);
  };
  m["rollout_correction_weights"] = [=](ctx<T>& c, result& r) {
    cpu_only(c);
    const auto level = c.str("rollout_is");
    if (level != "token" && level != "sequence")
      rlhf::detail::fail(error_kind::param, "rollout", "rollout_is",
                         "must be 'token' or 'sequence'; got '" + level + "'");
    const auto p = rollout_corr::weights_params::parse(
        level == "token" ? rollout_corr::is_level::token : rollout_corr::is_level::sequence,
        spec(c, "rollout_is_threshold"), c.flag_or("rollout_is_batch_normalize", false));
    auto lr = c.in.mat("log_ratio");
    auto mask = c.in.mat("response_mask");
    auto w = c.in.out2(lr);
    const auto st = rollout_corr::correction_weights(cpu, lr, mask, p, w);
    r.outputs["rollout_is_weights"] = to_nd(w);
    r.outputs["rollout_is_mean"] = scalar(st.mean);
    r.outputs["rollout_is_eff_sample_size"] = scalar(st.eff_sample_size);
    if (p.icepop) r.outputs["rollout_is_oob_ratio"] = scalar(st.oob_ratio);
    if (p.batch_normalize) r.outputs["rollout_is_batch_norm_factor"] = scalar(st.batch_norm_factor);
  };
  m["overlong_penalty_openrlhf"] = [](ctx<T>& c, result& r) {
    cpu_only(c);
    rollout_corr::overlong_params p;
    p.max_new_tokens = c.num("max_new_tokens");
    p.buffer = c.num("overlong_buffer_len");
    p.factor = c.num_or("overlong_penalty_factor", 1.0);
    auto rw = c.in.vec("rewards");
    auto len = c.in.ints("response_length");
    auto out = c.in.out1(rw.extent(0));
    const auto n = rollout_corr::overlong_penalty(cpu, rw, len, p, out);
    r.outputs["rewards"] = to_nd(out);
    r.outputs["total_penalized"] = scalar(static_cast<double>(n));
  };
  m["reward_pairwise_loss_openrlhf"] = pairwise("chosen_reward", "reject_reward", true);
  return m;
}

}  // namespace rlhf_conformance
