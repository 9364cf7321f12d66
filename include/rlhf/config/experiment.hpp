// rlhf++ — an experiment is a type.
//
//   using E = rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k3, rlhf::kl_in_loss,
//                              rlhf::adv::grpo, rlhf::agg::seq_mean_token_mean>;
//   E e;                                   // every number at its default (verl's)
//   e.options.ppo.clip_low = 0.1;          // plain struct: train::rl_options
//   rlhf::config::command_line(argc, argv).apply(e);   // --ppo.clip_high=0.28
//   std::cout << e.text();                 // prints itself
//   auto t = rlhf::make_trainer(e, policy, reference, reward, prompts, &critic);
//   t.run();                               // metrics file starts with e.json()
//
// The structural choices (core/choices.hpp) are template arguments, in
// any order; a category left out takes its default (PPO, k1, KL in the
// reward, GAE, token-mean, rlhf::cpu). Incompatible choices stop the
// compilation with a sentence. The numbers are `options`, a plain struct
// reflected with Boost.Hana (config/reflect.hpp): JSON out and back, command
// line overrides, printing, without per-field code.
// `rlhf::sweep<E1, E2, ...>(f)` runs several experiments (hana::for_each).
#pragma once

#include <boost/hana/bool.hpp>
#include <boost/hana/count_if.hpp>
#include <boost/hana/filter.hpp>
#include <boost/hana/for_each.hpp>
#include <boost/hana/front.hpp>
#include <boost/hana/length.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>
#include <boost/hana/unpack.hpp>
#include <boost/hana/concept/foldable.hpp>
#include <fstream>
#include <algorithm>
#include <iomanip>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../train/train.hpp"
#include "choices.hpp"
#include "json.hpp"
#include "reflect.hpp"

namespace rlhf {

namespace config::detail {

namespace hana = boost::hana;

template <class Cat>
constexpr auto in_category = [](auto c) { return hana::bool_c<std::is_same_v<choice::category_t<decltype(c)>, Cat>>; };

/// How many of the choices belong to category Cat.
template <class Cat, class Tuple>
constexpr std::size_t count(Tuple) {
  return decltype(hana::count_if(std::declval<Tuple>(), in_category<Cat>))::value;
}

/// The choice of category Cat, or `fallback` when none is given.
template <class Cat, class Tuple, class D>
constexpr auto pick(Tuple t, D fallback) {
  static_cast<void>(t);  // read only in the branch that a choice of the category takes
  constexpr std::size_t n = decltype(hana::length(hana::filter(t, in_category<Cat>)))::value;
  if constexpr (n == 0)
    return fallback;
  else
    return hana::front(hana::filter(t, in_category<Cat>));
}

}  // namespace config::detail

template <auto... Choices>
struct experiment {
 private:
  static constexpr auto choices_ = boost::hana::make_tuple(Choices...);
  template <class Cat>
  static constexpr std::size_t n_ = config::detail::count<Cat>(choices_);

  static_assert((choice::is_choice_v<decltype(Choices)> && ...),
                "rlhf::experiment: every template argument must be a structural choice: rlhf::algo::ppo/a2c/dpo, "
                "rlhf::kl::k1/k2/k3/abs/k3_is/k4/k3_on_policy, rlhf::kl_in_reward/kl_in_loss, "
                "rlhf::adv::gae/grpo/rloo/reinforce_pp/maxrl/loo_grpo/gdpo, "
                "rlhf::agg::token_mean/..., rlhf::cpu, rlhf::fp32/fp64 (docs/configuration.md)");
  static_assert(n_<choice::algorithm> <= 1, "rlhf::experiment: two algorithms given, one per category is allowed");
  static_assert(n_<choice::kl_estimator> <= 1,
                "rlhf::experiment: two KL estimators given, one per category is allowed");
  static_assert(n_<choice::kl_placement> <= 1,
                "rlhf::experiment: two KL placements given, one per category is allowed");
  static_assert(n_<choice::advantage> <= 1,
                "rlhf::experiment: two advantage estimators given, one per category is allowed");
  static_assert(n_<choice::aggregation> <= 1,
                "rlhf::experiment: two aggregation modes given, one per category is allowed");
  static_assert(n_<choice::backend> <= 1, "rlhf::experiment: two backends given, one per category is allowed");
  static_assert(n_<choice::precision> <= 1, "rlhf::experiment: two precisions given, one per category is allowed");

