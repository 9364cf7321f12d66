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
#include <type_traits>
#include <string>
#include <vector>
#include <string_view>

#include "../math/policy.hpp"
#include "ppo.hpp"

namespace rlhf::ppo {

RLHF_BACKEND_FIRST(policy_loss_variant)

RLHF_NAMED_ENUM(policy_loss_kind, (vanilla, "vanilla"), (gspo, "gspo"), (sapo, "sapo"), (cispo, "cispo"), (gpg, "gpg"),
                (geo_mean, "geo_mean"), (dro, "dro"), (dppo_tv, "dppo_tv"), (dppo_kl, "dppo_kl"));

inline policy_loss_kind parse_policy_loss_kind(std::string_view s) {
  if (const auto k = parse_enum<policy_loss_kind>(s)) return *k;
  rlhf::detail::fail(error_kind::param, "ppo::parse_policy_loss_kind", "policy_loss",
                     "unknown policy loss '" + std::string(s) + "' (" + enum_name_list<policy_loss_kind>() + ")");
}

enum class gspo_gradient { token_stop_gradient, full };

struct variant_params {
  policy_loss_kind kind = policy_loss_kind::vanilla;
  policy_params base{};          ///< clip range, dual clip, log-ratio clamp, statistics, aggregation
  double tau_pos = 1.0;          ///< SAPO gate temperature for A > 0
  double tau_neg = 1.05;         ///< SAPO gate temperature for A <= 0
  double dro_beta = 0.0;         ///< DRO quadratic coefficient (> 0 required)
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
  rlhf::detail::require_param(!std::isnan(v.gspo_log_ratio_max), fn, "gspo_log_ratio_max",
                              "must not be NaN (INFINITY = off)");
  if (v.kind == policy_loss_kind::dppo_tv || v.kind == policy_loss_kind::dppo_kl)
    rlhf::detail::require_positive_param(v.dppo_ratio_cap, fn, "dppo_ratio_cap");
}

namespace rules {
/// One token of any variant (both engines): loss, d/dlogp, and the
/// statistics [clipfrac, clipfrac_lower, ppo_kl] by the variant's rules.
/// `rows` (gspo, geo_mean; device memory on CUDA): per-row sums
/// rows[3 b] = sum m (logp - old), rows[3 b + 1] = sum m, rows[3 b + 2] =
/// geo-mean's sum m sgn(A) min(...), rows[3 B + b] = sum m A.
/// `Fixed` >= 0 fixes the kind at compile time (the CPU engine: one
/// straight-line rule per kind in the vector loop); -1 reads `kind`.
template <class A, int Fixed = -1>
struct variant_token {
  A logp, old, adv, weights;
  policy_loss_kind kind;
  math::ppo_clip_params cp;
  double clip_low, clip_high, tau_pos, tau_neg, dro_beta, cap, lrc, gspo_max;
  const double* rows;
  index_t B;
  template <class L = double>
  RLHF_HD_INLINE token_out<1, 3, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    using S = math::scalar_of<R>;
    const R lp = logp.template get<L>(b, t), o = old.template get<L>(b, t), a = adv.template get<L>(b, t);
    const R iw = weights.null() ? math::lit<R>(1.0) : weights.template get<L>(b, t);
    token_out<1, 3, R> r;
    r.stat[2] = o - lp;  // ppo_kl for every variant but gpg and dppo
    switch (Fixed >= 0 ? static_cast<policy_loss_kind>(Fixed) : kind) {
      case policy_loss_kind::gspo: {
        const double len = rows[3 * b + 1] > 1.0 ? rows[3 * b + 1] : 1.0, sq = rows[3 * b] / len;
        const math::dual d = math::clamp(math::dual{sq, 1.0}, -INFINITY, gspo_max);
        const auto term = math::ppo_clip_log_ratio(math::dual_t<R>{math::lit<R>(d.v), math::lit<R>(d.d)}, a, cp);
        r.loss = term.loss * iw;
        r.grad[0] = term.dlogp * iw;
        r.stat[0] = math::indicator<R>(math::gspo_clipped(sq, gspo_max, a, clip_low, clip_high));
        break;
      }
      case policy_loss_kind::sapo: {
        const auto d = math::sapo_token(lp, o, a, tau_pos, tau_neg);
        r.loss = d.v * iw;
        r.grad[0] = d.d * iw;
        break;
      }
      case policy_loss_kind::cispo: {
        const auto c = math::cispo_token(lp, o, a, clip_low, clip_high, lrc);
        r.loss = c.loss * iw;
        r.grad[0] = c.dlogp * iw;
        r.stat[0] = math::indicator<R>(c.clipped);
        break;
      }
      case policy_loss_kind::gpg:
        r.loss = -lp * a * iw;
        r.grad[0] = -a * iw;
        r.stat[2] = R{};
        break;
      case policy_loss_kind::dro: {
        const auto d = math::dro_token(lp, o, a, dro_beta);
        r.loss = d.v * iw;
        r.grad[0] = d.d * iw;
        break;
      }
      case policy_loss_kind::dppo_tv:
      case policy_loss_kind::dppo_kl: {
        const auto d = math::dppo_token(lp, o, a, clip_low, clip_high, kind == policy_loss_kind::dppo_kl, lrc, cap);
        r.loss = d.coef * iw * lp;
        r.grad[0] = d.coef * iw;
        r.stat[0] = math::indicator<R>(!d.valid);
        r.stat[1] = math::indicator<R>(d.valid & (d.ratio > static_cast<S>(cap)));
        r.stat[2] = -d.log_ratio;
        break;
      }
      case policy_loss_kind::geo_mean: {
        // the row's loss spread over its valid tokens (token-sum weight 1)
        const double n = rows[3 * b + 1], ratio = std::exp(rows[3 * b + 2] / (n + 1e-8));
        const double advb = rows[3 * B + b] / (n + 1e-8);
        const double iw0 = weights.null() ? 1.0 : weights(b, 0);
        const auto g = math::geo_mean_token(lp, o, a, clip_low, clip_high);
        r.loss = math::lit<R>(n > 0 ? -advb * ratio * iw0 / static_cast<double>(B) / n : 0.0);
        r.grad[0] = static_cast<S>(-advb * ratio * iw0 / (n + 1e-8) / static_cast<double>(B)) * g.dlogp;
        r.stat[0] = math::indicator<R>(g.clipped & (a > S(0)));
        r.stat[1] = math::indicator<R>(g.clipped & (a < S(0)));
        break;
      }
      case policy_loss_kind::vanilla:
        break;
    }
    return r;
  }
};
/// GSPO's and geo-mean's per-row sums, one engine pass ahead of the rule:
/// loss = logp - old (row sums: sum m (logp - old)); geo-mean's statistics
/// [sum m sgn(A) min(...), sum m A].
template <class A>
struct seq_rows_token {
  A logp, old, adv;
  bool geo;
  double clip_low, clip_high;
  template <class L = double>
  RLHF_HD_INLINE token_out<0, 2, math::real_t<L>> operator()(index_t b, index_t t) const {
    using R = math::real_t<L>;
    const R lp = logp.template get<L>(b, t), o = old.template get<L>(b, t);
    token_out<0, 2, R> r;
    r.loss = lp - o;
    if (geo) {
      const R a = adv.template get<L>(b, t);
      r.stat[0] = math::geo_mean_token(lp, o, a, clip_low, clip_high).value;
      r.stat[1] = a;
    }
    return r;
  }
};
}  // namespace rules

