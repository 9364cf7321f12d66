// train/: trainers, checkpoints and resume, reference updates, diagnostics,
// bad input. Models: the bandit example's tabular models.
#include <regex>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "../../examples/tabular_models.hpp"
#include "helpers.hpp"

using namespace testing;
using namespace bandit;
using rlhf::error_kind;
namespace tr = rlhf::train;

namespace {
std::vector<double> init_logits(unsigned seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n(0, 1);
  std::vector<double> v(K * M);
  for (auto& x : v) x = n(g);
  return v;
}
std::vector<double> rewards_table() {
  std::vector<double> r(K * M);
  for (index_t i = 0; i < K * M; ++i) r[i] = static_cast<double>((i * 7) % 11) / 10.0;
  return r;
}
std::vector<std::vector<token_t>> prompts() { return {{0}, {1}, {2}, {3}}; }

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The metrics of a resumed run, with its metrics file name (part of the
/// configuration record) replaced by the straight run's.
std::string as_straight(std::string s) {
  for (std::size_t at; (at = s.find("_resumed.jsonl")) != std::string::npos;) s.replace(at, 14, "_straight.jsonl");
  return s;
}

using ppo_gae = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::reward,
                                 tr::advantage_estimator::gae>;
using ppo_grpo =
    tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::loss, tr::advantage_estimator::grpo>;
using ppo_maxrl = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::reward,
                                   tr::advantage_estimator::maxrl>;

using ppo_loo = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::reward,
                                 tr::advantage_estimator::loo_grpo>;
using ppo_gdpo =
    tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::loss, tr::advantage_estimator::gdpo>;

/// table_reward with two GDPO components: the table's score and a
/// preference for even responses (K = 2 rows, one score per sequence).
struct component_reward : table_reward {
  rlhf::tensor<double, 2> components(const rlhf::batch& b) const {
    const auto s = score(b);
    rlhf::tensor<double, 2> c({2, b.size()});
    for (index_t i = 0; i < b.size(); ++i) {
      c(0, i) = s[static_cast<std::size_t>(i)];
      c(1, i) = b.responses(i, 0) % 2 == 0 ? 1.0 : 0.0;
    }
    return c;
  }
};
static_assert(rlhf::ComponentRewardModel<component_reward>);
static_assert(!rlhf::ComponentRewardModel<table_reward>);

tr::rl_options small_options(const std::string& metrics) {
  tr::rl_options o;
  o.steps = 12;
  o.prompts_per_step = 4;
  o.group_size = 4;
  o.ppo_epochs = 2;
  o.minibatch_size = 8;
  o.entropy_coef = 0.01;
  o.adaptive_kl = true;
  o.kl_target = 0.05;
  o.kl_horizon = 100;
  o.metrics_path = metrics;
  o.progress = false;
  o.seed = 9;
  return o;
}

struct interrupted {};

/// Runs 12 steps straight, or: run with a checkpoint every step, crash
/// (an exception) before step 7, then fresh objects load the checkpoint and
/// finish the run, appending to the same metrics file.
template <class S, bool WithValue, class RM = table_reward>
std::string run_rl(const std::string& tag, bool resume, void (*tweak)(tr::rl_options&) = nullptr) {
  using VF = std::conditional_t<WithValue, tabular_value, rlhf::no_value_function>;
  const std::string metrics = "train_test_" + tag + (resume ? "_resumed" : "_straight") + ".jsonl";
  const std::string ckpt = "train_test_" + tag + ".ckpt";
  auto make_and_run = [&](bool crash, bool load) {
    tabular_policy pi(init_logits(1)), ref(init_logits(1));
    RM rm{{rewards_table()}};
    VF critic;
    auto o = small_options(metrics);
    o.ref = {tr::ref_update::ema, 3, 0.25};
    if (tweak != nullptr) tweak(o);
    o.checkpoint_path = ckpt;
    o.checkpoint_every = 1;
    tr::rl_trainer<S, tabular_policy, tabular_policy, RM, VF> t(pi, ref, rm, prompts(), o,
                                                                WithValue ? &critic : nullptr);
    if (load) t.load(ckpt);
    try {
      t.run([&](long long s) {
        if (crash && s == 6) throw interrupted{};
      });
    } catch (const interrupted&) {
    }
  };
  if (!resume) {
    make_and_run(false, false);
  } else {
    make_and_run(true, false);
    make_and_run(false, true);
  }
  std::remove(ckpt.c_str());
  return as_straight(slurp(metrics));
}
}  // namespace

TEST_CASE("resume: PPO with a critic continues with bit-identical metrics", "[train][resume]") {
  const auto straight = run_rl<ppo_gae, true>("gae", false);
  const auto resumed = run_rl<ppo_gae, true>("gae", true);
  CHECK(std::count(straight.begin(), straight.end(), '\n') == 13);  // config + 12 steps
  CHECK(straight == resumed);
}

TEST_CASE("resume: critic-free PPO (GRPO, KL in the loss) continues bit-identically", "[train][resume]") {
  const auto straight = run_rl<ppo_grpo, false>("grpo", false);
  const auto resumed = run_rl<ppo_grpo, false>("grpo", true);
  CHECK(straight == resumed);
  CHECK(straight.find("\"kl_placement\": \"loss\"") != std::string::npos);
}

TEST_CASE("MaxRL as the advantage choice: the structure runs, records its name and resumes bit-identically",
          "[train][resume]") {
  static_assert(decltype(rlhf::adv::maxrl)::value == rlhf::advantage_estimator::maxrl);
  const auto straight = run_rl<ppo_maxrl, false>("maxrl", false);
  const auto resumed = run_rl<ppo_maxrl, false>("maxrl", true);
  CHECK(std::count(straight.begin(), straight.end(), '\n') == 13);  // config + 12 steps
  CHECK(straight == resumed);
  CHECK(straight.find("\"advantage\": \"maxrl\"") != std::string::npos);
  // group_size 1 has no group baseline: refused when the trainer is built
  tabular_policy pi(init_logits(1)), ref(init_logits(1));
  table_reward rm{rewards_table()};
  auto o = small_options("train_test_maxrl_bad.jsonl");
  o.group_size = 1;
  expect_error(
      [&] { tr::rl_trainer<ppo_maxrl, tabular_policy, tabular_policy, table_reward> t(pi, ref, rm, prompts(), o); },
      rlhf::error_kind::param, "group_size");
}

TEST_CASE("leave-one-out GRPO and GDPO as advantage choices: they run, record their names, resume bit-identically",
          "[train][resume]") {
  static_assert(decltype(rlhf::adv::loo_grpo)::value == rlhf::advantage_estimator::loo_grpo);
  static_assert(decltype(rlhf::adv::gdpo)::value == rlhf::advantage_estimator::gdpo);
  const auto loo = run_rl<ppo_loo, false>("loo", false);
  CHECK(loo == run_rl<ppo_loo, false>("loo", true));
  CHECK(loo.find("\"advantage\": \"loo_grpo\"") != std::string::npos);
  // GDPO over the reward model's two components, and over the token rewards alone
  const auto comp = run_rl<ppo_gdpo, false, component_reward>("gdpo_c", false);
  CHECK(comp == run_rl<ppo_gdpo, false, component_reward>("gdpo_c", true));
  CHECK(comp.find("\"advantage\": \"gdpo\"") != std::string::npos);
  const auto plain = run_rl<ppo_gdpo, false>("gdpo", false);
  CHECK(plain != comp);  // the second component changes the advantages, hence the run
  // without components GDPO is GRPO per group, then whitened over the batch: not GRPO's run either
  CHECK(plain.substr(plain.find('\n')) != run_rl<ppo_grpo, false>("grpo_vs_gdpo", false).substr(plain.find('\n')));
}

namespace {
using ppo_k2_loss =
    tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k2, tr::kl_placement::loss, tr::advantage_estimator::grpo>;
using ppo_k3_on_policy =
    tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::loss, tr::advantage_estimator::grpo,
                     rlhf::agg_mode::token_mean, double, rlhf::kl_correction::on_policy>;
using ppo_k3_is =
    tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::loss, tr::advantage_estimator::grpo,
                     rlhf::agg_mode::token_mean, double, rlhf::kl_correction::ratio>;
using ppo_k4 =
    tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::loss, tr::advantage_estimator::grpo,
                     rlhf::agg_mode::token_mean, double, rlhf::kl_correction::ratio>;
/// The metrics after the configuration line (which names the structure),
/// without the logged per-token KL (the structure's estimator: k2 or k3).
std::string steps_of(const std::string& s) {
  return std::regex_replace(s.substr(s.find('\n') + 1), std::regex("\"kl_ref_token\": [^,]*,"), "");
}
/// A fixed KL coefficient: the adaptive controller reads the estimator's KL.
void fixed_kl(tr::rl_options& o) { o.adaptive_kl = false; }
}  // namespace

TEST_CASE("IS-corrected KL in the loss: k3 on-policy descends as k2, k3 * ratio and k4 differ off-policy, resume",
          "[train][resume][kl]") {
  CHECK(tr::structure_name<ppo_k3_is>() == "ppo/k3-is/loss/grpo/token-mean/double");
  CHECK(tr::structure_name<ppo_k4>() == "ppo/k4/loss/grpo/token-mean/double");
  CHECK(tr::structure_name<ppo_k3_on_policy>() == "ppo/k3-on-policy/loss/grpo/token-mean/double");
  // d/dlogp of exp(logp - sg(logp)) k3 at w = 1 is k3' + k3 = logp - ref, k2's gradient: the policy
  // takes the same steps, so every logged step is the same (the configuration line names the choice)
  const auto k2 = run_rl<ppo_k2_loss, false>("k2_loss", false, fixed_kl);
  const auto onp = run_rl<ppo_k3_on_policy, false>("k3_onp", false, fixed_kl);
  CHECK(steps_of(onp) == steps_of(k2));
  CHECK(onp.find("\"kl_estimator\": \"k3-on-policy\"") != std::string::npos);
  // with two epochs of minibatches the later updates are off-policy (w = pi / pi_old != 1): they differ
  const auto is = run_rl<ppo_k3_is, false>("k3_is", false, fixed_kl);
  const auto k4 = run_rl<ppo_k4, false>("k4", false, fixed_kl);
  CHECK(steps_of(is) != steps_of(k2));
  CHECK(steps_of(k4) != steps_of(is));
  CHECK(is == run_rl<ppo_k3_is, false>("k3_is", true, fixed_kl));
  CHECK(k4 == run_rl<ppo_k4, false>("k4", true, fixed_kl));
}

namespace {
/// The tabular policy behind a sampler whose reported log-probs are off by
/// `shift` on response 0 (a rollout engine's mismatch); counts those tokens.
struct mismatched_policy : tabular_policy {
  using tabular_policy::tabular_policy;
  double shift = 3.0;
  bool report = true;
  mutable std::vector<double> shifted_fraction;  // per generate call
  rlhf::rollout generate(const rlhf::prompt_batch& x, const rlhf::sampling& s, rlhf::rng_t& g) const {
    auto r = tabular_policy::generate(x, s, g);
    double n = 0;
    for (index_t i = 0; i < r.seqs.size(); ++i)
      if (r.seqs.responses(i, 0) == 0) {
        r.logprobs(i, 0) += shift;
        n += 1;
      }
    shifted_fraction.push_back(n / static_cast<double>(r.seqs.size()));
    if (!report) r.logprobs = rlhf::tensor<double, 2>();
    return r;
  }
};
double field(const tr::record& r, const std::string& k) { return r.number(k); }
}  // namespace

TEST_CASE("rollout correction as a trainer option: rejection and IS weights from the sampler's log-probs",
          "[train][rollout]") {
  auto make = [](mismatched_policy& pi, tabular_policy& ref, table_reward& rm, tr::rl_options o) {
    return tr::rl_trainer<ppo_grpo, mismatched_policy, tabular_policy, table_reward>(pi, ref, rm, prompts(), o);
  };
  table_reward rm{rewards_table()};
  // k1 rejection in [0.5, 2]: the shifted tokens (ratio e^-3) leave the loss, the rest stay
  {
    mismatched_policy pi(init_logits(1));
    tabular_policy ref(init_logits(1));
    auto o = small_options("");
    o.rollout_corr.rejection = "token_k1";
    o.rollout_corr.rejection_threshold = "0.5_2.0";
    auto t = make(pi, ref, rm, o);
    for (int k = 0; k < 3; ++k) {
      const auto r = t.step();
      // verl's fraction divides by (valid tokens + 1e-8)
      CHECK(field(r, "rollout_rs_masked_fraction") == Approx(pi.shifted_fraction.back()).epsilon(1e-9));
      CHECK(r.has("rollout_probs_diff_max"));
    }
  }
  // TIS weights capped at 2: e^-3 on the shifted tokens, 1 elsewhere (the trainer's old log-probs
  // are the sampler's true ones); their mean and effective sample size
  {
    mismatched_policy pi(init_logits(1));
    tabular_policy ref(init_logits(1));
    auto o = small_options("");
    o.rollout_corr.weights = tr::rollout_is_mode::token;
    const auto r = make(pi, ref, rm, o).step();
    const double f = pi.shifted_fraction.back(), w = std::exp(-3.0);
    const double mean = f * w + (1 - f);
    CHECK(field(r, "rollout_is_mean") == Approx(mean).epsilon(1e-8));
    const double msq = (f * (w / mean) * (w / mean) + (1 - f) / (mean * mean));
    CHECK(field(r, "rollout_is_eff_sample_size") == Approx(1 / msq).epsilon(1e-6));
  }
  // no mismatch (the recomputed log-probs equal the sampler's to ~1e-16): weights of ~1 and a rejection
  // that keeps everything leave the run as it was
  {
    auto run = [&](bool corr) {
      mismatched_policy pi(init_logits(1));
      pi.shift = 0;
      tabular_policy ref(init_logits(1));
      auto o = small_options("");
      if (corr) {
        o.rollout_corr.weights = tr::rollout_is_mode::sequence;
        o.rollout_corr.rejection = "seq_max_k2";
        o.rollout_corr.rejection_threshold = "0.01";
      }
      auto t = make(pi, ref, rm, o);
      std::vector<double> losses;
      for (int k = 0; k < 4; ++k) losses.push_back(field(t.step(), "loss"));
      return losses;
    };
    const auto a = run(true), b = run(false);
    // control: with the mismatch the same options change the policy's losses
    auto shifted = [&](bool corr) {
      mismatched_policy pi(init_logits(1));
      tabular_policy ref(init_logits(1));
      auto o = small_options("");
      if (corr) {
        o.rollout_corr.rejection = "token_k1";
        o.rollout_corr.rejection_threshold = "0.5_2.0";
      }
      return field(make(pi, ref, rm, o).step(), "loss");
    };
    CHECK(shifted(true) != Approx(shifted(false)).epsilon(1e-6));
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(1e-12));
  }
  // errors: a malformed option names verl's key; a sampler without log-probs; A2C
  {
    mismatched_policy pi(init_logits(1));
    tabular_policy ref(init_logits(1));
    auto o = small_options("");
    o.rollout_corr.rejection = "token_k5";
    o.rollout_corr.rejection_threshold = "0.5";
    expect_error([&] { (void)make(pi, ref, rm, o); }, rlhf::error_kind::param, "rollout_rs");
    o.rollout_corr.rejection.clear();
    o.rollout_corr.weights = tr::rollout_is_mode::token;
    o.rollout_corr.weights_lower = 3.0;  // IcePop lower above the upper bound
    expect_error([&] { (void)make(pi, ref, rm, o); }, rlhf::error_kind::param, "rollout_corr.weights_lower");
    o.rollout_corr.weights_lower = 0.0;
    pi.report = false;
    auto t = make(pi, ref, rm, o);
    expect_error([&] { (void)t.step(); }, rlhf::error_kind::empty, "rollout logprobs");
  }
}

