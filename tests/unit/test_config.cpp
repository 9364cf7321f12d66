// config/: experiments as types, reflection, JSON round trips, command-line
// overrides, sweeps, and the trainers built from an experiment.
#include <cstdio>
#include <fstream>
#include <set>
#include <rlhf/config/experiment.hpp>
#include <sstream>

#include "../../examples/tabular_models.hpp"
#include "helpers.hpp"

using namespace testing;
using rlhf::error_kind;
namespace tr = rlhf::train;
namespace cfg = rlhf::config;

namespace {

using ppo_default = rlhf::experiment<>;
using ppo_grpo =
    rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k3, rlhf::kl_in_loss, rlhf::adv::grpo, rlhf::agg::seq_mean_token_mean>;
using a2c_k2 = rlhf::experiment<rlhf::kl::k2, rlhf::algo::a2c>;  // any order
using dpo_k3 = rlhf::experiment<rlhf::algo::dpo, rlhf::kl::k3>;
using ppo_unchecked = rlhf::experiment<rlhf::adv::rloo, rlhf::cpu.unchecked()>;

// The structure each type resolves to (defaults: PPO, k1, in the reward, GAE, token-mean, cpu).
static_assert(ppo_default::algo == rlhf::algorithm::ppo && ppo_default::kl == rlhf::kl_estimator::k1 &&
              ppo_default::kl_where == rlhf::kl_placement::reward &&
              ppo_default::adv == rlhf::advantage_estimator::gae && ppo_default::agg == rlhf::agg_mode::token_mean &&
              ppo_default::backend.check_finite && ppo_default::needs_value);
static_assert(ppo_grpo::kl == rlhf::kl_estimator::k3 && ppo_grpo::kl_where == rlhf::kl_placement::loss &&
              ppo_grpo::adv == rlhf::advantage_estimator::grpo &&
              ppo_grpo::agg == rlhf::agg_mode::seq_mean_token_mean && !ppo_grpo::needs_value);
static_assert(a2c_k2::algo == rlhf::algorithm::a2c && a2c_k2::kl == rlhf::kl_estimator::k2 && a2c_k2::needs_value);
static_assert(dpo_k3::algo == rlhf::algorithm::dpo && !dpo_k3::needs_value);
static_assert(std::is_same_v<dpo_k3::options_type, tr::dpo_options>);
static_assert(std::is_same_v<ppo_grpo::options_type, tr::rl_options>);
static_assert(!ppo_unchecked::backend.check_finite && !ppo_unchecked::needs_value);
// the IS-corrected KL forms: the estimator, its correction, and the names of the run
using ppo_k3_is = rlhf::experiment<rlhf::kl::k3_is, rlhf::kl_in_loss, rlhf::adv::loo_grpo>;
using ppo_k4 = rlhf::experiment<rlhf::kl::k4, rlhf::kl_in_loss, rlhf::adv::gdpo>;
using ppo_onp = rlhf::experiment<rlhf::kl::k3_on_policy, rlhf::kl_in_loss, rlhf::adv::maxrl>;
static_assert(ppo_k3_is::kl == rlhf::kl_estimator::k3 && ppo_k3_is::kl_corr == rlhf::kl_correction::ratio &&
              ppo_k3_is::adv == rlhf::advantage_estimator::loo_grpo && !ppo_k3_is::needs_value);
static_assert(ppo_k4::kl == rlhf::kl_estimator::k1 && ppo_k4::kl_corr == rlhf::kl_correction::ratio &&
              ppo_k4::adv == rlhf::advantage_estimator::gdpo);
static_assert(ppo_onp::kl == rlhf::kl_estimator::k3 && ppo_onp::kl_corr == rlhf::kl_correction::on_policy);
static_assert(ppo_grpo::kl_corr == rlhf::kl_correction::none);

/// Moves every option of `s` away from its default, generically: numbers by
/// an odd amount, booleans flipped, enums to their next value, strings and
/// unset optionals given a value. Returns how many options it changed.
template <class S>
int perturb(S& s) {
  int n = 0;
  cfg::for_each_field(s, [&](const std::string& name, auto& v) {
    using T = std::remove_cvref_t<decltype(v)>;
    ++n;
    if constexpr (cfg::is_optional<T>::value)
      v = 3.0 + 1.0 / 7.0;
    else if constexpr (std::is_same_v<T, bool>)
      v = !v;
    else if constexpr (std::is_same_v<T, std::string>)
      v = name + " \"quoted\"\\path";
    else if constexpr (std::is_enum_v<T>) {
      const int next = static_cast<int>(v) + 1;
      v = std::string(to_string(static_cast<T>(next))) == "?" ? static_cast<T>(0) : static_cast<T>(next);
    } else if constexpr (std::is_floating_point_v<T>)
      // in range: a value in [0, 1] (a probability, a discount) stays in [0, 1]
      v = std::isinf(v) ? 0.1 + 1e-17 : (v >= 0 && v <= 1.0) ? v * 0.5 + 1.0 / 7.0 : v * (1.0 + 1.0 / 3.0) + 1.0 / 3.0;
    else
      v = static_cast<T>(v + 7);
  });
  return n;
}

}  // namespace