  static constexpr auto algo_tag_ = config::detail::pick<choice::algorithm>(choices_, rlhf::algo::ppo);
  static constexpr auto kl_tag_ = config::detail::pick<choice::kl_estimator>(choices_, rlhf::kl::k1);
  static constexpr auto where_tag_ = config::detail::pick<choice::kl_placement>(choices_, rlhf::kl_in_reward);
  static constexpr auto adv_tag_ =
      config::detail::pick<choice::advantage>(choices_, adv::estimator_tag<advantage_estimator::gae>{});
  static constexpr auto agg_tag_ = config::detail::pick<choice::aggregation>(choices_, rlhf::agg::token_mean);
  static constexpr auto real_tag_ = config::detail::pick<choice::precision>(choices_, rlhf::fp64);

 public:
  // The structure, as the trainers read it (same members as train::rl_structure).
  static constexpr algorithm algo = decltype(algo_tag_)::value;
  static constexpr kl_estimator kl = decltype(kl_tag_)::value;
  /// the KL in the loss's off-policy correction (rlhf::kl::k3_is, k4, k3_on_policy)
  static constexpr kl_correction kl_corr = kl::correction_of<decltype(kl_tag_)>();
  static constexpr kl_placement kl_where = decltype(where_tag_)::value;
  static constexpr advantage_estimator adv = decltype(adv_tag_)::value;
  static constexpr agg_mode agg = decltype(agg_tag_)::value;
  static constexpr auto backend = config::detail::pick<choice::backend>(choices_, rlhf::cpu);
  /// "cpu" or "cuda".
  static constexpr const char* backend_name = rlhf::backend_name<std::remove_cv_t<decltype(backend)>>();
  /// The trainer's working precision (rlhf::fp32 / rlhf::fp64).
  using real_type = typename decltype(real_tag_)::type;
  static constexpr bool needs_value =
      algo != algorithm::dpo && (adv == advantage_estimator::gae || algo == algorithm::a2c);

  static_assert(kl_corr == kl_correction::none || (algo != algorithm::dpo && kl_where == kl_placement::loss),
                "rlhf::experiment: the IS-corrected KL forms (rlhf::kl::k3_is, k4, k3_on_policy) correct the gradient "
                "of a KL in the loss: add rlhf::kl_in_loss (in the reward, or for DPO, choose rlhf::kl::k1/k2/k3/abs)");
  static_assert(algo != algorithm::dpo || n_<choice::kl_placement> == 0,
                "rlhf::experiment: DPO takes no KL placement: its KL toward the reference is inside its loss (beta); "
                "drop rlhf::kl_in_reward / rlhf::kl_in_loss (the KL estimator only selects the logged kl_ref)");
  static_assert(algo != algorithm::dpo || n_<choice::advantage> == 0,
                "rlhf::experiment: DPO takes no advantage estimator: it learns from preference pairs, with no "
                "rewards to turn into advantages; drop rlhf::adv::...");
  static_assert(algo != algorithm::dpo || n_<choice::aggregation> == 0,
                "rlhf::experiment: DPO takes no token aggregation: its loss is per preference pair, on summed "
                "sequence log-probs; drop rlhf::agg::...");
  static_assert(algo != algorithm::a2c || agg == agg_mode::token_mean,
                "rlhf::experiment: A2C (Stable-Baselines3) averages its losses over tokens: the only aggregation it "
                "supports is rlhf::agg::token_mean (docs/a2c.md)");

  /// The numbers: train::rl_options (PPO, A2C) or train::dpo_options (DPO).
  using options_type = std::conditional_t<algo == algorithm::dpo, train::dpo_options, train::rl_options>;
  options_type options{};