TEST_CASE("resume: DPO continues bit-identically", "[train][resume]") {
  std::vector<tr::preference> data;
  for (int i = 0; i < 50; ++i)
    data.push_back({{static_cast<token_t>(i % K)}, {static_cast<token_t>(i % M)}, {static_cast<token_t>((i + 1) % M)}});
  auto run = [&](const std::string& metrics, bool crash, bool load) {
    tabular_policy pi(init_logits(2)), ref(init_logits(2));
    tr::dpo_options o;
    o.steps = 10;
    o.batch_size = 16;  // 50 pairs: epochs wrap mid-run
    o.metrics_path = metrics;
    o.progress = false;
    o.seed = 5;
    o.ref = {tr::ref_update::hard_sync, 4, 1.0};
    o.checkpoint_path = "dpo_test.ckpt";
    o.checkpoint_every = 1;
    tr::dpo_trainer<tabular_policy, tabular_policy> t(pi, ref, data, o);
    if (load) t.load("dpo_test.ckpt");
    try {
      t.run([&](long long s) {
        if (crash && s == 5) throw interrupted{};
      });
    } catch (const interrupted&) {
    }
  };
  run("dpo_straight.jsonl", false, false);
  run("dpo_resumed.jsonl", true, false);
  run("dpo_resumed.jsonl", false, true);
  CHECK(slurp("dpo_straight.jsonl") == as_straight(slurp("dpo_resumed.jsonl")));
  std::remove("dpo_test.ckpt");
}

