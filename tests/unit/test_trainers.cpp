// The trainers over any engine: one test body instantiated over
// {float, double} x {Policy (log-probs, handle form), LogitsPolicy
// (stateless), HiddenStatePolicy (handle form, fused linear path)}; the three
// paths agree; temperature; the call order and the handles; precision and
// token types; views of Eigen and xtensor; checkpoints of another structure.
#include <Eigen/Core>
#include <cstdio>
#include <fstream>
#include <rlhf/adapt/eigen.hpp>
#include <rlhf/adapt/xtensor.hpp>
#include <rlhf/ops/fused_linear.hpp>
#include <sstream>
#include <xtensor/xtensor.hpp>

#include "helpers.hpp"
#include "linear_lm.hpp"

using namespace testing;
using rlhf::error_kind;
using rlhf::index_t;
namespace tr = rlhf::train;
using lin::kind;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
std::string replace_all(std::string s, const std::string& a, const std::string& b) {
  for (std::size_t at; (at = s.find(a)) != std::string::npos;) s.replace(at, a.size(), b);
  return s;
}
std::vector<std::vector<std::int32_t>> prompts32() { return {{1}, {2, 4}, {5}, {3, 1, 2}}; }
template <class Tok>
std::vector<std::vector<Tok>> prompts_of() {
  std::vector<std::vector<Tok>> p;
  for (const auto& x : prompts32()) p.emplace_back(x.begin(), x.end());
  return p;
}

template <class F>
using rl_s = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::loss,
                              tr::advantage_estimator::grpo, rlhf::agg_mode::seq_mean_token_mean, F>;

tr::rl_options rl_opts(const std::string& metrics, bool entropy) {
  tr::rl_options o;
  o.steps = 6;
  o.prompts_per_step = 4;
  o.group_size = 4;
  o.ppo_epochs = 2;
  o.minibatch_size = 8;
  o.kl_coef = 0.05;
  o.entropy_coef = entropy ? 0.01 : 0.0;
  o.sample.temperature = 0.8;
  o.sample.max_new_tokens = 4;
  o.metrics_path = metrics;
  o.progress = false;
  o.seed = 3;
  return o;
}

struct crash {};

/// Runs `t` to its end, or (crash) throws out of it before step 3.
template <class T>
void run_or_crash(T& t, bool do_crash) {
  try {
    t.run([&](long long s) {
      if (do_crash && s == 3) throw crash{};
    });
  } catch (const crash&) {
  }
}

/// once(crash, load) straight, or crashed and then resumed in fresh objects;
/// the metrics file, with the resumed run's file name put back.
template <class F>
std::string straight_or_resumed(bool resume, const std::string& metrics, const std::string& ckpt, F&& once) {
  if (resume) {
    once(true, false);
    once(false, true);
  } else {
    once(false, false);
  }
  std::remove(ckpt.c_str());
  return replace_all(slurp(metrics), "_resumed.jsonl", "_straight.jsonl");
}

/// Straight run, or crash before step 3 and resume in fresh objects; the metrics file.
template <class F, kind K>
std::string run_rl(const std::string& tag, bool resume, lin::model<F, K>* out = nullptr) {
  using M = lin::model<F, K>;
  const std::string metrics = "trainers_" + tag + (resume ? "_resumed" : "_straight") + ".jsonl";
  const std::string ckpt = "trainers_" + tag + ".ckpt";
  auto once = [&](bool do_crash, bool load) {
    M pi(1), ref(1);
    lin::reward rm;
    auto o = rl_opts(metrics, K != kind::log_probs);
    o.checkpoint_path = ckpt;
    o.checkpoint_every = 1;
    o.ref = {tr::ref_update::ema, 2, 0.5};
    tr::rl_trainer<rl_s<F>, M, M, lin::reward> t(pi, ref, rm, prompts32(), o);
    if (load) t.load(ckpt);
    run_or_crash(t, do_crash);
    // the model's type is the trainer's: nothing converted at the boundary
    CHECK(t.profile().boundary_bytes == 0);
    if (out && !do_crash) *out = pi;
  };
  return straight_or_resumed(resume, metrics, ckpt, once);
}