TEST_CASE("config: the IS-corrected KL choices name the run and read back only into their own type", "[config]") {
  CHECK(ppo_k3_is::name() == "ppo/k3-is/loss/loo_grpo/token-mean");
  CHECK(ppo_k4::name() == "ppo/k4/loss/gdpo/token-mean");
  CHECK(ppo_onp::name() == "ppo/k3-on-policy/loss/maxrl/token-mean");
  ppo_k3_is e;
  CHECK(e.json().find("\"kl_estimator\": \"k3-is\"") != std::string::npos);
  ppo_k3_is back;
  back.read_json(e.json());
  // a k3-is record is not a plain k3 experiment: the structure is compile-time
  rlhf::experiment<rlhf::kl::k3, rlhf::kl_in_loss, rlhf::adv::loo_grpo> plain;
  expect_error([&] { plain.read_json(e.json()); }, rlhf::error_kind::param, "kl_estimator");
}

TEST_CASE("config: round_trip: every option of a PPO experiment survives JSON unchanged", "[config]") {
  ppo_grpo e;
  const int n = perturb(e.options);
  CHECK(n == static_cast<int>(cfg::field_names<tr::rl_options>().size()));
  CHECK(n >= 60);
  const std::string j = e.json();
  const auto back = ppo_grpo::from_json(j);
  CHECK(back == e);
  CHECK(back.json() == j);
  // field by field, where printing could hide a difference
  CHECK(back.options.ppo.clip_low == e.options.ppo.clip_low);
  CHECK(back.options.kl_coef == e.options.kl_coef);
  CHECK(back.options.early_stop_kl == e.options.early_stop_kl);
  CHECK(back.options.ppo.agg.loss_scale_factor == e.options.ppo.agg.loss_scale_factor);
  CHECK(back.options.metrics_path == e.options.metrics_path);
  CHECK(back.options.ref.kind == e.options.ref.kind);
  CHECK(back.options.seed == e.options.seed);
  // the defaults (INFINITY, unset optionals) round-trip too
  const ppo_grpo d;
  CHECK(ppo_grpo::from_json(d.json()) == d);
  CHECK(d.json().find("\"early_stop_kl\": \"Infinity\"") != std::string::npos);
  CHECK(d.json().find("\"ppo.agg.loss_scale_factor\": null") != std::string::npos);
}

TEST_CASE("config: round_trip: a DPO experiment, and the printed text read back as overrides", "[config]") {
  dpo_k3 e;
  perturb(e.options);
  CHECK(dpo_k3::from_json(e.json()) == e);
  // text(): "key = value" lines; the option lines are valid --key=value overrides
  std::vector<std::string> args{"prog"};
  std::istringstream in(e.text());
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find(" = ");
    REQUIRE(eq != std::string::npos);
    const std::string key = line.substr(0, eq);
    if (cfg::is_structure_key(key)) continue;
    args.push_back("--" + key + "=" + line.substr(eq + 3));
  }
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  dpo_k3 f;
  cfg::command_line(static_cast<int>(argv.size()), argv.data()).apply(f);
  CHECK(f == e);
}