TEST_CASE("metrics: the first record is the resolved configuration", "[train]") {
  tabular_policy pi(init_logits(1)), ref(init_logits(1));
  table_reward rm{rewards_table()};
  auto o = small_options("metrics_config.jsonl");
  o.steps = 2;
  tr::rl_trainer<ppo_grpo, tabular_policy, tabular_policy, table_reward> t(pi, ref, rm, prompts(), o);
  t.run();
  std::ifstream in("metrics_config.jsonl");
  std::string first, second;
  std::getline(in, first);
  std::getline(in, second);
  CHECK(first.rfind("{\"record\": \"config\", \"algorithm\": \"ppo\", \"kl_estimator\": \"k1\"", 0) == 0);
  CHECK(first.find("\"group_size\": 4") != std::string::npos);
  CHECK(second.rfind("{\"step\": 1, \"reward\": ", 0) == 0);
  for (const char* k : {"kl_ref", "entropy", "clipfrac", "approx_kl", "reward_hacking", "entropy_collapse",
                        "ratio_blowup", "stagnation", "value_divergence"})
    CHECK(second.find(std::string("\"") + k + "\"") != std::string::npos);
}

TEST_CASE("checkpoints: corrupted or truncated files are rejected, never half-written", "[train][errors]") {
  tabular_policy pi(init_logits(1)), ref(init_logits(1));
  table_reward rm{rewards_table()};
  auto o = small_options("");
  o.steps = 2;
  tr::rl_trainer<ppo_grpo, tabular_policy, tabular_policy, table_reward> t(pi, ref, rm, prompts(), o);
  t.run();
  t.save("ck.ckpt");
  const std::string good = slurp("ck.ckpt");
  CHECK(std::ifstream("ck.ckpt.tmp").good() == false);  // the temporary was renamed
  {                                                     // truncated
    std::ofstream out("ck_trunc.ckpt");
    out << good.substr(0, good.size() / 2);
  }
  expect_error([&] { t.load("ck_trunc.ckpt"); }, error_kind::param, "truncated");
  {  // one byte flipped
    std::string bad = good;
    bad[bad.size() - 3] = bad[bad.size() - 3] == '1' ? '2' : '1';
    std::ofstream out("ck_bad.ckpt");
    out << bad;
  }
  expect_error([&] { t.load("ck_bad.ckpt"); }, error_kind::param, "corrupted");
  expect_error([&] { t.load("no_such_file.ckpt"); }, error_kind::param, "cannot open");
  // a write that cannot happen leaves the existing checkpoint intact
  expect_error([&] { t.save("no_such_dir/ck.ckpt"); }, error_kind::param, "checkpoint_path");
  CHECK(slurp("ck.ckpt") == good);
  // the trainer state is untouched by a failed load: it still trains
  const auto before = t.step_count();
  CHECK_NOTHROW(t.step());
  CHECK(t.step_count() == before + 1);
  for (const char* f : {"ck.ckpt", "ck_trunc.ckpt", "ck_bad.ckpt"}) std::remove(f);
}