  /// "ppo/k3/loss/grpo/seq-mean-token-mean" ("dpo/k1" for DPO).
  static std::string name() {
    std::string s = std::string(to_string(algo)) + "/" + kl_choice_name(kl, kl_corr);
    if constexpr (algo != algorithm::dpo)
      s += std::string("/") + to_string(kl_where) + "/" + to_string(adv) + "/" + to_string(agg);
    if constexpr (!is_host_backend_v<std::remove_cv_t<decltype(backend)>>)
      s += std::string("/") + backend_name;
    else if (!backend.check_finite)
      s += "/unchecked";
    if constexpr (std::is_same_v<real_type, float>) s += "/fp32";
    return s;
  }

  /// The structure and every option, as one record (the metrics file's first line).
  [[nodiscard]] train::record record() const { return config::config_record<experiment>(options); }
  /// One line of JSON; read_json gives the same experiment back.
  [[nodiscard]] std::string json() const { return record().json(); }

  /// One setting per line, "key = value": the structure, then the options.
  [[nodiscard]] std::string text() const {
    train::record r;
    config::structure_to_record<experiment>(r);
    std::string s;
    for (const auto& [k, v] : r.items()) s += k + " = " + std::get<std::string>(v) + "\n";
    return s + config::to_text(options);
  }

  /// Reads the JSON of json() (or a partial object: missing keys keep their
  /// values; nested objects may stand for dotted keys). The structure keys
  /// must match this type; "record", "experiment" and "final.*" are skipped
  /// (a sweep line reads back). Any other key must be an option.
  void read_json(std::string_view text) {
    options_type o = options;  // nothing changes unless everything parses
    train::record mine;
    config::structure_to_record<experiment>(mine);
    for (const auto& it : config::read_json_object(text)) {
      if (it.key == "record" || it.key == "experiment" || it.key.rfind("final.", 0) == 0) continue;
      if (config::is_structure_key(it.key)) {
        std::string expected = "(none)";
        for (const auto& [k, v] : mine.items())
          if (k == it.key) expected = std::get<std::string>(v);
        if (it.text != expected)
          rlhf::detail::fail(error_kind::param, "config::read_json", it.key,
                             "is '" + it.text + "' in the JSON but '" + expected + "' in this experiment type (" +
                                 name() + "): the structure is compile-time; declare the matching type");
        continue;
      }
      if (!config::set_field_json(o, it))
        config::set_field_or_fail(o, it.key, it.text);  // the unknown-key error, with a suggestion
    }
    check_options(o, "config::read_json");  // every option in its range, before anything changes
    options = std::move(o);
  }
  /// The options' ranges (train/options.hpp), as the trainers check them.
  static void check_options(const options_type& o, const char* fn) {
    if constexpr (algo == algorithm::dpo)
      train::check_dpo_options(o, fn);
    else
      train::check_rl_options(o, fn);
  }
  static experiment from_json(std::string_view text) {
    experiment e;
    e.read_json(text);
    return e;
  }