TEST_CASE("config: the JSON has the structure and dotted option names", "[config]") {
  ppo_grpo e;
  e.options.ppo.clip_low = 0.1;
  const std::string j = e.json();
  CHECK(
      j.rfind("{\"record\": \"config\", \"algorithm\": \"ppo\", \"kl_estimator\": \"k3\", \"kl_placement\": \"loss\", "
              "\"advantage\": \"grpo\", \"aggregation\": \"seq-mean-token-mean\", \"backend\": \"cpu\", "
              "\"precision\": \"double\", \"steps\": 100",
              0) == 0);
  CHECK(j.find("\"ppo.clip_low\": 0.1,") != std::string::npos);
  CHECK(j.find("\"diag.window\": 10") != std::string::npos);
  CHECK(ppo_grpo::name() == "ppo/k3/loss/grpo/seq-mean-token-mean");
  CHECK(dpo_k3::name() == "dpo/k3");
  CHECK(ppo_unchecked::name() == "ppo/k1/reward/rloo/token-mean/unchecked");
  std::ostringstream os;
  os << e;
  CHECK(os.str().find("kl_estimator = k3\n") != std::string::npos);
  CHECK(os.str().find("ppo.clip_low = 0.1\n") != std::string::npos);
  CHECK(os.str().find("early_stop_kl = inf\n") != std::string::npos);
}

TEST_CASE("config: reading JSON: nested objects, partial files, and errors that change nothing", "[config]") {
  ppo_grpo e;
  e.read_json(R"({"ppo": {"clip_low": 0.15, "agg": {"loss_scale_factor": 512}}, "kl_coef": 1e-3, "seed": 42})");
  CHECK(e.options.ppo.clip_low == 0.15);
  CHECK(e.options.ppo.agg.loss_scale_factor.value() == 512.0);
  CHECK(e.options.kl_coef == 1e-3);
  CHECK(e.options.seed == 42ULL);
  CHECK(e.options.steps == 100);  // untouched
  const ppo_grpo before = e;
  expect_error([&] { e.read_json(R"({"ppo.clip_lo": 0.3})"); }, error_kind::param, "did you mean 'ppo.clip_low'");
  expect_error([&] { e.read_json(R"({"kl_coef": 0.5, "ppo.clip_low": "wide"})"); }, error_kind::param,
               "argument 'ppo.clip_low' has a bad value 'wide': expected a JSON number");
  expect_error([&] { e.read_json(R"({"steps": 1.5})"); }, error_kind::param, "'steps' has a bad value '1.5'");
  expect_error([&] { e.read_json(R"({"ref.kind": "sometimes"})"); }, error_kind::param, "frozen, hard_sync, ema");
  expect_error([&] { e.read_json(R"({"seed": -1})"); }, error_kind::param, "'seed'");
  expect_error([&] { e.read_json(R"({"kl_coef": "NaN"})"); }, error_kind::param, "'kl_coef' has a bad value 'NaN'");
  expect_error([&] { e.read_json(R"({"kl_estimator": "k1"})"); }, error_kind::param,
               "argument 'kl_estimator' is 'k1' in the JSON but 'k3' in this experiment type");
  expect_error([&] { e.read_json(R"({"steps": 3)"); }, error_kind::param, "malformed at offset 11");
  expect_error([&] { e.read_json(R"({"steps": [3]})"); }, error_kind::param, "arrays are not supported");
  CHECK(e == before);  // a failed read changes nothing (the first key of the second case was valid)
  // a sweep line reads back: its "experiment" and "final.*" keys are skipped
  rlhf::sweep_row row{ppo_grpo::name(), before.record(), {}};
  row.final.set("reward", 0.5);
  CHECK(ppo_grpo::from_json(row.json()) == before);
}