namespace {
/// The file of a checkpoint payload: the header (size, checksum) recomputed,
/// so the payload parser sees the corruption, not the checksum.
std::string with_header(const std::string& payload) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(tr::fnv1a64(payload)));
  return "rlhfpp-checkpoint 1 " + std::to_string(payload.size()) + " " + hex + "\n" + payload;
}
}  // namespace

TEST_CASE("checkpoints: any corruption of a valid file is an rlhf::error and changes nothing", "[train][errors]") {
  tabular_policy pi(init_logits(1)), ref(init_logits(1));
  tabular_value vf;
  table_reward rm{rewards_table()};
  auto o = small_options("");
  o.steps = 2;
  using T = tr::rl_trainer<ppo_gae, tabular_policy, tabular_policy, table_reward, tabular_value>;
  T t(pi, ref, rm, prompts(), o, &vf);
  t.run();
  t.save("ck_fuzz.ckpt");
  const std::string good = slurp("ck_fuzz.ckpt");
  const std::string payload = good.substr(good.find('\n') + 1);
  // the trainer that loads: other weights, so a partial load would show
  tabular_policy p2(init_logits(5)), r2(init_logits(6));
  tabular_value v2;
  v2.v.assign(v2.v.size(), 0.25);
  T t2(p2, r2, rm, prompts(), o, &v2);
  auto try_load = [&](const std::string& file_text, bool may_succeed) {
    {
      std::ofstream out("ck_fuzz_bad.ckpt", std::ios::binary);
      out << file_text;
    }
    const auto th = p2.theta, rh = r2.theta, vv = v2.v;
    const auto st = t2.step_count();
    try {
      t2.load("ck_fuzz_bad.ckpt");
      CHECK(may_succeed);
      // a harmless change: restore the state for the next case
      p2.theta = th, r2.theta = rh, v2.v = vv;
    } catch (const rlhf::error& e) {
      INFO(e.what());
      CHECK(e.kind() == error_kind::param);
      CHECK(p2.theta == th);
      CHECK(r2.theta == rh);
      CHECK(v2.v == vv);
      CHECK(t2.step_count() == st);
    }
  };
  // headers: a huge or negative size, a bad version, garbage
  for (const std::string h :
       {"rlhfpp-checkpoint 1 99999999999999999999 0000000000000000\n",
        "rlhfpp-checkpoint 1 18446744073709551615 0000000000000000\n", "rlhfpp-checkpoint 1 -1 0000000000000000\n",
        "rlhfpp-checkpoint 2 3 0\n", "\x7f\x45LF", "rlhfpp-checkpoint", ""})
    try_load(h + payload, false);
  // payload sections with a huge, negative or non-numeric size
  for (const std::string& from : {std::string("field step "), std::string("model policy ")}) {
    const auto at = payload.find(from);
    REQUIRE(at != std::string::npos);
    const auto end = payload.find('\n', at);
    for (const std::string sz : {"99999999999999999999", "18446744073709551615", "-5", "1e3", "", "none"}) {
      std::string p = payload;
      p.replace(at + from.size(), end - at - from.size(), sz);
      try_load(with_header(p), false);
    }
  }
  // every byte position: flipped, and the file cut there (checksums recomputed)
  std::mt19937_64 g(3);
  for (std::size_t i = 0; i < payload.size(); i += 1 + payload.size() / 400) {
    std::string p = payload;
    p[i] = static_cast<char>(g() % 256);
    try_load(with_header(p), true);
    try_load(with_header(payload.substr(0, i)), false);
  }
  // a section of the wrong structure: a critic-free trainer's file into this one, and the reverse
  tabular_policy p3(init_logits(1)), r3(init_logits(1));
  tr::rl_trainer<ppo_grpo, tabular_policy, tabular_policy, table_reward> t3(p3, r3, rm, prompts(), o);
  t3.save("ck_fuzz_grpo.ckpt");
  expect_error([&] { t2.load("ck_fuzz_grpo.ckpt"); }, error_kind::param, "structure");
  expect_error([&] { t3.load("ck_fuzz.ckpt"); }, error_kind::param, "structure");
  // the same structure with an extra model section: refused, not ignored
  {
    std::string p = slurp("ck_fuzz_grpo.ckpt");
    p = p.substr(p.find('\n') + 1) + "model value 4\n1 2\n\n";
    try_load(with_header(p), false);
    std::ofstream("ck_fuzz_bad.ckpt", std::ios::binary) << with_header(p);
    expect_error([&] { t3.load("ck_fuzz_bad.ckpt"); }, error_kind::param, "value");
  }
  for (const char* f : {"ck_fuzz.ckpt", "ck_fuzz_bad.ckpt", "ck_fuzz_grpo.ckpt"}) std::remove(f);
}