template <class F, kind K>
std::string run_dpo(const std::string& tag, bool resume) {
  using M = lin::model<F, K>;
  std::vector<tr::preference> data;
  for (int i = 0; i < 30; ++i)
    data.push_back({{static_cast<std::int32_t>(1 + i % 5)},
                    {static_cast<std::int32_t>(3), static_cast<std::int32_t>(i % 2 ? 3 : 0)},
                    {static_cast<std::int32_t>(1 + i % 4), 0}});
  const std::string metrics = "trainers_dpo_" + tag + (resume ? "_resumed" : "_straight") + ".jsonl";
  const std::string ckpt = "trainers_dpo_" + tag + ".ckpt";
  auto once = [&](bool do_crash, bool load) {
    M pi(2), ref(2);
    tr::dpo_options o;
    o.steps = 6;
    o.batch_size = 8;
    o.metrics_path = metrics;
    o.progress = false;
    o.seed = 4;
    o.checkpoint_path = ckpt;
    o.checkpoint_every = 1;
    tr::dpo_trainer<M, M, tr::dpo_structure<rlhf::kl_estimator::k1, F>> t(pi, ref, data, o);
    if (load) t.load(ckpt);
    run_or_crash(t, do_crash);
    CHECK(t.profile().boundary_bytes == 0);
  };
  return straight_or_resumed(resume, metrics, ckpt, once);
}

template <class F, kind K>
struct cfg {
  using real = F;
  static constexpr kind k = K;
};