  friend std::ostream& operator<<(std::ostream& os, const experiment& e) { return os << e.text(); }
  friend bool operator==(const experiment& a, const experiment& b) { return a.json() == b.json(); }
};

// ---------------------------------------------------------------------------
// Trainers from an experiment.

template <class E>
concept an_experiment = requires {
  typename E::options_type;
  E::algo;
  E::kl;
};

/// PPO / A2C: policy, reference, reward model, prompts, and a value function
/// when the structure needs one (GAE, A2C).
template <an_experiment E, class P, class R, class RM, class V = no_value_function>
requires(!std::is_same_v<std::remove_cvref_t<RM>, std::vector<train::basic_preference<token_type_of_t<P>>>>)
    train::rl_trainer<E, P, R, RM, V> make_trainer(const E& e, P& policy, R& reference, RM& reward,
                                                   std::vector<std::vector<token_type_of_t<P>>> prompts,
                                                   V* value = nullptr) {
  if constexpr (E::algo == algorithm::dpo) {
    // rl_trainer's static_assert states the sentence; keep one diagnostic
    return train::rl_trainer<E, P, R, RM, V>(policy, reference, reward, std::move(prompts), train::rl_options{}, value);
  } else {
    return train::rl_trainer<E, P, R, RM, V>(policy, reference, reward, std::move(prompts), e.options, value);
  }
}

/// DPO: policy, reference and the preference pairs.
template <an_experiment E, class P, class R>
auto make_trainer(const E& e, P& policy, R& reference, std::vector<train::basic_preference<token_type_of_t<P>>> pairs) {
  static_assert(E::algo == algorithm::dpo,
                "rlhf::make_trainer: preference pairs are DPO's data; a PPO or A2C experiment samples from the policy "
                "and needs a reward model and prompts: make_trainer(e, policy, reference, reward, prompts[, &value])");
  if constexpr (E::algo == algorithm::dpo)
    return train::dpo_trainer<P, R, E>(policy, reference, std::move(pairs), e.options);
}

// ---------------------------------------------------------------------------
// Command line: --key=value / --key value overrides, --config FILE.

namespace config {

/// Splits a command line into the program's own flags and option overrides.
///   command_line cl(argc, argv, {"--jsonl", "--steps-scale"});
///   auto file = cl.value("--jsonl");      // the program's own flag
///   cl.apply(e);                           // --config FILE, then --ppo.clip_low=0.1 ...
/// Own flags take a value (--flag=v or --flag v) unless the next argument
/// starts with "--" (then they are switches: value ""). Everything else must
/// be --key=value or --key value.
class command_line {
 public:
  command_line(int argc, const char* const* argv, std::initializer_list<std::string_view> own = {}) {
    std::vector<std::string_view> mine(own);
    mine.push_back("--config");
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0 || a.size() == 2)
        rlhf::detail::fail(error_kind::param, "config::command_line", a,
                           "is not an option: expected --key=value, --key value or one of the program's flags");
      std::string key = a, val;
      bool has_val = false;
      if (const auto eq = a.find('='); eq != std::string::npos) {
        key = a.substr(0, eq);
        val = a.substr(eq + 1);
        has_val = true;
      }
      const bool is_own = std::find(mine.begin(), mine.end(), key) != mine.end();
      if (!has_val && i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
        val = argv[++i];
        has_val = true;
      }
      if (is_own) {
        own_.emplace_back(key, val);
      } else {
        if (!has_val)
          rlhf::detail::fail(error_kind::param, "config::command_line", key.substr(2), "has no value (--key=value)");
        overrides_.emplace_back(key.substr(2), val);
      }
    }
  }

  [[nodiscard]] bool has(std::string_view flag) const {
    for (const auto& [k, v] : own_)
      if (k == flag) return true;
    return false;
  }
  [[nodiscard]] std::optional<std::string> value(std::string_view flag) const {
    std::optional<std::string> r;
    for (const auto& [k, v] : own_)
      if (k == flag) r = v;
    return r;
  }
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& overrides() const noexcept {
    return overrides_;
  }

  /// --config FILE (JSON, read_json) first, then every override in order.
  /// Strict: a key that is not an option of E is rlhf::error(param) naming
  /// it. `lenient` skips such keys (a sweep whose experiments differ; check
  /// them once with require_known<E...>()). Nothing changes on error.
  template <class E>
  void apply(E& e, bool lenient = false) const {
    E next = e;
    if (auto f = value("--config")) {
      std::ifstream in(*f);
      if (!in) rlhf::detail::fail(error_kind::param, "config::command_line", "config", "cannot read '" + *f + "'");
      // at most 16 MiB: a configuration, not a device that never ends
      constexpr std::size_t limit = std::size_t{16} << 20;
      std::string text(limit + 1, '\0');
      in.read(text.data(), static_cast<std::streamsize>(text.size()));
      text.resize(static_cast<std::size_t>(in.gcount()));
      if (text.size() > limit)
        rlhf::detail::fail(error_kind::param, "config::command_line", "config", "'" + *f + "' is larger than 16 MiB");
      next.read_json(text);
    }
    for (const auto& [k, v] : overrides_) {
      if (is_structure_key(k))
        rlhf::detail::fail(error_kind::param, "config::command_line", k,
                           "is a compile-time choice of the experiment type (" + E::name() +
                               "), not a run-time option: declare another rlhf::experiment (docs/configuration.md)");
      if (lenient)
        set_field(next.options, k, v);
      else
        set_field_or_fail(next.options, k, v);
    }
    E::check_options(next.options, "config::command_line");
    e = std::move(next);
  }

