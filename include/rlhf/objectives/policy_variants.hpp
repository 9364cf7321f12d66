// rlhf++ — the PPO-family policy-loss variants (verl's registry names).
//
//   vanilla   clipped surrogate (objectives/ppo.hpp)
//   gspo      sequence-level ratio s_b = exp(masked row-mean of logp - old), clipped
//             (Zheng et al. 2025). verl: token ratio exp(logp - sg(logp) + sg(log s_b)),
//             log clamped at 10 (gradient per token); OpenRLHF: the full gradient
//             through s_b, no clamp (gspo_gradient::full).
//   sapo      soft gate, see math/policy.hpp
//   cispo     clipped, detached IS weight times logp (MiniMax-M1)
//   gpg       -A logp
//   geo_mean  GMPO: per-row geometric mean of clipped token ratios
//             loss = mean_b( -mean_t(A) * exp(mean_t(sgn(A) min(sgn(A) d, sgn(A) clip(d)))) )
//   dro       -(logp A - beta/2 (logp - old)^2)
//   dppo_tv / dppo_kl   trust region on the token probability (math/policy.hpp)
// Every variant returns policy_result; statistics a variant does not define are 0.
#pragma once

#include <algorithm>
#include <string>
#include <vector>
#include <string_view>

#include "../math/policy.hpp"
#include "ppo.hpp"

namespace rlhf::ppo {

enum class policy_loss_kind { vanilla, gspo, sapo, cispo, gpg, geo_mean, dro, dppo_tv, dppo_kl };

inline const char* to_string(policy_loss_kind k) noexcept {
  switch (k) {
    case policy_loss_kind::vanilla: return "vanilla";
    case policy_loss_kind::gspo: return "gspo";
    case policy_loss_kind::sapo: return "sapo";
    case policy_loss_kind::cispo: return "cispo";
    case policy_loss_kind::gpg: return "gpg";
    case policy_loss_kind::geo_mean: return "geo_mean";
    case policy_loss_kind::dro: return "dro";
    case policy_loss_kind::dppo_tv: return "dppo_tv";
    case policy_loss_kind::dppo_kl: return "dppo_kl";
  }
  return "?";
}

inline policy_loss_kind parse_policy_loss_kind(std::string_view s) {
  for (auto k : {policy_loss_kind::vanilla, policy_loss_kind::gspo, policy_loss_kind::sapo, policy_loss_kind::cispo,
                 policy_loss_kind::gpg, policy_loss_kind::geo_mean, policy_loss_kind::dro, policy_loss_kind::dppo_tv,
                 policy_loss_kind::dppo_kl})
    if (s == to_string(k)) return k;
  rlhf::detail::fail(error_kind::param, "ppo::parse_policy_loss_kind", "policy_loss",
                     "unknown policy loss '" + std::string(s) +
                         "' (vanilla, gspo, sapo, cispo, gpg, geo_mean, dro, dppo_tv, dppo_kl)");
}

enum class gspo_gradient { token_stop_gradient, full };

struct variant_params {
  policy_loss_kind kind = policy_loss_kind::vanilla;
  policy_params base{};       ///< clip range, dual clip, log-ratio clamp, statistics, aggregation
  double tau_pos = 1.0;       ///< SAPO gate temperature for A > 0
  double tau_neg = 1.05;      ///< SAPO gate temperature for A <= 0
  double dro_beta = 0.0;      ///< DRO quadratic coefficient (> 0 required)
  double dppo_ratio_cap = 20.0;  ///< DPPO cap on the detached ratio (verl clip_ratio_c default 20)
  gspo_gradient gspo_grad = gspo_gradient::token_stop_gradient;
  double gspo_log_ratio_max = 10.0;  ///< verl clamps the sequence log ratio at 10; INFINITY = off