/// The numbers of the step records (the config line skipped).
std::vector<std::vector<double>> numbers(const std::string& jsonl) {
  std::vector<std::vector<double>> out;
  std::istringstream in(jsonl);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<double> v;
    for (std::size_t at = 0; (at = line.find(": ", at)) != std::string::npos;) {
      at += 2;
      char* end = nullptr;
      const double x = std::strtod(line.c_str() + at, &end);
      if (end != line.c_str() + at) v.push_back(x);
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("trainers: every precision and model path trains and resumes bit-identically", "[train][resume]",
                   (cfg<float, kind::log_probs>), (cfg<float, kind::logits>), (cfg<float, kind::hidden>),
                   (cfg<double, kind::log_probs>), (cfg<double, kind::logits>), (cfg<double, kind::hidden>)) {
  using F = typename TestType::real;
  constexpr kind K = TestType::k;
  using M = lin::model<F, K>;
  static_assert(rlhf::Policy<M>);
  static_assert(rlhf::LogitsPolicy<M> == (K == kind::logits));
  static_assert(rlhf::HiddenStatePolicy<M> == (K == kind::hidden));
  static_assert(rlhf::HasForward<M> == (K != kind::logits));
  const std::string tag = std::string(sizeof(F) == 4 ? "f" : "d") + std::to_string(static_cast<int>(K));
  M trained(1);
  const std::string straight = run_rl<F, K>(tag, false, &trained);
  const std::string resumed = run_rl<F, K>(tag, true);
  CHECK(std::count(straight.begin(), straight.end(), '\n') == 7);  // config + 6 steps
  CHECK(straight == resumed);
  CHECK(straight.find(std::string("\"precision\": \"") + (sizeof(F) == 4 ? "float" : "double") + "\"") !=
        std::string::npos);
  // every step: 2 epochs x 2 minibatches, each one backward and one optimizer step
  CHECK(trained.steps == 6 * 4);
  CHECK(trained.backwards == 6 * 4);
  if constexpr (K != kind::logits) CHECK(trained.forwards == 6 * 4);  // one handle per backward
  for (const auto& rec : numbers(straight))
    for (double x : rec) CHECK(std::isfinite(x));
  // the entropy: exact on the logits / hidden paths, estimated from the samples on the log-prob path
  if (K == kind::log_probs)
    CHECK(straight.find("\"entropy\":") == std::string::npos);
  else
    CHECK(straight.find("\"entropy\":") != std::string::npos);
  CHECK(straight.find("\"entropy_sampled\":") != std::string::npos);

  const std::string dpo_straight = run_dpo<F, K>(tag, false), dpo_resumed = run_dpo<F, K>(tag, true);
  CHECK(std::count(dpo_straight.begin(), dpo_straight.end(), '\n') == 7);
  CHECK(dpo_straight == dpo_resumed);
}

TEST_CASE("trainers: the hidden-state, logits and log-prob paths give the same losses and gradients (float, 1e-5)",
          "[train]") {
  lin::model<float, kind::logits> a(1);
  lin::model<float, kind::hidden> h(1);
  lin::model<float, kind::log_probs> l(1);
  lin::model<float, kind::logits> ra(1);
  lin::model<float, kind::hidden> rh(1);
  lin::model<float, kind::log_probs> rl(1);
  lin::reward rm;
  auto o = rl_opts("", true);
  o.steps = 1;
  auto run = [&](auto& pi, auto& ref) {
    using M = std::remove_reference_t<decltype(pi)>;
    auto oo = o;
    if constexpr (std::is_same_v<M, lin::model<float, kind::log_probs>>) oo.entropy_coef = 0;
    tr::rl_trainer<rl_s<float>, M, M, lin::reward> t(pi, ref, rm, prompts32(), oo);
    return t.step();
  };
  const auto rec_a = run(a, ra);
  const auto rec_h = run(h, rh);
  for (const char* k : {"loss", "clipfrac", "approx_kl", "kl_ref", "entropy", "grad_norm", "adv_std"})
    CHECK(rec_h.number(k) == Approx(rec_a.number(k)).epsilon(1e-5).margin(1e-7));
  REQUIRE(a.grad_log.size() == h.grad_log.size());
  double scale = 0;
  for (const auto& g : a.grad_log)
    for (float x : g) scale = std::fmax(scale, std::fabs(x));
  REQUIRE(scale > 0);
  for (std::size_t s = 0; s < a.grad_log.size(); ++s)
    for (std::size_t i = 0; i < a.grad_log[s].size(); ++i)
      CHECK(std::fabs(h.grad_log[s][i] - a.grad_log[s][i]) <= 1e-5 * scale);
  // without the entropy bonus the log-prob path has the same gradient too
  o.entropy_coef = 0;
  lin::model<float, kind::logits> a0(1), ra0(1);
  const auto rec_a0 = run(a0, ra0);
  const auto rec_l = run(l, rl);
  CHECK(rec_l.number("loss") == Approx(rec_a0.number("loss")).epsilon(1e-5));
  for (std::size_t s = 0; s < a0.grad_log.size(); ++s)
    for (std::size_t i = 0; i < a0.grad_log[s].size(); ++i)
      CHECK(std::fabs(l.grad_log[s][i] - a0.grad_log[s][i]) <= 1e-5 * scale);
}

TEST_CASE("trainers: log-probs, entropy and KL are at the sampling temperature", "[train]") {
  for (double tau : {0.7, 1.3}) {
    lin::model<double, kind::logits> pi(1), ref(1);
    lin::reward rm;
    auto o = rl_opts("", true);
    o.sample.temperature = tau;
    o.ppo_epochs = 1;
    o.minibatch_size = 0;  // one minibatch: the first of the first epoch
    tr::rl_trainer<rl_s<double>, lin::model<double, kind::logits>, lin::model<double, kind::logits>, lin::reward> t(
        pi, ref, rm, prompts32(), o);
    const auto r = t.step();
    // the trainer's log-probs are the sampler's
    CHECK(r.number("rollout_probs_diff_max") < 1e-12);
    // the first minibatch is the policy that sampled: ratio exactly 1
    CHECK(r.number("approx_kl") == 0.0);
    CHECK(r.number("clipfrac") == 0.0);
    // the reference equals the policy: no KL
    CHECK(r.number("kl_ref") == 0.0);
  }
  // a model whose sampler ignored the temperature shows the mismatch
  struct cold : lin::model<double, kind::logits> {
    using base = lin::model<double, kind::logits>;
    using base::base;
    rlhf::rollout generate(const rlhf::prompt_batch& x, const rlhf::sampling& s, rlhf::rng_t& g) const {
      rlhf::sampling s1 = s;
      s1.temperature = 1.0;
      return base::generate(x, s1, g);
    }
  };
  cold pi(1), ref(1);
  lin::reward rm;
  auto o = rl_opts("", true);
  o.sample.temperature = 0.5;
  tr::rl_trainer<rl_s<double>, cold, cold, lin::reward> t(pi, ref, rm, prompts32(), o);
  CHECK(t.step().number("rollout_probs_diff_max") > 1e-3);
}

namespace {
/// Logs every call; backward names the forward whose handle it received.
struct recording {
  using base = lin::model<double, kind::log_probs>;
  base m{1};
  std::vector<std::string>* log;
  struct handle {
    base::logp_handle f;
    int id;
    const rlhf::tensor<double, 2>& log_probs() const { return f.lp; }
  };
  int next = 0;
  handle forward(const rlhf::batch& b) {
    log->push_back("forward " + std::to_string(next));
    return {m.forward(b), next++};
  }
  rlhf::tensor<double, 2> log_probs(const rlhf::batch& b) const {
    log->push_back("log_probs");
    return m.log_probs(b);
  }
  void backward(handle& h, rlhf::tensor_view<const double, 2> d) {
    log->push_back("backward " + std::to_string(h.id));
    m.backward(h.f, d);
  }
  rlhf::rollout generate(const rlhf::prompt_batch& x, const rlhf::sampling& s, rlhf::rng_t& g) const {
    log->push_back("generate");
    return m.generate(x, s, g);
  }
  void step() {
    log->push_back("step");
    m.step();
  }
};
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}
}  // namespace

TEST_CASE("trainers: the call order, and each backward gets its forward's handle", "[train]") {
  std::vector<std::string> log;
  recording pi{recording::base(1), &log};
  lin::model<double, kind::log_probs> ref(1);
  lin::reward rm;
  auto o = rl_opts("", false);
  o.prompts_per_step = 2;  // 8 responses, minibatches of 4
  o.minibatch_size = 4;
  tr::rl_trainer<rl_s<double>, recording, lin::model<double, kind::log_probs>, lin::reward> t(pi, ref, rm, prompts32(),
                                                                                              o);
  t.step();
  CHECK(join(log) ==
        "generate, log_probs, forward 0, backward 0, step, forward 1, backward 1, step, "
        "forward 2, backward 2, step, forward 3, backward 3, step");
  log.clear();
  std::vector<tr::preference> data{{{1}, {3, 0}, {2, 0}}, {{2}, {3, 3, 0}, {1, 0}}};
  tr::dpo_options d;
  d.steps = 1;
  d.batch_size = 2;
  d.progress = false;
  tr::dpo_trainer<recording, lin::model<double, kind::log_probs>> dt(pi, ref, data, d);
  dt.step();
  CHECK(join(log) == "forward 4, forward 5, backward 4, backward 5, step");
}

TEST_CASE("trainers: a float model under a double trainer, int64 tokens", "[train]") {
  // float model, double working precision: converted at the boundary (and counted)
  lin::model<float, kind::logits> pf(1), rf(1);
  lin::model<double, kind::logits> pd(1), rd(1);
  lin::reward rm;
  auto o = rl_opts("", true);
  o.steps = 1;
  tr::rl_trainer<rl_s<double>, lin::model<float, kind::logits>, lin::model<float, kind::logits>, lin::reward> tf(
      pf, rf, rm, prompts32(), o);
  tr::rl_trainer<rl_s<double>, lin::model<double, kind::logits>, lin::model<double, kind::logits>, lin::reward> td(
      pd, rd, rm, prompts32(), o);
  const auto a = tf.step(), b = td.step();
  CHECK(tf.profile().boundary_bytes > 0);
  CHECK(td.profile().boundary_bytes == 0);
  CHECK(a.number("loss") == Approx(b.number("loss")).epsilon(1e-4));
  // int64 token ids (torch's) end to end: prompts, batches, labels of the logits ops
  using M64 = lin::model<double, kind::hidden, std::int64_t>;
  static_assert(std::is_same_v<rlhf::batch_for<M64>, rlhf::basic_batch<std::int64_t>>);
  M64 p64(1), r64(1);
  tr::rl_trainer<rl_s<double>, M64, M64, lin::reward> t64(p64, r64, rm, prompts_of<std::int64_t>(), o);
  lin::model<double, kind::hidden> p32(1), r32(1);
  tr::rl_trainer<rl_s<double>, lin::model<double, kind::hidden>, lin::model<double, kind::hidden>, lin::reward> t32(
      p32, r32, rm, prompts32(), o);
  CHECK(t64.step().json() == t32.step().json());
}

TEST_CASE("viewable: Eigen, xtensor and raw views without a copy", "[train][core]") {
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(3, 5);
  Eigen::MatrixXd cm(3, 5);
  xt::xtensor<double, 2> x = xt::zeros<double>({3, 5});
  static_assert(rlhf::viewable<decltype(m), 2> && rlhf::viewable<decltype(cm), 2> && rlhf::viewable<decltype(x), 2>);
  static_assert(!rlhf::viewable<decltype(m), 1> && !rlhf::viewable<int, 2>);
  CHECK(static_cast<const void*>(rlhf::as_view(m).data()) == m.data());
  CHECK(rlhf::as_view(cm).data() == cm.data());
  CHECK(rlhf::as_view(cm).stride(0) == 1);  // column-major: a strided view
  CHECK(rlhf::as_view(x).data() == x.data());
  const auto& cx = x;
  static_assert(std::is_same_v<decltype(rlhf::as_view(cx))::element_type, const double>);
  float raw[6] = {};
  const auto rv = rlhf::view(raw, {2, 3});
  CHECK(rlhf::as_view(rv).data() == raw);
  CHECK(rlhf::as_view(rv).extent(1) == 3);
  // a run-time shape and strides (torch's sizes() / strides() have the same interface)
  const std::vector<std::int64_t> shape{3, 2}, strides{1, 3};
  const auto tv = rlhf::view<2>(raw, shape, strides);  // the transpose of rv, no copy
  CHECK(tv.data() == raw);
  CHECK(&tv(1, 0) == &rv(0, 1));
  CHECK(rlhf::view<1>(raw, std::vector<int>{6}).extent(0) == 6);
  expect_error([&] { (void)rlhf::view<3>(raw, shape); }, error_kind::shape, "shape");
  expect_error([&] { (void)rlhf::view<2>(raw, std::vector<int>{2, -1}); }, error_kind::shape, "negative");
}

TEST_CASE("checkpoints: another structure, a missing model and a model that rejects its bytes change nothing",
          "[train][errors]") {
  using M = lin::model<double, kind::logits>;
  M pi(1), ref(1);
  lin::reward rm;
  auto o = rl_opts("", true);
  o.steps = 2;
  tr::rl_trainer<rl_s<double>, M, M, lin::reward> t(pi, ref, rm, prompts32(), o);
  t.run();
  t.save("trainers_a.ckpt");
  // the same models under another structure (k1 instead of k3)
  using other = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k1, tr::kl_placement::loss,
                                 tr::advantage_estimator::grpo, rlhf::agg_mode::seq_mean_token_mean, double>;
  M pi2(7), ref2(7);
  tr::rl_trainer<other, M, M, lin::reward> t2(pi2, ref2, rm, prompts32(), o);
  const auto before = pi2.parameters().W;
  expect_error([&] { t2.load("trainers_a.ckpt"); }, error_kind::param, "structure");
  CHECK(pi2.parameters().W == before);
  // a model that throws in load(): both models keep their state, the error names the model
  struct picky : M {
    using M::M;
    bool reject = false;
    void load(std::istream& in) {
      if (reject) throw std::invalid_argument("bad weights");
      M::load(in);
    }
  };
  picky p3(7), r3(7);
  r3.reject = true;
  tr::rl_trainer<rl_s<double>, picky, picky, lin::reward> t3(p3, r3, rm, prompts32(), o);
  const auto w3 = p3.parameters().W;
  expect_error([&] { t3.load("trainers_a.ckpt"); }, error_kind::param, "reference model's load(): bad weights");
  CHECK(p3.parameters().W == w3);
  CHECK(t3.step_count() == 0);
  std::remove("trainers_a.ckpt");
}

TEST_CASE("trainers: a step that fails before the update changes nothing: the next step is the one a clean run makes",
          "[train][errors]") {
  using M = lin::model<double, kind::logits>;
  struct flaky {  // NaN once, then the real reward
    mutable int calls = 0;
    std::vector<double> score(const rlhf::batch& b) const {
      auto s = lin::reward{}.score(b);
      if (calls++ == 0) s[1] = NAN;
      return s;
    }
  };
  M pa(1), ra(1), pb(1), rb(1);
  flaky bad;
  lin::reward good;
  auto o = rl_opts("", true);
  tr::rl_trainer<rl_s<double>, M, M, flaky> ta(pa, ra, bad, prompts32(), o);
  tr::rl_trainer<rl_s<double>, M, M, lin::reward> tb(pb, rb, good, prompts32(), o);
  expect_error([&] { ta.step(); }, error_kind::non_finite, "reward score");
  CHECK(ta.step_count() == 0);
  CHECK(ta.step().json() == tb.step().json());
  CHECK(ta.step().json() == tb.step().json());
  // the DPO trainer: a policy whose log-probs turn NaN once
  struct nan_once : M {
    using M::M;
    mutable int calls = 0;
    rlhf::tensor<double, 2> logits(const rlhf::batch& b) const {
      auto z = M::logits(b);
      if (calls++ == 1) z(0, 0) = NAN;  // the test starts calls at 1: the first forward of the first step
      return z;
    }
  };
  std::vector<tr::preference> data{{{1}, {3, 0}, {2, 0}}, {{2}, {3, 3, 0}, {1, 0}}, {{4}, {0}, {2, 2, 0}}};
  tr::dpo_options d;
  d.batch_size = 2;
  d.progress = false;
  nan_once pc(1), rc(1);
  M pd(1), rd(1);
  tr::dpo_trainer<nan_once, M> dc(pc, rd, data, d);
  tr::dpo_trainer<M, M> dd(pd, rc, data, d);
  pc.calls = 1;
  expect_error([&] { dc.step(); }, error_kind::non_finite, "logits");
  CHECK(dc.step_count() == 0);
  CHECK(dc.step().json() == dd.step().json());
  CHECK(dc.step().json() == dd.step().json());
}

TEST_CASE("trainers: a DPO step that fails after the policy's update gives the policy its weights back",
          "[train][errors]") {
  using M = lin::model<double, kind::logits>;
  struct flaky_ref : M {  // the EMA update toward the policy throws once
    using M::M;
    int blends = 0, fault = -1;
    void blend_from(const M& p, double a) {
      if (blends++ == fault) throw std::runtime_error("blend failed");
      M::blend_from(p, a);
    }
  };
  std::vector<tr::preference> data{{{1}, {3, 0}, {2, 0}}, {{2}, {3, 3, 0}, {1, 0}}, {{4}, {0}, {2, 2, 0}}};
  tr::dpo_options d;
  d.batch_size = 2;
  d.progress = false;
  d.ref = {tr::ref_update::ema, 1, 0.5};
  M pa(1), pb(1);
  flaky_ref ra(1), rb(1);
  tr::dpo_trainer<M, flaky_ref> ta(pa, ra, data, d), tb(pb, rb, data, d);
  CHECK(ta.step().json() == tb.step().json());
  ra.fault = ra.blends;
  const auto w = pa.parameters().W;
  try {
    ta.step();
    FAIL("the step did not throw");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "blend failed");
  }
  CHECK(ta.step_count() == 1);
  CHECK(pa.parameters().W == w);  // the policy's update of the failed step is undone
  CHECK(ra.parameters().W == rb.parameters().W);
  for (int k = 0; k < 3; ++k) CHECK(ta.step().json() == tb.step().json());
  CHECK(pa.parameters().W == pb.parameters().W);
}

