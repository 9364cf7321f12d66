// rlhf++ — rollout correction: the rollout engine (vLLM, SGLang) samples
// with log-probs that differ from the trainer's, so the trainer rejects the
// tokens or sequences that drifted too far and reweights the rest (verl
// trainer/ppo/rollout_corr_helper.py; Yao et al. 2025, "Your efficient RL
// framework secretly brings you off-policy RL training"; IcePop, Ling team
// 2025). And DAPO's overlong reward shaping (Yu et al. 2025, arXiv
// 2503.14476; OpenRLHF length_penalty.py).
//
// log_ratio = log pi_train - log pi_rollout, x = clamp(log_ratio, -20, 20):
//   k1 = -x, k2 = x^2 / 2, k3 = exp(x) - 1 - x   (per token)
//   rejection: each option judges a token (token_*) or its row (seq_sum_*:
//   sum m k, seq_mean_*: sum m k / (sum m + 1e-8), seq_max_*: max over the
//   valid tokens); kept where log(lower) <= stat <= log(upper) (k1) or
//   stat <= upper (k2, k3); the mask becomes mask * AND of the options.
//   weights: raw = exp(x) (token) or exp(clamp(sum_t m log_ratio, +-20))
//   (sequence), times the mask; TIS min(raw, u) or IcePop raw [l <= raw <= u];
//   optionally divided by their batch mean.
#pragma once

#include <cmath>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../core/named_enum.hpp"
#include "../backend/cpu/objective.hpp"

namespace rlhf::rollout_corr {

RLHF_BACKEND_FIRST(rejection_mask)
RLHF_BACKEND_FIRST(correction_weights)
RLHF_BACKEND_FIRST(overlong_penalty)

RLHF_NAMED_ENUM(rs_stat, (k1, "k1"), (k2, "k2"), (k3, "k3"));
RLHF_NAMED_ENUM(rs_scope, (token, "token"), (seq_sum, "seq_sum"), (seq_mean, "seq_mean"), (seq_max, "seq_max"));

/// One rejection rule: a statistic over a scope and its bounds (k1: lower
/// and upper ratio bounds, compared in log space; k2, k3: an upper bound).
struct rs_option {
  rs_scope scope = rs_scope::token;
  rs_stat stat = rs_stat::k1;
  double lower = 0.0;  ///< k1 only (> 0)
  double upper = 1.0;
};

namespace detail {
inline std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}
inline std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == sep) {
      out.push_back(trim(s.substr(start, i - start)));
      start = i + 1;
    }
  return out;
}
/// A finite number (the whole text), else rlhf::error(param) naming `arg`.
inline double number(const std::string& s, const char* fn, const char* arg) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size() || !std::isfinite(v))
    rlhf::detail::fail(error_kind::param, fn, arg, "'" + s + "' is not a finite number");
  return v;
}
inline void check_option(const rs_option& o, const char* fn) {
  if (o.stat == rs_stat::k1) {
    rlhf::detail::require_param(
        o.lower > 0 && o.upper > 0 && o.lower <= o.upper, fn, "rollout_rs_threshold",
        "a k1 option needs 0 < lower <= upper; got " + std::to_string(o.lower) + ", " + std::to_string(o.upper));
  } else {
    rlhf::detail::require_param(o.upper > 0, fn, "rollout_rs_threshold", "must be > 0; got " + std::to_string(o.upper));
  }
  rlhf::detail::require_param(o.scope != rs_scope::seq_max || o.stat != rs_stat::k1, fn, "rollout_rs",
                              "seq_max_k1 is not an option (seq_max takes k2 or k3)");
}
}  // namespace detail