TEST_CASE("config: command-line overrides", "[config]") {
  const char* argv[] = {"prog",
                        "--ppo.clip_low=0.1",
                        "--jsonl",
                        "out.jsonl",
                        "--kl_coef",
                        "0.02",
                        "--adaptive_kl=true",
                        "--ppo.agg.loss_scale_factor=none",
                        "--quick"};
  cfg::command_line cl(9, argv, {"--jsonl", "--quick"});
  CHECK(cl.value("--jsonl") == "out.jsonl");
  CHECK(cl.has("--quick"));
  CHECK(cl.value("--quick") == "");
  CHECK_FALSE(cl.has("--steps-scale"));
  ppo_grpo e;
  e.options.ppo.agg.loss_scale_factor = 4.0;
  cl.apply(e);
  CHECK(e.options.ppo.clip_low == 0.1);
  CHECK(e.options.kl_coef == 0.02);
  CHECK(e.options.adaptive_kl);
  CHECK_FALSE(e.options.ppo.agg.loss_scale_factor.has_value());

  const char* bad_key[] = {"prog", "--ppo.clip_hihg=0.3"};
  expect_error([&] { cfg::command_line(2, bad_key).apply(e); }, error_kind::param,
               "'ppo.clip_hihg' is not an option of this experiment (did you mean 'ppo.clip_high'?)");
  const char* bad_val[] = {"prog", "--steps=many"};
  expect_error([&] { cfg::command_line(2, bad_val).apply(e); }, error_kind::param,
               "'steps' has a bad value 'many': expected an integer");
  const char* structural[] = {"prog", "--kl_estimator=k1"};
  expect_error([&] { cfg::command_line(2, structural).apply(e); }, error_kind::param,
               "'kl_estimator' is a compile-time choice");
  const char* positional[] = {"prog", "0.1"};
  expect_error([&] { cfg::command_line(2, positional); }, error_kind::param, "'0.1' is not an option");
  const char* no_value[] = {"prog", "--steps"};
  expect_error([&] { cfg::command_line(2, no_value); }, error_kind::param, "'steps' has no value");
  const ppo_grpo kept = e;
  const char* half_bad[] = {"prog", "--steps=7", "--kl_coef=x"};
  expect_error([&] { cfg::command_line(3, half_bad).apply(e); }, error_kind::param, "kl_coef");
  CHECK(e == kept);  // nothing applied

  // sweeps: lenient apply skips keys another experiment owns; require_known checks them once
  const char* mixed[] = {"prog", "--loss.beta=0.3", "--ppo.clip_low=0.12"};
  cfg::command_line m(3, mixed);
  m.require_known<ppo_grpo, dpo_k3>();
  expect_error([&] { m.require_known<ppo_grpo>(); }, error_kind::param, "'loss.beta' is not an option of any");
  dpo_k3 d;
  m.apply(d, true);
  CHECK(d.options.loss.beta == 0.3);
  expect_error([&] { m.apply(d); }, error_kind::param, "ppo.clip_low");

  // --config FILE first, then the overrides
  {
    std::ofstream f("config_test.json");
    f << R"({"kl_coef": 0.7, "steps": 11})";
  }
  const char* with_file[] = {"prog", "--config", "config_test.json", "--steps=12"};
  ppo_grpo g;
  cfg::command_line(4, with_file).apply(g);
  CHECK(g.options.kl_coef == 0.7);
  CHECK(g.options.steps == 12);
  std::remove("config_test.json");
}