namespace {
/// Pairs with completions of one to three tokens (token 0 ends a response).
std::vector<tr::preference> varied_pairs() {
  std::vector<tr::preference> data;
  for (int i = 0; i < 12; ++i) {
    const auto t = [](int v) { return static_cast<std::int32_t>(v); };
    std::vector<std::int32_t> c{t(3)}, r{t(1 + i % 4)};
    if (i % 3 != 0) c.push_back(t(2 + i % 3));
    if (i % 2 == 0) r.push_back(t(4));
    c.push_back(0);
    if (i % 4 != 1) r.push_back(0);
    data.push_back({{t(1 + i % 5)}, c, r});
  }
  return data;
}
using M = lin::model<double, kind::log_probs>;
/// The first step of a preference trainer with policy parameters `theta`.
tr::record first_step(const tr::dpo_options& o, const std::vector<double>* theta, std::vector<double>* grad) {
  M pi(2), ref(3);
  if (theta != nullptr) {
    auto& q = pi.parameters();
    std::size_t k = 0;
    for (auto* v : {&q.E, &q.P, &q.W})
      for (auto& x : *v) x = (*theta)[k++];
  }
  tr::dpo_trainer<M, M> t(pi, ref, varied_pairs(), o);
  const auto r = t.step();
  if (grad != nullptr) *grad = pi.grad_log.at(0);
  return r;
}
}  // namespace