/// verl's configuration strings: `rollout_rs` (comma-separated option names,
/// a repeated name keeps its first occurrence) and `rollout_rs_threshold`
/// (one spec for all, or one per option, comma-separated; a k1 spec is
/// "lower_upper" or u, meaning lower = 1/u). Unknown names, malformed or
/// out-of-range specs and a spec count other than 1 or the option count are
/// rlhf::error(param).
inline std::vector<rs_option> parse_rejection(std::string_view names, std::string_view thresholds) {
  constexpr const char* fn = "rollout_corr::parse_rejection";
  std::vector<std::string> opts;
  for (auto& n : detail::split(names, ','))
    if (!n.empty()) {
      bool seen = false;
      for (auto& o : opts) seen = seen || o == n;
      if (!seen) opts.push_back(n);
    }
  rlhf::detail::require_param(!opts.empty(), fn, "rollout_rs", "names no option");
  const auto specs = detail::split(thresholds, ',');
  rlhf::detail::require_param(specs.size() == 1 || specs.size() == opts.size(), fn, "rollout_rs_threshold",
                              "must give one spec or one per option (" + std::to_string(opts.size()) + "); got " +
                                  std::to_string(specs.size()));
  std::vector<rs_option> out;
  for (std::size_t i = 0; i < opts.size(); ++i) {
    const std::string& n = opts[i];
    rs_option o;
    const auto us = n.rfind('_');
    const std::string scope = us == std::string::npos ? "" : n.substr(0, us),
                      stat = us == std::string::npos ? n : n.substr(us + 1);
    bool ok = us != std::string::npos;
    if (ok) {
      if (scope == "token")
        o.scope = rs_scope::token;
      else if (scope == "seq_sum")
        o.scope = rs_scope::seq_sum;
      else if (scope == "seq_mean")
        o.scope = rs_scope::seq_mean;
      else if (scope == "seq_max")
        o.scope = rs_scope::seq_max;
      else
        ok = false;
      if (stat == "k1")
        o.stat = rs_stat::k1;
      else if (stat == "k2")
        o.stat = rs_stat::k2;
      else if (stat == "k3")
        o.stat = rs_stat::k3;
      else
        ok = false;
    }
    ok = ok && !(o.scope == rs_scope::seq_max && o.stat == rs_stat::k1);
    if (!ok)
      rlhf::detail::fail(
          error_kind::param, fn, "rollout_rs",
          "unknown option '" + n + "' (token_k1/k2/k3, seq_sum_k1/k2/k3, seq_mean_k1/k2/k3, seq_max_k2/k3)");
    const std::string& spec = specs.size() == 1 ? specs[0] : specs[i];
    const auto cut = spec.find('_');
    if (o.stat == rs_stat::k1) {
      if (cut == std::string::npos) {
        o.upper = detail::number(spec, fn, "rollout_rs_threshold");
        rlhf::detail::require_param(o.upper > 0, fn, "rollout_rs_threshold", "must be > 0; got '" + spec + "'");
        o.lower = 1.0 / o.upper;
      } else {
        o.lower = detail::number(spec.substr(0, cut), fn, "rollout_rs_threshold");
        o.upper = detail::number(spec.substr(cut + 1), fn, "rollout_rs_threshold");
      }
    } else {
      rlhf::detail::require_param(cut == std::string::npos, fn, "rollout_rs_threshold",
                                  "a k2 / k3 option takes one upper bound, not '" + spec + "'");
      o.upper = detail::number(spec, fn, "rollout_rs_threshold");
    }
    detail::check_option(o, fn);
    out.push_back(o);
  }
  return out;
}

struct rejection_stats {
  double masked_fraction = 0;      ///< rollout_rs_masked_fraction: rejected valid tokens / valid tokens
  double seq_masked_fraction = 0;  ///< rollout_rs_seq_masked_fraction: rows with a rejected valid token / B (float32)
};

namespace detail {
/// verl's clamp of the log ratio before any statistic or weight.
inline double clamp20(double x) { return x < -20 ? -20.0 : (x > 20 ? 20.0 : x); }
inline double rs_value(rs_stat s, double log_ratio) {
  const double x = clamp20(log_ratio);
  switch (s) {
    case rs_stat::k1:
      return -x;
    case rs_stat::k2:
      return 0.5 * x * x;
    case rs_stat::k3:
      break;
  }
  return std::exp(x) - 1.0 - x;
}
inline bool rs_keep(const rs_option& o, double stat) {
  if (o.stat == rs_stat::k1) return std::log(o.lower) <= stat && stat <= std::log(o.upper);
  return stat <= o.upper;
}
template <class T, class M>
void check_log_ratio(const char* fn, const tensor_view<T, 2>& lr, const tensor_view<M, 2>& mask) {
  rlhf::detail::require_nonempty(fn, "log_ratio", lr);
  rlhf::detail::require_same_shape(fn, "response_mask", mask, "log_ratio", lr);
}
}  // namespace detail