namespace detail {
/// The optional base of GSPO's sequence ratio: the shape of log_prob, and
/// only for gspo (every other variant's ratio is against old_log_prob).
template <class L, class R>
void check_ratio_shape(const char* fn, const L& logp, const R& ratio_logp, const variant_params& v) {
  if (ratio_logp.null()) return;
  rlhf::detail::require_same_shape(fn, "ratio_log_prob", ratio_logp, "log_prob", logp);
  rlhf::detail::require_param(v.kind == policy_loss_kind::gspo, fn, "ratio_log_prob",
                              "is GSPO's sequence-ratio base; this variant takes its ratio against old_log_prob");
}

/// The variant's result from the engine's sums (both backends).
template <class Sums>
policy_result variant_from(const Sums& s, const variant_params& v, const char* fn) {
  const auto k = v.kind;
  policy_result r;
  r.loss = s.value;
  rlhf::detail::require_finite_result(r.loss, fn, "log_prob",
                                      "a ratio exp(log_prob - old_log_prob) overflows; set log_ratio_clamp");
  const double d = s.n + v.base.stat_eps;
  const bool has_clip = k == policy_loss_kind::gspo || k == policy_loss_kind::cispo || k == policy_loss_kind::dppo_tv ||
                        k == policy_loss_kind::dppo_kl || k == policy_loss_kind::geo_mean;
  const bool has_lower =
      k == policy_loss_kind::dppo_tv || k == policy_loss_kind::dppo_kl || k == policy_loss_kind::geo_mean;
  r.clipfrac = has_clip ? s.stat[0] / d : 0.0;
  r.clipfrac_lower = has_lower ? s.stat[1] / d : 0.0;
  r.ppo_kl = k == policy_loss_kind::gpg ? 0.0 : s.stat[2] / d;
  require_finite_stats(r, fn);
  return r;
}
/// The rule of a variant over accessors of type A (both backends).
template <int Fixed = -1, class A>
rules::variant_token<A, Fixed> variant_rule(const A& logp, const A& old, const A& adv, const A& weights,
                                            const variant_params& v, const double* rows, index_t B) {
  const policy_params& p = v.base;
  return {logp,
          old,
          adv,
          weights,
          v.kind,
          {p.clip_low, p.clip_high, p.dual_clip, INFINITY},
          p.clip_low,
          p.clip_high,
          v.tau_pos,
          v.tau_neg,
          v.dro_beta,
          v.dppo_ratio_cap,
          p.log_ratio_clamp,
          v.gspo_log_ratio_max,
          rows,
          B};
}
/// geo_mean spreads each row's loss over its tokens: token-sum weights.
inline agg_params variant_agg(const variant_params& v) {
  return v.kind == policy_loss_kind::geo_mean ? agg_params::token_sum() : v.base.agg;
}
}  // namespace detail