TEST_CASE("preference trainer: KTO, CPO, SimPO, AlphaPO and ORPO descend their own recorded loss (finite differences)",
          "[train][pref][grad]") {
  std::vector<std::pair<std::string, tr::dpo_options>> cases;
  auto base = [] {
    tr::dpo_options o;
    o.steps = 1;
    o.batch_size = 6;
    o.progress = false;
    o.seed = 5;
    return o;
  };
  auto o = base();
  o.objective = tr::preference_objective::kto;
  o.kto.type = rlhf::pref::kto_loss_type::apo_zero_unpaired;  // no detached KL: the loss is a function of theta
  o.kto.undesirable_weight = 1.5;
  cases.emplace_back("apo_zero", o);
  o = base();
  o.objective = tr::preference_objective::cpo;  // sigmoid on sums + cpo_alpha NLL
  cases.emplace_back("cpo", o);
  o.cpo = rlhf::pref::cpo_params::simpo(2.0, 0.5);  // length-averaged, with the NLL
  cases.emplace_back("simpo", o);
  o.cpo = rlhf::pref::cpo_params::alphapo(0.25);
  o.cpo_alpha = 0.0;
  cases.emplace_back("alphapo", o);
  o = base();
  o.objective = tr::preference_objective::orpo;
  o.orpo_beta = 0.3;
  cases.emplace_back("orpo", o);
  for (const auto& [name, opt] : cases) {
    INFO(name);
    std::vector<double> g;
    const auto r0 = first_step(opt, nullptr, &g);
    std::vector<double> theta;
    {
      M pi(2);
      const auto& q = pi.parameters();
      for (const auto* v : {&q.E, &q.P, &q.W}) theta.insert(theta.end(), v->begin(), v->end());
    }
    REQUIRE(g.size() == theta.size());
    const double h = 1e-6;
    double scale = 0;
    for (double x : g) scale = std::fmax(scale, std::fabs(x));
    REQUIRE(scale > 1e-4);  // a gradient to check
    for (std::size_t i = 0; i < theta.size(); ++i) {
      auto a = theta, b = theta;
      a[i] += h;
      b[i] -= h;
      const double fd =
          (first_step(opt, &a, nullptr).number("loss") - first_step(opt, &b, nullptr).number("loss")) / (2 * h);
      CHECK(g[i] == Approx(fd).margin(1e-7 * scale + 1e-9).epsilon(1e-6));
    }
    // the NLL term's value: ORPO's loss is nll - beta mean logsig(log odds)
    if (name == "orpo")
      CHECK(r0.number("loss") == Approx(r0.number("nll") - 0.3 * r0.number("log_odds_ratio")).epsilon(1e-12));
    if (name == "cpo") CHECK(r0.number("nll") > 0);
  }
}