/// verl compute_rollout_rejection_mask: modified = mask * AND of the
/// options' keep masks (0/1). No valid token is rlhf::error(empty).
template <class T, class M>
rejection_stats rejection_mask(cpu_t tag, tensor_view<T, 2> log_ratio, tensor_view<M, 2> mask,
                               const std::vector<rs_option>& options, out_view<T, 2> modified) {
  constexpr const char* fn = "rollout_corr::rejection_mask";
  detail::check_log_ratio(fn, log_ratio, mask);
  rlhf::detail::require_same_shape(fn, "modified_response_mask", modified, "log_ratio", log_ratio);
  rlhf::detail::require_param(!options.empty(), fn, "options", "is empty");
  for (const auto& o : options) detail::check_option(o, fn);
  rlhf::detail::require_finite(tag, fn, "log_ratio", log_ratio);
  const index_t B = log_ratio.extent(0), T_ = log_ratio.extent(1);
  const double n = cpu_engine::mask_sum(fn, mask, "response_mask");  // (its NaN / Inf scan too)
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has no valid token");
  std::vector<unsigned char> keep(static_cast<std::size_t>(B * T_), 1);
  for (const auto& o : options)
    for (index_t b = 0; b < B; ++b) {
      bool row_keep = true;
      if (o.scope != rs_scope::token) {
        double s = 0, c = 0, mx = 0;
        bool any = false;
        for (index_t t = 0; t < T_; ++t) {
          const double m = static_cast<double>(mask(b, t));
          const double k = detail::rs_value(o.stat, static_cast<double>(log_ratio(b, t)));
          s += k * m;
          c += m;
          if (m != 0) {
            mx = any ? std::fmax(mx, k) : k;
            any = true;
          }
        }
        const double stat = o.scope == rs_scope::seq_sum ? s : (o.scope == rs_scope::seq_mean ? s / (c + 1e-8) : mx);
        row_keep = detail::rs_keep(o, stat);
      }
      for (index_t t = 0; t < T_; ++t) {
        const bool k = o.scope == rs_scope::token
                           ? detail::rs_keep(o, detail::rs_value(o.stat, static_cast<double>(log_ratio(b, t))))
                           : row_keep;
        if (!k) keep[static_cast<std::size_t>(b * T_ + t)] = 0;
      }
    }
  rejection_stats r;
  double rejected = 0;
  int rows = 0;
  for (index_t b = 0; b < B; ++b) {
    bool row = false;
    for (index_t t = 0; t < T_; ++t) {
      const double m = static_cast<double>(mask(b, t));
      const bool k = keep[static_cast<std::size_t>(b * T_ + t)] != 0;
      if (!k) rejected += m;
      row = row || (!k && m != 0);
    }
    rows += row ? 1 : 0;
  }
  r.masked_fraction = rejected / (n + 1e-8);
  r.seq_masked_fraction = static_cast<double>(static_cast<float>(rows) / static_cast<float>(B));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t)
      modified(b, t) = static_cast<value_t<T>>(static_cast<double>(mask(b, t)) *
                                               (keep[static_cast<std::size_t>(b * T_ + t)] != 0 ? 1.0 : 0.0));
  return r;
}

RLHF_NAMED_ENUM(is_level, (token, "token"), (sequence, "sequence"));

struct weights_params {
  is_level level = is_level::token;
  double upper = 2.0;   ///< TIS cap / IcePop upper bound (> 0)
  double lower = 0.0;   ///< IcePop lower bound (0 < lower <= upper); 0 = TIS
  bool icepop = false;  ///< keep raw weights in [lower, upper], zero the rest; else TIS min(raw, upper)
  bool batch_normalize = false;