namespace {
struct nan_reward {
  std::vector<double> score(const rlhf::batch& b) const {
    std::vector<double> s(static_cast<std::size_t>(b.size()), 0.5);
    s[1] = NAN;
    return s;
  }
};
struct wide_policy {  // log-probs of the wrong shape (and no logits path)
  tabular_policy inner;
  tensor<double, 2> log_probs(const rlhf::batch& b) const { return tensor<double, 2>({b.size(), 2}); }
  rlhf::rollout generate(const rlhf::prompt_batch& x, const rlhf::sampling& s, rlhf::rng_t& g) const {
    return inner.generate(x, s, g);
  }
  void backward(const rlhf::batch& b, rlhf::tensor_view<const double, 2> d) { inner.backward(b, d); }
  void step() { inner.step(); }
};
struct frozen_only {  // a reference that cannot follow the policy
  tabular_policy inner;
  tensor<double, 2> log_probs(const rlhf::batch& b) const { return inner.log_probs(b); }
};
}  // namespace

TEST_CASE("trainers: bad models and bad options stop with a named rlhf::error", "[train][errors]") {
  tabular_policy pi(init_logits(1)), ref(init_logits(1));
  table_reward rm{rewards_table()};
  auto o = small_options("");
  expect_error([&] { tr::rl_trainer<ppo_grpo, tabular_policy, tabular_policy, table_reward> t(pi, ref, rm, {}, o); },
               error_kind::empty, "prompts");
  {
    nan_reward bad;
    tr::rl_trainer<ppo_grpo, tabular_policy, tabular_policy, nan_reward> t(pi, ref, bad, prompts(), o);
    expect_error([&] { t.step(); }, error_kind::non_finite, "reward score");
    CHECK(t.step_count() == 0);
  }
  {
    wide_policy wp{tabular_policy(init_logits(1))};
    expect_error(
        [&] { tr::rl_trainer<ppo_grpo, wide_policy, tabular_policy, table_reward> t(wp, ref, rm, prompts(), o); },
        error_kind::param, "entropy_coef");  // no logits, no entropy: no entropy bonus
    auto o0 = o;
    o0.entropy_coef = 0;
    tr::rl_trainer<ppo_grpo, wide_policy, tabular_policy, table_reward> t(wp, ref, rm, prompts(), o0);
    expect_error([&] { t.step(); }, error_kind::shape, "log_probs");
  }
  auto o1 = o;
  o1.group_size = 1;
  expect_error(
      [&] { tr::rl_trainer<ppo_grpo, tabular_policy, tabular_policy, table_reward> t(pi, ref, rm, prompts(), o1); },
      error_kind::param, "group_size");
  {
    frozen_only fr{tabular_policy(init_logits(1))};
    auto o2 = o;
    o2.ref = {tr::ref_update::hard_sync, 1, 1.0};
    // refused when the trainer is built, not in its first step
    expect_error(
        [&] { tr::rl_trainer<ppo_grpo, tabular_policy, frozen_only, table_reward> t(pi, fr, rm, prompts(), o2); },
        error_kind::param, "blend_from");
    tr::dpo_options d;
    d.ref = o2.ref;
    std::vector<tr::preference> data{{{1}, {2}, {3}}};
    expect_error([&] { tr::dpo_trainer<tabular_policy, frozen_only> t(pi, fr, data, d); }, error_kind::param,
                 "blend_from");
  }
  std::vector<tr::preference> none;
  expect_error([&] { tr::dpo_trainer<tabular_policy, tabular_policy> t(pi, ref, none, {}); }, error_kind::empty,
               "data");
}