  /// verl's registered loss: gspo and sapo always aggregate seq-mean-token-mean.
  static variant_params verl(policy_loss_kind k, agg_mode m = agg_mode::token_mean) {
    variant_params v;
    v.kind = k;
    v.base = policy_params::verl(m);
    if (k == policy_loss_kind::gspo || k == policy_loss_kind::sapo) v.base.agg.mode = agg_mode::seq_mean_token_mean;
    if (k == policy_loss_kind::gspo) v.base.dual_clip = INFINITY;
    return v;
  }
  /// OpenRLHF PolicyLoss(policy_loss_type="gspo"): full gradient, per-sequence mean.
  static variant_params openrlhf_gspo() {
    variant_params v;
    v.kind = policy_loss_kind::gspo;
    v.base = policy_params::openrlhf(false);
    v.gspo_grad = gspo_gradient::full;
    v.gspo_log_ratio_max = INFINITY;
    return v;
  }
};

inline void check_variant_params(const variant_params& v, const char* fn) {
  check_policy_params(v.base, fn);
  if (v.kind == policy_loss_kind::sapo) {
    rlhf::detail::require_positive_param(v.tau_pos, fn, "tau_pos");
    rlhf::detail::require_positive_param(v.tau_neg, fn, "tau_neg");
  }
  if (v.kind == policy_loss_kind::dro) rlhf::detail::require_positive_param(v.dro_beta, fn, "dro_beta");
  rlhf::detail::require_param(!std::isnan(v.gspo_log_ratio_max), fn, "gspo_log_ratio_max", "must not be NaN (INFINITY = off)");
  if (v.kind == policy_loss_kind::dppo_tv || v.kind == policy_loss_kind::dppo_kl)
    rlhf::detail::require_positive_param(v.dppo_ratio_cap, fn, "dppo_ratio_cap");
}

/// Any registered policy loss. `dlogp` (optional) receives d loss / d logp;
/// `weights` (optional, detached) multiplies the token losses.
template <class T, class M>
policy_result policy_loss_variant(cpu_t tag, tensor_view<T, 2> logp, in_view<T, 2> old_logp, in_view<T, 2> adv,
                                  tensor_view<M, 2> mask, const variant_params& v, out_view<T, 2> dlogp = {},
                                  in_view<T, 2> weights = {}) {
  if (v.kind == policy_loss_kind::vanilla) return policy_loss(tag, logp, old_logp, adv, mask, v.base, dlogp, weights);
  constexpr const char* fn = "ppo::policy_loss_variant";
  detail::check_policy_inputs(tag, fn, logp, old_logp, adv, mask);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  detail::check_weights(tag, fn, logp, weights);
  const policy_params& p = v.base;
  check_variant_params(v, fn);

  const index_t B = logp.extent(0), T_ = logp.extent(1);
  auto lp = [&](index_t b, index_t t) { return static_cast<double>(logp(b, t)); };
  auto old = [&](index_t b, index_t t) { return static_cast<double>(old_logp(b, t)); };
  auto A = [&](index_t b, index_t t) { return static_cast<double>(adv(b, t)); };
  auto iw = [&](index_t b, index_t t) { return weights.null() ? 1.0 : static_cast<double>(weights(b, t)); };
  auto m = [&](index_t b, index_t t) { return static_cast<double>(mask(b, t)); };
  auto row_count = [&](index_t b) {
    double c = 0;
    for (index_t t = 0; t < T_; ++t) c += m(b, t);
    return c;
  };
  if (!(ops::mask_count(tag, mask) > 0)) rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has no valid token");

  tensor<double, 2> loss_mat({B, T_}), dmat({B, T_}), w({B, T_});
  policy_result r{};
  auto mean = [&](auto&& f) { return detail::stat_mean(mask, p.stat_eps, f); };
  constexpr const char* overflow = "a ratio exp(log_prob - old_log_prob) overflows; set log_ratio_clamp";
  auto finish = [&]() {
    r.loss = ops::aggregate(tag.unchecked(), loss_mat.view(), mask, p.agg, w.view());
    rlhf::detail::require_finite_result(r.loss, fn, "log_prob", overflow);
    if (!dlogp.null())
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        dlogp(b, t) = static_cast<value_t<T>>(w(b, t) * dmat(b, t));
      });
  };

  switch (v.kind) {
    case policy_loss_kind::gspo: {
      const math::ppo_clip_params cp{p.clip_low, p.clip_high, p.dual_clip, INFINITY};
      tensor<double, 2> g({B, T_});  // d token loss / d log s_b (full-gradient form)
      std::vector<double> s(static_cast<std::size_t>(B)), len(static_cast<std::size_t>(B));
      for (index_t b = 0; b < B; ++b) {
        double acc = 0;
        for (index_t t = 0; t < T_; ++t) acc += (lp(b, t) - old(b, t)) * m(b, t);
        len[b] = std::max(row_count(b), 1.0);
        s[b] = acc / len[b];
      }
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        const math::dual d = math::clamp(math::dual{s[b], 1.0}, -INFINITY, v.gspo_log_ratio_max);
        auto term = math::ppo_clip_log_ratio(d, A(b, t), cp);
        if (v.gspo_grad == gspo_gradient::full && m(b, t) == 0) {
          // OpenRLHF multiplies the ratio by the mask: a masked token has ratio 0.
          term = math::ppo_clip_log_ratio(math::dual{-INFINITY, 0.0}, A(b, t), cp);
        }
        loss_mat(b, t) = term.loss * iw(b, t);
        dmat(b, t) = term.dlogp * iw(b, t);
      });
      r.clipfrac = mean([&](index_t b, index_t t) {
        return math::gspo_clipped(s[b], v.gspo_log_ratio_max, A(b, t), p.clip_low, p.clip_high) ? 1.0 : 0.0;
      });
      r.ppo_kl = mean([&](index_t b, index_t t) { return old(b, t) - lp(b, t); });
      r.loss = ops::aggregate(tag.unchecked(), loss_mat.view(), mask, p.agg, w.view());
      rlhf::detail::require_finite_result(r.loss, fn, "log_prob", overflow);
      if (!dlogp.null()) {
        if (v.gspo_grad == gspo_gradient::token_stop_gradient) {
          cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
            dlogp(b, t) = static_cast<value_t<T>>(w(b, t) * dmat(b, t));
          });
        } else {
          // d/dlogp_bk = sum_t w_bt * dloss_bt/dlog s_b * m_bk / len_b
          for (index_t b = 0; b < B; ++b) {
            double acc = 0;
            for (index_t t = 0; t < T_; ++t) acc += w(b, t) * dmat(b, t);
            for (index_t k = 0; k < T_; ++k)
              dlogp(b, k) = static_cast<value_t<T>>(acc * m(b, k) / len[b]);
          }
        }
      }
      return r;
    }
    case policy_loss_kind::sapo: {
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        const auto d = math::sapo_token(lp(b, t), old(b, t), A(b, t), v.tau_pos, v.tau_neg);
        loss_mat(b, t) = d.v * iw(b, t);
        dmat(b, t) = d.d * iw(b, t);
      });
      r.ppo_kl = mean([&](index_t b, index_t t) { return old(b, t) - lp(b, t); });
      break;
    }
    case policy_loss_kind::cispo: {
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        const auto c = math::cispo_token(lp(b, t), old(b, t), A(b, t), p.clip_low, p.clip_high, p.log_ratio_clamp);
        loss_mat(b, t) = c.loss * iw(b, t);
        dmat(b, t) = c.dlogp * iw(b, t);
      });
      r.clipfrac = mean([&](index_t b, index_t t) {
        return math::cispo_token(lp(b, t), old(b, t), A(b, t), p.clip_low, p.clip_high, p.log_ratio_clamp).clipped
                   ? 1.0 : 0.0;
      });
      r.ppo_kl = mean([&](index_t b, index_t t) { return old(b, t) - lp(b, t); });
      break;
    }
    case policy_loss_kind::gpg: {
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        loss_mat(b, t) = -lp(b, t) * A(b, t) * iw(b, t);
        dmat(b, t) = -A(b, t) * iw(b, t);
      });
      break;
    }
    case policy_loss_kind::dro: {
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        const auto d = math::dro_token(lp(b, t), old(b, t), A(b, t), v.dro_beta);
        loss_mat(b, t) = d.v * iw(b, t);
        dmat(b, t) = d.d * iw(b, t);
      });
      r.ppo_kl = mean([&](index_t b, index_t t) { return old(b, t) - lp(b, t); });
      break;
    }
    case policy_loss_kind::dppo_tv:
    case policy_loss_kind::dppo_kl: {
      const bool klr = v.kind == policy_loss_kind::dppo_kl;
      auto term = [&](index_t b, index_t t) {
        return math::dppo_token(lp(b, t), old(b, t), A(b, t), p.clip_low, p.clip_high, klr, p.log_ratio_clamp,
                                v.dppo_ratio_cap);
      };
      cpu_loops::for_each_2d(B, T_, [&](index_t b, index_t t) {
        const double coef = term(b, t).coef * iw(b, t);
        loss_mat(b, t) = coef * lp(b, t);
        dmat(b, t) = coef;
      });
      r.ppo_kl = mean([&](index_t b, index_t t) { return -term(b, t).log_ratio; });
      r.clipfrac = mean([&](index_t b, index_t t) { return term(b, t).valid ? 0.0 : 1.0; });
      r.clipfrac_lower = mean([&](index_t b, index_t t) {
        const auto d = term(b, t);
        return d.valid && d.ratio > v.dppo_ratio_cap ? 1.0 : 0.0;
      });
      break;
    }
    case policy_loss_kind::geo_mean: {
      // Sequence-level objective: the mean over all B rows (loss_agg_mode does not apply).
      for (index_t b = 0; b < B; ++b) {
        double num = 0, an = 0;
        const double n = row_count(b);
        std::vector<double> dterm(static_cast<std::size_t>(T_));
        for (index_t t = 0; t < T_; ++t) {
          const auto g = math::geo_mean_token(lp(b, t), old(b, t), A(b, t), p.clip_low, p.clip_high);
          num += g.value * m(b, t);
          dterm[t] = g.dlogp;
          an += A(b, t) * m(b, t);
        }
        const double ratio = std::exp(num / (n + 1e-8));
        const double advb = an / (n + 1e-8);
        r.loss += -advb * ratio * iw(b, 0) / static_cast<double>(B);
        if (!dlogp.null())
          for (index_t t = 0; t < T_; ++t)
            dlogp(b, t) = static_cast<value_t<T>>(-advb * ratio * iw(b, 0) * m(b, t) * dterm[t] /
                                                  (n + 1e-8) / static_cast<double>(B));
      }
      auto clipped = [&](index_t b, index_t t) {
        return math::geo_mean_token(lp(b, t), old(b, t), A(b, t), p.clip_low, p.clip_high).clipped;
      };
      r.clipfrac = mean([&](index_t b, index_t t) { return clipped(b, t) && A(b, t) > 0 ? 1.0 : 0.0; });
      r.clipfrac_lower = mean([&](index_t b, index_t t) { return clipped(b, t) && A(b, t) < 0 ? 1.0 : 0.0; });
      r.ppo_kl = mean([&](index_t b, index_t t) { return old(b, t) - lp(b, t); });
      rlhf::detail::require_finite_result(r.loss, fn, "log_prob", overflow);
      return r;
    }
    case policy_loss_kind::vanilla: break;
  }
  finish();
  return r;
}

}  // namespace rlhf::ppo