  /// verl's `rollout_is_threshold`: a number, or a string "u" (TIS) or
  /// "lower_upper" (IcePop).
  static weights_params parse(is_level level, std::string_view threshold, bool batch_normalize) {
    constexpr const char* fn = "rollout_corr::weights_params::parse";
    weights_params p;
    p.level = level;
    p.batch_normalize = batch_normalize;
    const std::string s = detail::trim(threshold);
    const auto cut = s.find('_');
    if (cut == std::string::npos) {
      p.upper = detail::number(s, fn, "rollout_is_threshold");
    } else {
      p.icepop = true;
      p.lower = detail::number(s.substr(0, cut), fn, "rollout_is_threshold");
      p.upper = detail::number(s.substr(cut + 1), fn, "rollout_is_threshold");
    }
    return p;
  }
};

inline void check_weights_params(const weights_params& p, const char* fn) {
  rlhf::detail::require_param(std::isfinite(p.upper) && p.upper > 0, fn, "rollout_is_threshold",
                              "must be > 0; got " + std::to_string(p.upper));
  if (p.icepop)
    rlhf::detail::require_param(p.lower > 0 && p.lower <= p.upper, fn, "rollout_is_threshold",
                                "IcePop needs 0 < lower <= upper; got " + std::to_string(p.lower));
}

struct weights_stats {
  double mean = 0;               ///< rollout_is_mean (before any normalisation)
  double eff_sample_size = 0;    ///< rollout_is_eff_sample_size
  double oob_ratio = 0;          ///< rollout_is_oob_ratio (IcePop)
  double batch_norm_factor = 1;  ///< rollout_is_batch_norm_factor (batch normalisation)
};

/// verl compute_rollout_correction_weights (one process: the batch mean is
/// local). `weights` (detached) is written at every position (0 where
/// masked). No valid token, or every weight 0 (no effective sample size),
/// is rlhf::error(empty).
template <class T, class M>
weights_stats correction_weights(cpu_t tag, tensor_view<T, 2> log_ratio, tensor_view<M, 2> mask,
                                 const weights_params& p, out_view<T, 2> weights) {
  constexpr const char* fn = "rollout_corr::correction_weights";
  detail::check_log_ratio(fn, log_ratio, mask);
  rlhf::detail::require_same_shape(fn, "rollout_is_weights", weights, "log_ratio", log_ratio);
  check_weights_params(p, fn);
  rlhf::detail::require_finite(tag, fn, "log_ratio", log_ratio);
  rlhf::detail::require_mask(fn, "response_mask", mask);
  const index_t B = log_ratio.extent(0), T_ = log_ratio.extent(1);
  std::vector<double> raw(static_cast<std::size_t>(B * T_)), w(raw.size()), rowlen(static_cast<std::size_t>(B));
  double n = 0;
  for (index_t b = 0; b < B; ++b) {
    double s = 0, c = 0;
    for (index_t t = 0; t < T_; ++t) {
      const double m = static_cast<double>(mask(b, t));
      s += static_cast<double>(log_ratio(b, t)) * m;
      c += m;
    }
    rowlen[static_cast<std::size_t>(b)] = c;
    n += c;
    for (index_t t = 0; t < T_; ++t) {
      const double m = static_cast<double>(mask(b, t));
      const double e = p.level == is_level::token ? std::exp(detail::clamp20(static_cast<double>(log_ratio(b, t))))
                                                  : std::exp(detail::clamp20(s));
      raw[static_cast<std::size_t>(b * T_ + t)] = e * m;
    }
  }
  if (!(n > 0)) rlhf::detail::fail(error_kind::empty, fn, "response_mask", "has no valid token");
  weights_stats r;
  double sw = 0, oob = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) {
      const auto i = static_cast<std::size_t>(b * T_ + t);
      const double m = static_cast<double>(mask(b, t)), x = raw[i];
      const bool out = x < p.lower || x > p.upper;
      w[i] = p.icepop ? (out ? 0.0 : x) : std::fmin(x, p.upper);
      sw += w[i] * m;
      if (p.icepop && out) oob += m;
    }
  r.mean = sw / (n + 1e-8);
  // verl's ESS clamps the weights to [0, upper] first: TIS and IcePop weights
  // are there already, so its mean is r.mean
  const double mu = r.mean;
  double ss = 0;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) {
      const auto i = static_cast<std::size_t>(b * T_ + t);
      const double q = w[i] / (mu + 1e-8);
      ss += q * q * static_cast<double>(mask(b, t));
    }
  const double msq = ss / (n + 1e-8);
  if (!(msq > 0))
    rlhf::detail::fail(error_kind::empty, fn, "log_ratio", "gives every weight 0: no effective sample size");
  r.eff_sample_size = 1.0 / msq;
  r.oob_ratio = p.icepop ? oob / (n + 1e-8) : 0.0;
  if (p.batch_normalize) {
    double mub;
    if (p.level == is_level::token) {
      mub = sw / (n + 1e-8);
    } else {
      double s = 0, rows = 0;
      for (index_t b = 0; b < B; ++b) {
        double rs = 0;
        for (index_t t = 0; t < T_; ++t)
          rs += w[static_cast<std::size_t>(b * T_ + t)] * static_cast<double>(mask(b, t));
        const double len = rowlen[static_cast<std::size_t>(b)];
        if (len > 0) {
          s += rs / (len + 1e-8);
          rows += 1;
        }
      }
      mub = s / std::fmax(rows, 1e-8);
    }
    if (mub > 1e-8) {
      for (auto& x : w) x /= mub;
      r.batch_norm_factor = mub;
    }
  }
  for (auto x : w) rlhf::detail::require_finite_result(x, fn, "log_ratio", "a weight overflows");
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T_; ++t) weights(b, t) = static_cast<value_t<T>>(w[static_cast<std::size_t>(b * T_ + t)]);
  return r;
}