TEST_CASE("trainers: a step that fails in a later minibatch gives the models their state back", "[train][errors]") {
  // the critic's values turn NaN in the second minibatch (after the policy
  // and the critic have stepped once); the policy's optimizer throws once in
  // the third minibatch; the reference's EMA update throws once
  struct flaky_value : tabular_value {
    mutable int calls = 0;
    int fault = -1;
    rlhf::tensor<double, 2> values(const rlhf::batch& b) const {
      auto out = tabular_value::values(b);
      if (calls++ == fault) out(0, 0) = NAN;
      return out;
    }
  };
  struct flaky_policy : tabular_policy {
    using tabular_policy::tabular_policy;
    int steps = 0, fault = -1, blend_fault = -1, blends = 0;
    std::vector<double> at_fault;  // the weights when the fault came
    void step() {
      if (steps++ == fault) {
        at_fault = theta;
        throw std::runtime_error("optimizer failed");
      }
      tabular_policy::step();
    }
    void blend_from(const flaky_policy& o, double a) {
      if (blends++ == blend_fault) {
        at_fault = o.theta;
        throw std::runtime_error("blend failed");
      }
      tabular_policy::blend_from(o, a);
    }
  };
  auto o = small_options("");
  o.ref = {tr::ref_update::ema, 1, 0.25};
  using T = tr::rl_trainer<ppo_gae, flaky_policy, flaky_policy, table_reward, flaky_value>;
  table_reward rm{rewards_table()};
  auto same = [](const flaky_policy& a, const flaky_policy& b) {
    return a.theta == b.theta && a.m1 == b.m1 && a.m2 == b.m2 && a.grad == b.grad && a.t == b.t;
  };
  for (int which = 0; which < 3; ++which) {
    INFO("fault " << which);
    flaky_policy pa(init_logits(1)), ra(init_logits(1)), pb(init_logits(1)), rb(init_logits(1));
    flaky_value va, vb;
    T ta(pa, ra, rm, prompts(), o, &va), tb(pb, rb, rm, prompts(), o, &vb);
    // a clean first step for both, then the fault in the second
    CHECK(ta.step().json() == tb.step().json());
    if (which == 0) va.fault = va.calls + 2;  // rollout values, minibatch 1, then minibatch 2
    if (which == 1) pa.fault = pa.steps + 2;
    if (which == 2) ra.blend_fault = ra.blends;
    const auto before = pa.theta;
    try {
      ta.step();
      FAIL("the step did not throw");
    } catch (const std::exception& e) {
      INFO(e.what());
      CHECK(ta.step_count() == 1);
    }
    if (which == 1) CHECK(pa.at_fault != before);  // the policy had stepped before the fault
    if (which == 2) CHECK(ra.at_fault != before);
    CHECK(pa.theta == before);
    CHECK(same(pa, pb));
    CHECK(same(ra, rb));
    CHECK(va.v == vb.v);
    for (int k = 0; k < 2; ++k) CHECK(ta.step().json() == tb.step().json());
    CHECK(same(pa, pb));
    CHECK(va.v == vb.v);
  }
  // rollback = false: the trainer's own state is restored, the models keep what the step did
  auto o2 = o;
  o2.rollback = false;
  flaky_policy pc(init_logits(1)), rc(init_logits(1));
  flaky_value vc;
  T tc(pc, rc, rm, prompts(), o2, &vc);
  vc.fault = 2;
  const auto before = pc.theta;
  CHECK_THROWS_AS(tc.step(), rlhf::error);
  CHECK(tc.step_count() == 0);
  CHECK(pc.theta != before);
}

TEST_CASE("reference updates: frozen, hard sync, EMA", "[train]") {
  tabular_policy pi(std::vector<double>(K * M, 1.0)), ref(std::vector<double>(K * M, 0.0));
  CHECK_FALSE(tr::update_reference(ref, pi, {tr::ref_update::frozen, 1, 1.0}, 1));
  CHECK(ref.theta[0] == 0.0);
  CHECK_FALSE(tr::update_reference(ref, pi, {tr::ref_update::ema, 2, 0.25}, 1));  // not a multiple of every
  CHECK(tr::update_reference(ref, pi, {tr::ref_update::ema, 2, 0.25}, 2));
  CHECK(ref.theta[0] == Approx(0.25));
  CHECK(tr::update_reference(ref, pi, {tr::ref_update::ema, 2, 0.25}, 4));
  CHECK(ref.theta[0] == Approx(0.25 + 0.25 * 0.75));
  CHECK(tr::update_reference(ref, pi, {tr::ref_update::hard_sync, 5, 1.0}, 5));
  CHECK(ref.theta == pi.theta);
}

TEST_CASE("diagnostics: each failure mode raises its flag and one warning", "[train]") {
  std::ostringstream warnings;
  tr::diagnostic_params p;
  p.window = 3;
  tr::diagnostics d(p, &warnings);
  auto rec = [](double reward, double kl, double h, double clip, double adv_std, double vf) {
    tr::record r;
    r.set("reward", reward).set("kl_ref", kl).set("entropy", h).set("clipfrac", clip).set("adv_std", adv_std);
    r.set("vf_loss", vf);
    return r;
  };
  // healthy start
  for (int s = 1; s <= 5; ++s) {
    auto r = rec(0.1 * s, 1.0, 2.0, 0.1, 1.0, 1.0);
    d.observe(s, r);
    CHECK_FALSE(std::get<bool>(r.items().back().second));
  }
  CHECK(warnings.str().empty());
  // reward up, KL past the alarm and doubled over the window: reward hacking
  tr::record hack;
  for (int s = 6; s <= 9; ++s) {
    hack = rec(1.0 + s, 3.0 * (s - 5), 2.0, 0.1, 1.0, 1.0);
    d.observe(s, hack);
  }
  CHECK(hack.number("reward_hacking") == 1.0);
  CHECK(warnings.str().find("gaming the reward model") != std::string::npos);
  auto collapse = rec(1, 1, 0.01, 0.9, 0.0, 1e6);
  d.observe(10, collapse);
  CHECK(collapse.number("entropy_collapse") == 1.0);
  CHECK(collapse.number("ratio_blowup") == 1.0);
  CHECK(collapse.number("stagnation") == 1.0);
  CHECK(collapse.number("value_divergence") == 1.0);
  for (const char* s : {"entropy collapsed", "importance ratios blew up", "stagnates", "value loss diverges"})
    CHECK(warnings.str().find(s) != std::string::npos);
  // a warning is printed once per run, not every step
  const auto n = warnings.str().size();
  auto again = rec(1, 1, 0.01, 0.9, 0.0, 1e6);
  d.observe(11, again);
  CHECK(warnings.str().size() == n);
}