TEST_CASE("config: make_trainer runs an experiment; the metrics file starts with its JSON", "[config][train]") {
  const bandit::problem pb(7);
  ppo_grpo e;
  e.options.steps = 3;
  e.options.prompts_per_step = bandit::K;
  e.options.group_size = 4;
  e.options.progress = false;
  e.options.metrics_path = "config_trainer_test.jsonl";
  bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
  bandit::table_reward rm{pb.reward};
  auto t = rlhf::make_trainer(e, pi, ref, rm, pb.prompts());
  static_assert(
      std::is_same_v<decltype(t),
                     tr::rl_trainer<ppo_grpo, bandit::tabular_policy, bandit::tabular_policy, bandit::table_reward>>);
  t.run();
  CHECK(t.step_count() == 3);
  // the aggregation is the type's
  CHECK(t.options().ppo.agg.mode == rlhf::agg_mode::seq_mean_token_mean);
  CHECK(t.options().value.agg.mode == rlhf::agg_mode::seq_mean_token_mean);
  std::ifstream in("config_trainer_test.jsonl");
  std::string first;
  std::getline(in, first);
  CHECK(first == e.json());
  CHECK(ppo_grpo::from_json(first) == e);
  in.close();
  std::remove("config_trainer_test.jsonl");

  // a run-time aggregation that contradicts the type is refused
  tr::rl_options o = e.options;
  o.ppo.agg.mode = rlhf::agg_mode::token_sum;
  expect_error(
      [&] {
        tr::rl_trainer<ppo_grpo, bandit::tabular_policy, bandit::tabular_policy, bandit::table_reward>(pi, ref, rm,
                                                                                                       pb.prompts(), o);
      },
      error_kind::param, "argument 'ppo.agg.mode' is token-sum but the structure's aggregation is");

  // DPO from its pairs: it logs the sequence log-ratios of the dataset's completions (named for
  // what they are: not a KL, the completions are not the policy's samples)
  dpo_k3 d;
  d.options.steps = 2;
  d.options.batch_size = 8;
  d.options.progress = false;
  bandit::tabular_policy dpi(pb.ref_logits), dref(pb.ref_logits);
  auto dt = rlhf::make_trainer(d, dpi, dref, pb.preferences(64, 1));
  dt.run();
  const auto& r = dt.last();
  CHECK_FALSE(r.has("kl_ref"));
  REQUIRE(r.has("chosen_log_ratio"));
  REQUIRE(r.has("rejected_log_ratio"));
  // TRL's implicit rewards are beta times the same log-ratios, from the same forward
  CHECK(r.number("chosen_reward") == Approx(d.options.loss.beta * r.number("chosen_log_ratio")).epsilon(1e-12));
  CHECK(r.number("rejected_reward") == Approx(d.options.loss.beta * r.number("rejected_log_ratio")).epsilon(1e-12));
  CHECK(r.number("chosen_log_ratio") != 0.0);  // the policy moved after the first step
  CHECK(dt.config().json() == d.json());
}

TEST_CASE("config: sweep runs each experiment type in order", "[config]") {
  std::vector<std::string> seen;
  const auto rows = rlhf::sweep<ppo_default, a2c_k2, dpo_k3>([&](auto& e) {
    seen.push_back(std::remove_cvref_t<decltype(e)>::name());
    e.options.seed = 5;
    tr::record r;
    r.set("x", static_cast<double>(seen.size()));
    return r;
  });
  REQUIRE(rows.size() == 3);
  CHECK(seen == std::vector<std::string>{"ppo/k1/reward/gae/token-mean", "a2c/k2/reward/gae/token-mean", "dpo/k3"});
  CHECK(rows[1].name == "a2c/k2/reward/gae/token-mean");
  CHECK(rows[2].final.number("x") == 3.0);
  CHECK(rows[0].config.number("seed") == 5.0);  // the row keeps the options the run used
  CHECK(rows[2].json().find("\"final.x\": 3}") != std::string::npos);
  // the same over a hana tuple of types
  const auto again = rlhf::sweep(boost::hana::tuple_t<dpo_k3, ppo_grpo>, [](auto&) { return tr::record{}; });
  CHECK(again.size() == 2);
  CHECK(again[1].name == "ppo/k3/loss/grpo/seq-mean-token-mean");
  std::ostringstream table;
  rlhf::print_table(table, rows, {"x"});
  CHECK(table.str() ==
        "experiment                                 x\n"
        "ppo/k1/reward/gae/token-mean         1.00000\n"
        "a2c/k2/reward/gae/token-mean         2.00000\n"
        "dpo/k3                               3.00000\n");
}