/// DAPO's overlong shaping as OpenRLHF applies it: with expected =
/// max_new_tokens - buffer and e = min(L - expected, buffer), a response
/// with e > 0 gets reward += (-e / buffer) * factor. `out` may alias
/// `rewards`. Returns the number of penalised responses.
struct overlong_params {
  double max_new_tokens = 0;
  double buffer = 0;  ///< overlong_buffer_len (0 penalises nothing)
  double factor = 1.0;
};

template <class T, class L>
index_t overlong_penalty(cpu_t tag, tensor_view<T, 1> rewards, tensor_view<L, 1> response_length,
                         const overlong_params& p, out_view<T, 1> out) {
  constexpr const char* fn = "rollout_corr::overlong_penalty";
  rlhf::detail::require_nonempty(fn, "rewards", rewards);
  rlhf::detail::require_same_shape(fn, "response_length", response_length, "rewards", rewards);
  rlhf::detail::require_same_shape(fn, "out", out, "rewards", rewards);
  rlhf::detail::require_finite_param(p.max_new_tokens, fn, "max_new_tokens");
  rlhf::detail::require_finite_param(p.buffer, fn, "overlong_buffer_len");
  rlhf::detail::require_finite_param(p.factor, fn, "overlong_penalty_factor");
  rlhf::detail::require_nonneg_param(p.buffer, fn, "overlong_buffer_len");
  rlhf::detail::require_param(p.max_new_tokens >= p.buffer, fn, "overlong_buffer_len", "must be <= max_new_tokens");
  rlhf::detail::require_finite(tag, fn, "rewards", rewards);
  rlhf::detail::require_finite(fn, "response_length", response_length);
  const double expected = p.max_new_tokens - p.buffer;
  const index_t B = rewards.extent(0);
  std::vector<double> r(static_cast<std::size_t>(B));
  index_t count = 0;
  for (index_t b = 0; b < B; ++b) {
    double x = static_cast<double>(rewards(b));
    const double e = std::fmin(static_cast<double>(response_length(b)) - expected, p.buffer);
    if (e > 0) {
      x += (-e / p.buffer) * p.factor;
      ++count;
    }
    r[static_cast<std::size_t>(b)] = x;
    rlhf::detail::require_finite_result(static_cast<double>(static_cast<value_t<T>>(x)), fn, "rewards",
                                        "the shaped reward overflows");
  }
  for (index_t b = 0; b < B; ++b) out(b) = static_cast<value_t<T>>(r[static_cast<std::size_t>(b)]);
  return count;
}

}  // namespace rlhf::rollout_corr