  /// Every override key must be an option of at least one of the E.
  template <class... E>
  void require_known() const {
    std::vector<std::string> names;
    (
        [&] {
          for (auto& n : field_names<typename E::options_type>()) names.push_back(n);
        }(),
        ...);
    for (const auto& [k, v] : overrides_) {
      if (is_structure_key(k))
        rlhf::detail::fail(error_kind::param, "config::command_line", k,
                           "is a compile-time choice of the experiment types, not a run-time option");
      if (std::find(names.begin(), names.end(), k) == names.end())
        rlhf::detail::fail(error_kind::param, "config::command_line", k,
                           "is not an option of any experiment here" + detail::did_you_mean(k, names));
    }
  }

 private:
  std::vector<std::pair<std::string, std::string>> own_, overrides_;
};

}  // namespace config

// ---------------------------------------------------------------------------
// Sweeps.

/// One experiment of a sweep: its name, resolved configuration and final metrics.
struct sweep_row {
  std::string name;
  train::record config, final;

  /// One JSON line: {"record": "sweep", "experiment": name, <config>, "final.<metric>": ...}.
  /// The experiment type reads it back (read_json skips the final.* keys).
  [[nodiscard]] std::string json() const {
    train::record r;
    r.set("record", "sweep").set("experiment", name);
    // (named copies of the bindings: clang 14 cannot capture a structured binding)
    for (const auto& [k, v] : config.items()) {
      const std::string& key = k;
      if (key != "record") std::visit([&](const auto& x) { put(r, key, x); }, v);
    }
    for (const auto& [k, v] : final.items()) {
      const std::string key = "final." + k;
      std::visit([&](const auto& x) { put(r, key, x); }, v);
    }
    return r.json();
  }

 private:
  template <class X>
  static void put(train::record& r, const std::string& k, const X& x) {
    if constexpr (std::is_same_v<X, std::monostate>)
      r.set(k, std::nullopt);
    else
      r.set(k, x);
  }
};

/// Runs `run_one(e)` for a default-constructed experiment of each type, in
/// order (hana::for_each over the types). `run_one` sets the options, trains
/// and returns the final metrics (a train::record).
template <class... E, class F>
std::vector<sweep_row> sweep(F&& run_one) {
  namespace hana = boost::hana;
  std::vector<sweep_row> rows;
  hana::for_each(hana::tuple_t<E...>, [&](auto t) {
    using X = typename decltype(t)::type;
    X e{};
    train::record final = run_one(e);
    rows.push_back({X::name(), e.record(), std::move(final)});
  });
  return rows;
}

/// The same, over a tuple of experiment types: sweep(hana::tuple_t<E1, E2>, f).
template <class Types, class F>
requires boost::hana::Foldable<Types>::value std::vector<sweep_row> sweep(Types types, F&& run_one) {
  return boost::hana::unpack(types, [&](auto... t) { return sweep<typename decltype(t)::type...>(run_one); });
}

/// A table of the sweep: one row per experiment, one column per metric.
inline void print_table(std::ostream& os, const std::vector<sweep_row>& rows, const std::vector<std::string>& metrics) {
  std::size_t w = 10;
  for (const auto& r : rows) w = std::max(w, r.name.size());
  os << std::left << std::setw(static_cast<int>(w)) << "experiment";
  for (const auto& m : metrics) os << "  " << std::right << std::setw(14) << m;
  os << '\n';
  for (const auto& r : rows) {
    os << std::left << std::setw(static_cast<int>(w)) << r.name;
    for (const auto& m : metrics) {
      std::ostringstream v;
      v << std::fixed << std::setprecision(5) << r.final.number(m);
      os << "  " << std::right << std::setw(14) << v.str();
    }
    os << '\n';
  }
}

}  // namespace rlhf