TEST_CASE("config: the advantage choices are also the advantage functions", "[config]") {
  // rlhf::adv::gae is a value usable as a template argument and callable as before
  mat r(1, 3, std::vector<double>{0, 0, 1}), v(1, 3, 0.0), m(1, 3, 1.0), a(1, 3), ret(1, 3);
  rlhf::adv::gae(rlhf::cpu, r.cview(), v.cview(), m.cview(), {1.0, 1.0, false},
                 rlhf::adv::outputs<double>{a.view(), ret.view()});
  CHECK(a(0, 0) == 1.0);
  CHECK(ret(0, 2) == 1.0);
  static_assert(decltype(rlhf::adv::gae)::value == rlhf::advantage_estimator::gae);
  static_assert(rlhf::choice::is_choice_v<decltype(rlhf::adv::rloo)>);
  static_assert(!rlhf::choice::is_choice_v<int>);
}

namespace {
/// The properties every RLHF_NAMED_ENUM has by construction.
template <class E>
void check_named_enum() {
  const auto values = rlhf::enum_values<E>();
  REQUIRE(values.size() == enum_size(E{}));
  std::set<std::string> names;
  for (std::size_t i = 0; i < values.size(); ++i) {
    CHECK(static_cast<std::size_t>(values[i]) == i);
    const std::string n = to_string(values[i]);
    CHECK(n != "?");
    CHECK(names.insert(n).second);  // unique
    CHECK(rlhf::parse_enum<E>(n) == values[i]);
  }
  CHECK(std::string(to_string(static_cast<E>(values.size()))) == "?");
  CHECK(!rlhf::parse_enum<E>("no-such-name").has_value());
}
}  // namespace

TEST_CASE("config: named enums: one list gives the enumerators, their names and the parser", "[config]") {
  check_named_enum<rlhf::kl_estimator>();
  check_named_enum<rlhf::agg_mode>();
  check_named_enum<rlhf::algorithm>();
  check_named_enum<rlhf::kl_placement>();
  check_named_enum<rlhf::advantage_estimator>();
  check_named_enum<rlhf::error_kind>();
  check_named_enum<rlhf::ppo::clipfrac_rule>();
  check_named_enum<rlhf::ppo::approx_kl_rule>();
  check_named_enum<rlhf::ppo::value_clip_style>();
  check_named_enum<rlhf::ppo::policy_loss_kind>();
  check_named_enum<rlhf::dpo::loss_type>();
  check_named_enum<rlhf::dpo::score_fn>();
  check_named_enum<tr::ref_update>();
  // hand-written expectations
  CHECK(enum_size(rlhf::kl_estimator{}) == 4);
  CHECK(std::string(to_string(rlhf::agg_mode::seq_mean_token_sum_norm)) == "seq-mean-token-sum-norm");
  CHECK(rlhf::enum_name_list<rlhf::kl_placement>() == "reward, loss");
  CHECK(rlhf::parse_enum<rlhf::dpo::loss_type>("sigmoid_norm") == rlhf::dpo::loss_type::sigmoid_norm);
  CHECK(rlhf::dpo::parse_loss_type("aot_pair") == rlhf::dpo::loss_type::aot_unpaired);  // TRL's old name
  // a bad enum value in the configuration names the key and lists the values
  tr::rl_options o;
  CHECK_THROWS_WITH(cfg::set_field_or_fail(o, "ref.kind", "sometimes"),
                    Catch::Matchers::Contains("ref.kind") && Catch::Matchers::Contains("frozen, hard_sync, ema"));
}