namespace {
/// A linear reward model over one-token responses: r = w[x, y] (a table, as
/// the bandit's), trained by plain SGD; Checkpointable.
struct linear_rm {
  std::vector<double> w = std::vector<double>(static_cast<std::size_t>(K * M), 0.0), g = w;
  double lr = 0.5;
  std::vector<double> score(const rlhf::batch& b) const {
    std::vector<double> s;
    for (index_t i = 0; i < b.size(); ++i) s.push_back(w[static_cast<std::size_t>(at(b, i))]);
    return s;
  }
  void backward(const rlhf::batch& b, rlhf::tensor_view<const double, 1> d) {
    for (index_t i = 0; i < b.size(); ++i) g[static_cast<std::size_t>(at(b, i))] += d(i);
  }
  void step() {
    for (std::size_t k = 0; k < w.size(); ++k) {
      w[k] -= lr * g[k];
      g[k] = 0;
    }
  }
  void save(std::ostream& os) const {
    os.precision(17);
    for (double x : w) os << x << ' ';
  }
  void load(std::istream& is) {
    auto v = w;
    for (double& x : v) is >> x;
    if (!is) throw std::runtime_error("linear_rm: bad bytes");
    w = v;
  }
  static index_t at(const rlhf::batch& b, index_t i) { return b.prompts.tokens(i, 0) * M + b.responses(i, 0); }
};
static_assert(rlhf::TrainableRewardModel<linear_rm>);
static_assert(!rlhf::TrainableRewardModel<table_reward>);

std::vector<tr::preference> rm_pairs() {
  std::vector<tr::preference> data;
  // the larger response is preferred (a consistent, learnable order)
  for (int i = 0; i < 40; ++i) {
    const index_t a = i % M, b = (i + 1 + i / 7) % M;
    if (a == b) continue;
    data.push_back({{static_cast<token_t>(i % K)},
                    {static_cast<token_t>(std::max(a, b))},
                    {static_cast<token_t>(std::min(a, b))}});
  }
  return data;
}
}  // namespace

TEST_CASE("reward trainer: one step by hand (Bradley-Terry, margin, centering), learning, resume, errors",
          "[train][rm]") {
  // one step of one pair from w = 0: r_c = r_r = 0, d = -margin; loss = softplus(margin) + 0
  // (centering), d loss / d r_c = -sigmoid(margin) = -d loss / d r_r; SGD moves w by -lr * grad
  {
    linear_rm m;
    tr::rm_options o;
    o.steps = 1;
    o.batch_size = 1;
    o.progress = false;
    o.loss = rlhf::rm::pairwise_params::trl(0.01);
    const std::vector<tr::preference> one{{{1}, {2}, {3}}};
    tr::reward_trainer<linear_rm> t(m, one, o, {0.5});
    const auto r = t.step();
    CHECK(r.number("loss") == Approx(std::log1p(std::exp(0.5))).epsilon(1e-14));
    CHECK(r.number("accuracy") == 0.0);  // a tie is not correct
    const double s = 1 / (1 + std::exp(-0.5));
    CHECK(m.w[1 * M + 2] == Approx(0.5 * s).epsilon(1e-14));
    CHECK(m.w[1 * M + 3] == Approx(-0.5 * s).epsilon(1e-14));
    CHECK(r.number("grad_norm") == Approx(std::sqrt(2.0) * s).epsilon(1e-14));
  }
  // learning: the pairs' preference is learned (accuracy on the data 1, loss down)
  auto run = [](const std::string& metrics, bool crash, bool load, linear_rm& m) {
    tr::rm_options o;
    o.steps = 150;
    o.batch_size = 8;
    o.progress = false;
    o.seed = 3;
    o.metrics_path = metrics;
    o.checkpoint_path = "train_test_rm.ckpt";
    o.checkpoint_every = 1;
    tr::reward_trainer<linear_rm> t(m, rm_pairs(), o);
    if (load) t.load(o.checkpoint_path);
    try {
      t.run([&](long long s) {
        if (crash && s == 11) throw interrupted{};
      });
    } catch (const interrupted&) {
    }
    return t.last();
  };
  linear_rm a;
  const auto last = run("train_test_rm_straight.jsonl", false, false, a);
  CHECK(last.number("loss") < 0.3);  // from log 2 at w = 0
  CHECK(last.number("accuracy") == 1.0);
  const auto data = rm_pairs();
  std::vector<index_t> all;
  for (index_t i = 0; i < static_cast<index_t>(data.size()); ++i) all.push_back(i);
  const auto sc = tr::reward_trainer<linear_rm>::scores(a, data, all, true);
  const auto sr = tr::reward_trainer<linear_rm>::scores(a, data, all, false);
  for (std::size_t i = 0; i < sc.size(); ++i) CHECK(sc[i] > sr[i]);
  // resume: crash at step 11, a fresh model loads the checkpoint: bit-identical metrics and weights
  linear_rm b1, b2;
  run("train_test_rm_resumed.jsonl", true, false, b1);
  run("train_test_rm_resumed.jsonl", false, true, b2);
  CHECK(slurp("train_test_rm_resumed.jsonl") == slurp("train_test_rm_straight.jsonl"));
  CHECK(b2.w == a.w);
  std::remove("train_test_rm.ckpt");
  // errors
  linear_rm m;
  tr::rm_options o;
  expect_error([&] { tr::reward_trainer<linear_rm> t(m, {}, o); }, error_kind::empty, "data");
  expect_error([&] { tr::reward_trainer<linear_rm> t(m, rm_pairs(), o, {1.0}); }, error_kind::param, "margins");
  o.batch_size = 0;
  expect_error([&] { tr::reward_trainer<linear_rm> t(m, rm_pairs(), o); }, error_kind::param, "batch_size");
}