TEST_CASE("preference trainer: KTO's detached KL is the mismatched pairs' log ratio; errors", "[train][pref]") {
  // one pair per step: the mismatched pair is the pair itself, so z = max(chosen log ratio, 0)
  tr::dpo_options o;
  o.steps = 3;
  o.batch_size = 1;
  o.progress = false;
  o.objective = tr::preference_objective::kto;
  M pi(2), ref(3);
  tr::dpo_trainer<M, M> t(pi, ref, varied_pairs(), o);
  for (int s = 0; s < 3; ++s) {
    const auto r = t.step();
    CHECK(r.number("kto_kl") == Approx(std::fmax(r.number("chosen_log_ratio"), 0.0)).margin(1e-12));
    // the reward margin is beta (rho_chosen - rho_rejected) of the one pair
    CHECK(r.number("reward_margin") ==
          Approx(0.1 * (r.number("chosen_log_ratio") - r.number("rejected_log_ratio"))).margin(1e-12));
  }
  auto bad = o;
  bad.orpo_beta = 0;
  expect_error([&] { tr::dpo_trainer<M, M> x(pi, ref, varied_pairs(), bad); }, error_kind::param, "orpo_beta");
  bad = o;
  bad.cpo.label_smoothing = 0.7;
  expect_error([&] { tr::dpo_trainer<M, M> x(pi, ref, varied_pairs(), bad); }, error_kind::param, "label_smoothing");
}