TEST_CASE("config: reflection lists are complete (checked when RLHF_REFLECT is compiled)", "[config]") {
  // the arity the compile-time check compares with, on hand-counted structs
  STATIC_REQUIRE(cfg::aggregate_arity<rlhf::ppo::policy_params>() == 9);
  STATIC_REQUIRE(cfg::aggregate_arity<rlhf::agg_params>() == 6);  // mode is omitted: 5 listed
  STATIC_REQUIRE(std::tuple_size_v<decltype(cfg::fields<rlhf::agg_params>::list())> == 5);
  STATIC_REQUIRE(cfg::aggregate_arity<rlhf::a2c::params>() == 5);
  STATIC_REQUIRE(cfg::aggregate_arity<rlhf::sampling>() == 2);
}

TEST_CASE("config: the JSON reader is strict: depth, duplicates, null, numbers out of range, types", "[config]") {
  ppo_grpo e;
  const ppo_grpo before = e;
  // deep nesting is an error, not a stack overflow
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "{\"a\": ";
  expect_error([&] { e.read_json(deep); }, error_kind::param, "nest deeper than");
  std::string deep_ok;
  for (int i = 0; i < 40; ++i) deep_ok += "{\"a\": ";
  deep_ok += "1" + std::string(40, '}');
  expect_error([&] { e.read_json(deep_ok); }, error_kind::param, "nest deeper than");
  // a key once, also across nested and dotted spellings
  expect_error([&] { e.read_json(R"({"kl_coef": 0.1, "kl_coef": 0.2})"); }, error_kind::param,
               "duplicate key 'kl_coef'");
  expect_error([&] { e.read_json(R"({"ppo.clip_low": 0.1, "ppo": {"clip_low": 0.2}})"); }, error_kind::param,
               "duplicate key 'ppo.clip_low'");
  // null is a value only for an optional option; a string is not a number
  expect_error([&] { e.read_json(R"({"metrics_path": null})"); }, error_kind::param, "'metrics_path' has a bad value");
  expect_error([&] { e.read_json(R"({"kl_coef": null})"); }, error_kind::param, "'kl_coef' has a bad value");
  expect_error([&] { e.read_json(R"({"kl_coef": "0.5"})"); }, error_kind::param, "expected a JSON number");
  expect_error([&] { e.read_json(R"({"metrics_path": 5})"); }, error_kind::param, "expected a JSON string");
  expect_error([&] { e.read_json(R"({"adaptive_kl": 1})"); }, error_kind::param, "JSON boolean");
  // numbers: the JSON grammar, finite
  expect_error([&] { e.read_json(R"({"kl_coef": 1e400})"); }, error_kind::param, "out of the range of a double");
  expect_error([&] { e.read_json(R"({"kl_target": -1e999})"); }, error_kind::param, "out of the range of a double");
  expect_error([&] { e.read_json(R"({"steps": 012})"); }, error_kind::param, "leading zero");
  expect_error([&] { e.read_json(R"({"kl_coef": 1.})"); }, error_kind::param, "digits after '.'");
  expect_error([&] { e.read_json(R"({"kl_coef": +1})"); }, error_kind::param, "expected a value");
  expect_error([&] { e.read_json(R"({"kl_coef": 1e})"); }, error_kind::param, "exponent digits");
  expect_error([&] { e.read_json("{\"metrics_path\": \"a\nb\"}"); }, error_kind::param, "control character");
  CHECK(e == before);
  // what the writer writes reads back: infinity as a string, null for an unset optional
  e.read_json(R"({"early_stop_kl": "Infinity", "ppo.agg.loss_scale_factor": null, "kl_coef": 1e-300})");
  CHECK(std::isinf(e.options.early_stop_kl));
  CHECK(e.options.kl_coef == 1e-300);
}