/// Any registered policy loss. `dlogp` (optional) receives d loss / d logp;
/// `weights` (optional, detached) multiplies the token losses;
/// `ratio_logp` (optional, gspo only) is what the sequence ratio is taken
/// against instead of old_logp (OpenRLHF's GSPO with vLLM IS correction:
/// the rollout's log-probs), while ppo_kl stays mean(old_logp - logp). The token
/// variants are one pass of the CPU objective engine; gspo and geo_mean
/// first sum each row, and GSPO's full gradient then spreads each row's
/// gradient sum over its tokens.
/// Any host tag; under tag.with(comm) every kind but geo_mean (whose loss
/// divides by the batch's row count) over every rank's rows.
template <class Tag, class T, class M>
requires(backend<Tag>&& is_host_backend_v<Tag>) policy_result
    policy_loss_variant(Tag tag, tensor_view<T, 2> logp, in_view<T, 2> old_logp, in_view<T, 2> adv,
                        tensor_view<M, 2> mask, const variant_params& v, out_view<T, 2> dlogp = {},
                        in_view<T, 2> weights = {}, in_view<T, 2> ratio_logp = {}) {
  if (v.kind == policy_loss_kind::vanilla) return policy_loss(tag, logp, old_logp, adv, mask, v.base, dlogp, weights);
  constexpr const char* fn = "ppo::policy_loss_variant";
  [[maybe_unused]] const engine::op_scope scope(tag);
  if constexpr (is_distributed_v<Tag>)
    rlhf::detail::require_param(v.kind != policy_loss_kind::geo_mean, fn, "kind",
                                "geo_mean does not reduce over ranks yet (its loss divides by the local row count)");
  detail::check_policy_shapes(fn, logp, old_logp, adv, mask);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  detail::check_weights_shape(fn, logp, weights);
  detail::check_ratio_shape(fn, logp, ratio_logp, v);
  check_variant_params(v, fn);
  using V = value_t<T>;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  cpu_engine::inputs<V, 5> in{tag.check_finite,
                              {"log_prob", "old_log_prob", "advantages", "weights", "ratio_log_prob"},
                              {logp, old_logp, adv, weights, ratio_logp}};
  const bool seq = v.kind == policy_loss_kind::gspo || v.kind == policy_loss_kind::geo_mean;
  std::vector<double> rows(seq ? static_cast<std::size_t>(4 * B) : 0, 0.0);
  std::vector<double> counts(seq ? static_cast<std::size_t>(B) : 0, 0.0);
  cpu_engine::run_options ro{};
  if (seq) {
    // the per-row sums the rule reads: one engine pass (which also makes
    // the mask's pass and every check), whose row counts the rule's pass reuses
    const bool geo = v.kind == policy_loss_kind::geo_mean;
    std::vector<double> sums(static_cast<std::size_t>(B)), stats(static_cast<std::size_t>(2 * B));
    cpu_engine::run_options po{};
    po.require_tokens = false;
    po.row_sums = sums.data();
    po.row_counts = counts.data();
    po.row_stats = stats.data();
    // GSPO's sequence ratio against ratio_logp where given (OpenRLHF with
    // vLLM IS correction: the rollout's log-probs); ppo_kl stays logp - old
    const rules::seq_rows_token<strided2<V>> rf{strided(logp),   strided(ratio_logp.null() ? old_logp : ratio_logp),
                                                strided(adv),    geo,
                                                v.base.clip_low, v.base.clip_high};
    cpu_engine::run<0, 2>(fn, rf, mask, agg_params::token_sum(), std::array<tensor_view<V, 2>, 0>{}, in, po);
    for (index_t b = 0; b < B; ++b) {
      const auto bi = static_cast<std::size_t>(b);
      rows[3 * bi] = sums[bi];
      rows[3 * bi + 1] = counts[bi];
      rows[3 * bi + 2] = stats[2 * bi];
      rows[3 * static_cast<std::size_t>(B) + bi] = stats[2 * bi + 1];
    }
    ro.counts = counts.data();
  }
  auto pass = [&](auto kind) {
    const auto f = detail::variant_rule<static_cast<int>(decltype(kind)::value)>(
        strided(logp), strided(old_logp), strided(adv), strided(weights), v, rows.data(), B);
    return engine::run<1, 3>(tag, fn, f, mask, detail::variant_agg(v), std::array<tensor_view<V, 2>, 1>{dlogp}, in, ro);
  };
  using K = policy_loss_kind;
  auto run_kind = [&]() {
    switch (v.kind) {
      case K::vanilla:  // (returned above)
      case K::gspo:
        return pass(std::integral_constant<K, K::gspo>{});
      case K::sapo:
        return pass(std::integral_constant<K, K::sapo>{});
      case K::cispo:
        return pass(std::integral_constant<K, K::cispo>{});
      case K::gpg:
        return pass(std::integral_constant<K, K::gpg>{});
      case K::dro:
        return pass(std::integral_constant<K, K::dro>{});
      case K::dppo_tv:
        return pass(std::integral_constant<K, K::dppo_tv>{});
      case K::dppo_kl:
        return pass(std::integral_constant<K, K::dppo_kl>{});
      case K::geo_mean:
        break;
    }
    return pass(std::integral_constant<K, K::geo_mean>{});
  };
  const auto s = run_kind();
  if (v.kind == policy_loss_kind::gspo && v.gspo_grad == gspo_gradient::full && !dlogp.null()) {
    // OpenRLHF's gradient through s_b: d/dlogp_bk = (sum_t g_bt) m_bk / len_b
    for (index_t b = 0; b < B; ++b) {
      double acc = 0;
      for (index_t t = 0; t < T_; ++t) acc += static_cast<double>(dlogp(b, t));
      const double len = std::max(rows[3 * static_cast<std::size_t>(b) + 1], 1.0);
      for (index_t t = 0; t < T_; ++t) dlogp(b, t) = static_cast<V>(acc * static_cast<double>(mask(b, t)) / len);
    }
  }
  return detail::variant_from(s, v, fn);
}

}  // namespace rlhf::ppo