namespace {
/// The tabular student, recording the logits' gradient the trainer hands it.
struct recording_student : tabular_policy {
  using tabular_policy::tabular_policy;
  std::vector<rlhf::tensor<double, 2>> dz;
  void backward_logits(const rlhf::batch& b, rlhf::tensor_view<const double, 2> d) {
    rlhf::tensor<double, 2> c({d.extent(0), d.extent(1)});
    for (index_t i = 0; i < d.extent(0); ++i)
      for (index_t k = 0; k < d.extent(1); ++k) c(i, k) = d(i, k);
    dz.push_back(c);
    tabular_policy::backward_logits(b, d);
  }
};
/// KL(p || q) of prompt x's response distributions.
double kl_rows(const tabular_policy& p, const tabular_policy& q, index_t x) {
  const auto a = p.probs(x), b = q.probs(x);
  double s = 0;
  for (index_t k = 0; k < M; ++k) s += a[k] * std::log(a[k] / b[k]);
  return s;
}
}  // namespace

TEST_CASE("distillation trainer: the gradient by hand (forward KL), the student reaches the teacher, resume, errors",
          "[train][distill]") {
  const std::vector<std::vector<token_t>> ps{{0}, {1}, {2}, {3}};
  tr::distill_options o;
  o.steps = 300;
  o.prompts_per_step = 4;
  o.group_size = 4;
  o.progress = false;
  o.seed = 5;
  o.jsd.beta = 0.0;  // forward KL(teacher || student): d/dz = (p_s - p_t) / tokens
  // the first step's gradient: every row of the one-token responses, by hand
  {
    recording_student s(init_logits(1));
    tabular_policy teacher(init_logits(7));
    auto o1 = o;
    o1.steps = 1;
    tr::distill_trainer<recording_student, tabular_policy> t(s, teacher, ps, o1);
    recording_student before = s;
    t.step();
    REQUIRE(s.dz.size() == 1);
    const auto& d = s.dz[0];
    REQUIRE(d.extent(0) == 16);
    REQUIRE(d.extent(1) == M);
    for (index_t i = 0; i < 16; ++i) {
      const index_t x = i / 4;
      const auto a = before.probs(x), b = teacher.probs(x);
      for (index_t k = 0; k < M; ++k) CHECK(d(i, k) == Approx((a[k] - b[k]) / 16.0).margin(1e-15));
    }
  }
  // training: KL(teacher || student) falls to ~0 on every prompt
  tabular_policy student(init_logits(1)), teacher(init_logits(7));
  double kl0 = 0;
  for (index_t x = 0; x < K; ++x) kl0 += kl_rows(teacher, student, x);
  tr::distill_trainer<tabular_policy, tabular_policy> t(student, teacher, ps, o);
  t.run();
  double kl1 = 0;
  for (index_t x = 0; x < K; ++x) kl1 += kl_rows(teacher, student, x);
  CHECK(kl0 > 0.5);
  CHECK(kl1 < 0.01 * kl0);
  CHECK(t.last().has("kl_teacher_token"));
  // resume bit-identically (crash at step 40, reload, finish)
  auto run = [&](const std::string& metrics, bool crash, bool load, tabular_policy& s) {
    tabular_policy te(init_logits(7));
    auto o2 = o;
    o2.steps = 60;
    o2.metrics_path = metrics;
    o2.checkpoint_path = "train_test_distill.ckpt";
    o2.checkpoint_every = 1;
    tr::distill_trainer<tabular_policy, tabular_policy> tt(s, te, ps, o2);
    if (load) tt.load(o2.checkpoint_path);
    try {
      tt.run([&](long long k) {
        if (crash && k == 40) throw interrupted{};
      });
    } catch (const interrupted&) {
    }
  };
  tabular_policy a(init_logits(1)), b1(init_logits(1)), b2(init_logits(1));
  run("train_test_distill_straight.jsonl", false, false, a);
  run("train_test_distill_resumed.jsonl", true, false, b1);
  run("train_test_distill_resumed.jsonl", false, true, b2);
  CHECK(slurp("train_test_distill_resumed.jsonl") == slurp("train_test_distill_straight.jsonl"));
  CHECK(b2.theta == a.theta);
  std::remove("train_test_distill.ckpt");
  // errors
  auto bad = o;
  bad.jsd.beta = 1.5;
  expect_error([&] { tr::distill_trainer<tabular_policy, tabular_policy> x(student, teacher, ps, bad); },
               error_kind::param, "beta");
  bad = o;
  bad.jsd.reduction = rlhf::distill::jsd_reduction::none;
  expect_error([&] { tr::distill_trainer<tabular_policy, tabular_policy> x(student, teacher, ps, bad); },
               error_kind::param, "jsd.reduction");
  expect_error([&] { tr::distill_trainer<tabular_policy, tabular_policy> x(student, teacher, {}, o); },
               error_kind::empty, "prompts");
}