TEST_CASE("config: every option's range is checked when JSON or the command line is read", "[config]") {
  ppo_grpo e;
  const ppo_grpo before = e;
  expect_error([&] { e.read_json(R"({"progress_every": 0})"); }, error_kind::param, "progress_every");
  expect_error([&] { e.read_json(R"({"sample": {"temperature": 0}})"); }, error_kind::param, "sample.temperature");
  expect_error([&] { e.read_json(R"({"sample": {"temperature": -1}})"); }, error_kind::param, "sample.temperature");
  expect_error([&] { e.read_json(R"({"adaptive_kl": true, "kl_horizon": 1})"); }, error_kind::param, "kl_horizon");
  expect_error([&] { e.read_json(R"({"gamma": 1.5})"); }, error_kind::param, "gamma");
  expect_error([&] { e.read_json(R"({"diag": {"window": 0}})"); }, error_kind::param, "diag.window");
  expect_error([&] { e.read_json(R"({"grpo": {"epsilon": -1}})"); }, error_kind::param, "grpo.epsilon");
  expect_error([&] { e.read_json(R"({"ref": {"alpha": 0}})"); }, error_kind::param, "ref.alpha");
  CHECK(e == before);
  const char* zero[] = {"prog", "--progress_every=0"};
  expect_error([&] { cfg::command_line(2, zero).apply(e); }, error_kind::param, "progress_every");
  const char* huge[] = {"prog", "--kl_coef=1e400"};
  expect_error([&] { cfg::command_line(2, huge).apply(e); }, error_kind::param, "'kl_coef' has a bad value '1e400'");
  CHECK(e == before);
  dpo_k3 d;
  expect_error([&] { d.read_json(R"({"batch_size": 0})"); }, error_kind::param, "batch_size");
  expect_error([&] { d.read_json(R"({"loss": {"beta": -1}})"); }, error_kind::param, "beta");
}

TEST_CASE("trainers: options out of range are refused when the trainer is built", "[config][train]") {
  bandit::tabular_policy pi(std::vector<double>(bandit::K * bandit::M, 0.0)),
      ref(std::vector<double>(bandit::K * bandit::M, 0.0));
  bandit::table_reward rm{std::vector<double>(bandit::K * bandit::M, 0.5)};
  using S = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::loss,
                             tr::advantage_estimator::grpo>;
  std::vector<std::vector<bandit::token_t>> prompts{{0}, {1}};
  auto build = [&](auto edit) {
    tr::rl_options o;
    o.group_size = 2;
    o.progress = false;
    edit(o);
    tr::rl_trainer<S, bandit::tabular_policy, bandit::tabular_policy, bandit::table_reward> t(pi, ref, rm, prompts, o);
  };
  expect_error([&] { build([](tr::rl_options& o) { o.progress_every = 0; }); }, error_kind::param, "progress_every");
  expect_error([&] { build([](tr::rl_options& o) { o.sample.temperature = 0; }); }, error_kind::param,
               "sample.temperature");
  expect_error(
      [&] {
        build([](tr::rl_options& o) {
          o.adaptive_kl = true;
          o.kl_horizon = 1;
        });
      },
      error_kind::param, "kl_horizon");
  expect_error([&] { build([](tr::rl_options& o) { o.kl_coef = INFINITY; }); }, error_kind::param, "kl_coef");
  // the adaptive controller itself: a factor <= 0 or an overflow is refused, the coefficient kept
  rlhf::kl::adaptive_controller c(0.1, 1.0, 1.0);
  expect_error([&] { c.update(0.0, 10.0); }, error_kind::param, "horizon");
  CHECK(c.value() == 0.1);
  rlhf::kl::adaptive_controller big(1e308, 1.0, 1.0);
  expect_error([&] { big.update(100.0, 4.0); }, error_kind::non_finite, "value");
  CHECK(big.value() == 1e308);
  // REINFORCE++ discounts by gamma <= 1
  testing::mat r(1, 3, {0, 0, 1}), m(1, 3, 1.0), a(1, 3), ret(1, 3);
  rlhf::adv::reinforce_pp_params rp;
  rp.gamma = 1.5;
  expect_error(
      [&] {
        rlhf::adv::reinforce_pp(rlhf::cpu, r.cview(), m.cview(), rp, {a.view(), ret.view()});
      },
      error_kind::param, "gamma");
}
