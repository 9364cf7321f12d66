// The libtorch adapter (adapt/torch.hpp): views without a copy, the reverse
// without a copy, clear errors, and the library's gradient pushed through
// autograd against the same loss written in libtorch.
#include <cmath>
#include <cstdint>
#include <fstream>
#include <rlhf/adapt/torch.hpp>
#include <rlhf/rlhf.hpp>
#include <string>
#include <torch/torch.h>

// glog (through libtorch) defines CHECK: Catch's macros carry their CATCH_ prefix here
#define CATCH_CONFIG_PREFIX_ALL
#include <catch2/catch.hpp>

using rlhf::error_kind;
using rlhf::index_t;

namespace {
template <class F>
void expect_error(F&& f, error_kind kind, const std::string& needle) {
  try {
    f();
    CATCH_FAIL("expected rlhf::error(" << rlhf::to_string(kind) << ") naming '" << needle << "'");
  } catch (const rlhf::error& e) {
    CATCH_INFO(e.what());
    CATCH_CHECK(e.kind() == kind);
    CATCH_CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}
}  // namespace

CATCH_TEST_CASE("torch: views share the tensor's memory and strides, for every element type", "[torch]") {
  const auto t = torch::arange(12, torch::kFloat64).reshape({3, 4});
  const auto v = rlhf::view<const double, 2>(t);
  CATCH_CHECK(static_cast<const void*>(v.data()) == t.data_ptr());
  CATCH_CHECK(v.extent(0) == 3);
  CATCH_CHECK(v.extent(1) == 4);
  CATCH_CHECK(v(2, 1) == 9.0);
  // a transposed tensor is a strided view of the same memory
  const auto tt = t.t();
  const auto vt = rlhf::view<const double, 2>(tt);
  CATCH_CHECK(static_cast<const void*>(vt.data()) == t.data_ptr());
  CATCH_CHECK(vt.stride(0) == 1);
  CATCH_CHECK(vt.stride(1) == 4);
  CATCH_CHECK(vt(1, 2) == 9.0);
  // a slice keeps its storage offset
  const auto s = t.index({torch::indexing::Slice(1, 3), torch::indexing::Slice(1, torch::indexing::None, 2)});
  const auto vs = rlhf::view<const double, 2>(s);
  CATCH_CHECK(static_cast<const void*>(vs.data()) == s.data_ptr());
  CATCH_CHECK(vs(1, 1) == 11.0);
  // writes through a view land in the tensor
  auto w = torch::zeros({2, 3}, torch::kFloat32);
  auto vw = rlhf::view<float, 2>(w);
  vw(1, 2) = 5.0f;
  CATCH_CHECK(w.index({1, 2}).item<float>() == 5.0f);
  // half, bfloat16, int64 token ids, int32, bool
  const auto h = torch::ones({2, 2}, torch::kHalf);
  CATCH_CHECK((static_cast<const void*>(rlhf::view<const c10::Half, 2>(h).data()) == h.data_ptr()));
  const auto bf = torch::ones({2, 2}, torch::kBFloat16);
  CATCH_CHECK((static_cast<const void*>(rlhf::view<const c10::BFloat16, 2>(bf).data()) == bf.data_ptr()));
  const auto ids = torch::tensor({3, 1, 4}, torch::kLong);
  const auto vi = rlhf::view<const std::int64_t, 1>(ids);
  CATCH_CHECK(static_cast<const void*>(vi.data()) == ids.data_ptr());
  CATCH_CHECK(vi(2) == 4);
  const auto i32 = torch::tensor({7, 8}, torch::kInt);
  CATCH_CHECK((rlhf::view<const std::int32_t, 1>(i32)(1) == 8));
  const auto b = torch::tensor({true, false}, torch::kBool);
  CATCH_CHECK((rlhf::view<const bool, 1>(b)(0)));
  // an empty tensor is an empty view
  const auto e = torch::zeros({0, 4}, torch::kFloat64);
  CATCH_CHECK((rlhf::view<const double, 2>(e).size() == 0));
}

CATCH_TEST_CASE("torch: what a view cannot express is an rlhf::error naming the argument", "[torch]") {
  const auto t = torch::zeros({2, 3}, torch::kFloat32);
  expect_error([&] { (void)rlhf::view<const double, 2>(t, "logits"); }, error_kind::param, "logits");
  expect_error([&] { (void)rlhf::view<const float, 3>(t, "logits"); }, error_kind::shape, "logits");
  expect_error([&] { (void)rlhf::view<const float, 2, rlhf::device_space>(t, "logits"); }, error_kind::param, "CUDA");
  expect_error([&] { (void)rlhf::view<const float, 2>(torch::Tensor{}, "x"); }, error_kind::param, "undefined");
  const auto sp = t.to_sparse();
  expect_error([&] { (void)rlhf::view<const float, 2>(sp, "x"); }, error_kind::param, "strided");
  const auto neg = torch::_neg_view(t);
  expect_error([&] { (void)rlhf::view<const float, 2>(neg, "x"); }, error_kind::param, "negation");
  // a torch_view is checked when the trainer views it
  rlhf::torch_view<float, 2> wrong{torch::zeros({2}, torch::kFloat32)};
  expect_error([&] { (void)rlhf::as_view(wrong); }, error_kind::shape, "tensor");
}

CATCH_TEST_CASE("torch: a tensor over the library's memory, no copy", "[torch]") {
  rlhf::tensor<double, 2> x({2, 3});
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) x(i, j) = static_cast<double>(10 * i + j);
  auto t = rlhf::to_torch(x.view());
  CATCH_CHECK(t.data_ptr() == static_cast<void*>(x.view().data()));
  CATCH_CHECK(t.scalar_type() == torch::kFloat64);
  CATCH_CHECK(t.size(0) == 2);
  CATCH_CHECK(t.size(1) == 3);
  CATCH_CHECK(t.index({1, 2}).item<double>() == 12.0);
  t.index_put_({0, 0}, 7.0);
  CATCH_CHECK(x(0, 0) == 7.0);
  // a strided (transposed) view keeps its strides
  const rlhf::tensor_view<double, 2> tr(x.view().data(), {3, 2}, {1, 3});
  const auto tt = rlhf::to_torch(tr);
  CATCH_CHECK(tt.stride(0) == 1);
  CATCH_CHECK(tt.stride(1) == 3);
  CATCH_CHECK(tt.index({2, 1}).item<double>() == 12.0);
  // round trip: view of the tensor over the view is the same memory
  CATCH_CHECK((rlhf::view<const double, 2>(tt).data() == tr.data()));
  // a device view into a CPU tensor is refused
  const rlhf::tensor_view<double, 2, rlhf::device_space> dv(nullptr, {0, 0});
  expect_error([&] { (void)rlhf::to_torch(dv, torch::Device(torch::kCPU)); }, error_kind::param, "device");
}

namespace {
/// verl's PPO policy loss (dual clip 3, log-ratio clamp 20, token-mean) written in libtorch.
torch::Tensor verl_ppo_loss(const torch::Tensor& logp, const torch::Tensor& old, const torch::Tensor& adv,
                            const torch::Tensor& mask, double clip_low, double clip_high, double dual) {
  const auto ratio = torch::exp(torch::clamp(logp - old, -20.0, 20.0));
  const auto pg1 = -adv * ratio;
  const auto pg2 = -adv * torch::clamp(ratio, 1.0 - clip_low, 1.0 + clip_high);
  const auto clip1 = torch::maximum(pg1, pg2);
  const auto pg3 = -adv * dual;
  const auto clip2 = torch::minimum(pg3, clip1);
  const auto tok = torch::where(adv < 0, clip2, clip1);
  return (tok * mask).sum() / mask.sum();
}
}  // namespace

CATCH_TEST_CASE("torch: the library's dL/dlogp through autograd equals the libtorch loss's gradient", "[torch]") {
  torch::manual_seed(3);
  const index_t B = 4, T = 6, V = 7, D = 5;
  // a tiny model: logits = h W, log-probs of the labels
  const auto h = torch::randn({B, T, D}, torch::kFloat64);
  const auto labels = torch::randint(V, {B, T}, torch::kLong);
  const auto w0 = torch::randn({D, V}, torch::kFloat64) * 0.5;
  const auto old = torch::randn({B, T}, torch::kFloat64) * 0.3 - 2.0;
  const auto adv = torch::randn({B, T}, torch::kFloat64);
  auto mask = torch::ones({B, T}, torch::kFloat64);
  mask.index_put_({0, torch::indexing::Slice(4, torch::indexing::None)}, 0.0);
  mask.index_put_({2, torch::indexing::Slice(2, torch::indexing::None)}, 0.0);
  auto logp_of = [&](const torch::Tensor& w) {
    return torch::log_softmax(torch::matmul(h, w), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1);
  };
  const auto p = rlhf::ppo::policy_params::verl();
  // the reference: the loss in libtorch, autograd's gradient
  auto w_ref = w0.clone().requires_grad_(true);
  const auto loss_ref = verl_ppo_loss(logp_of(w_ref), old, adv, mask, p.clip_low, p.clip_high, p.dual_clip);
  loss_ref.backward();
  // the library: the loss and dL/dlogp on views of torch memory, then logp.backward(dlogp)
  auto w = w0.clone().requires_grad_(true);
  const auto logp = logp_of(w);
  const auto lp = logp.detach();
  auto dlogp = torch::zeros_like(lp);
  const auto s = rlhf::ppo::policy_loss(rlhf::cpu, rlhf::view<const double, 2>(lp, "logp"),
                                        rlhf::view<const double, 2>(old, "old"), rlhf::view<const double, 2>(adv),
                                        rlhf::view<const double, 2>(mask), p, rlhf::view<double, 2>(dlogp));
  logp.backward(dlogp);
  CATCH_CHECK(std::abs(s.loss - loss_ref.item<double>()) < 1e-12);
  const double gmax = (w.grad() - w_ref.grad()).abs().max().item<double>();
  CATCH_CHECK(gmax < 1e-12);
  CATCH_CHECK(w.grad().abs().max().item<double>() > 1e-3);  // a gradient that is there
}

// ---------------------------------------------------------------------------
// causal_lm through the trainers: a bigram "transformer" (the logits of a
// token depend on the token before it only), PPO with a critic and the KL
// toward the frozen reference, then resume.
#include <rlhf/adapt/torch_lm.hpp>

namespace {
struct BigramImpl : torch::nn::Module {
  torch::nn::Embedding emb{nullptr};
  explicit BigramImpl(std::int64_t V) { emb = register_module("emb", torch::nn::Embedding(V, V)); }
  torch::Tensor forward(const torch::Tensor& tokens) { return emb(tokens); }
};
TORCH_MODULE(Bigram);
struct ValueHeadImpl : torch::nn::Module {
  torch::nn::Embedding emb{nullptr};
  explicit ValueHeadImpl(std::int64_t V) { emb = register_module("emb", torch::nn::Embedding(V, 1)); }
  torch::Tensor forward(const torch::Tensor& tokens) { return emb(tokens).squeeze(-1); }
};
TORCH_MODULE(ValueHead);

constexpr std::int64_t vocab = 6;

/// +1 for every token 3 in the response.
struct count_threes {
  using token_type = std::int64_t;
  std::vector<double> score(const rlhf::torch::batch& b) const {
    std::vector<double> s(static_cast<std::size_t>(b.size()), 0.0);
    for (index_t i = 0; i < b.size(); ++i)
      for (index_t t = 0; t < b.length(); ++t)
        if (b.response_mask(i, t) != 0 && b.responses(i, t) == 3) s[static_cast<std::size_t>(i)] += 1;
    return s;
  }
};

using policy_t = rlhf::torch::causal_lm<Bigram, double>;
using value_t = rlhf::torch::value_model<ValueHead, double>;
static_assert(rlhf::LogitsPolicy<policy_t> && rlhf::Checkpointable<policy_t> &&
              rlhf::BlendableFrom<policy_t, policy_t>);
static_assert(rlhf::ValueFunction<value_t> && rlhf::RewardModel<count_threes>);

struct run {
  Bigram pm{vocab}, rm{vocab};
  ValueHead vm{vocab};
  std::unique_ptr<policy_t> pi, ref;
  std::unique_ptr<value_t> v;
  run() {
    torch::manual_seed(11);
    pm = Bigram(vocab);
    rm = Bigram(vocab);
    vm = ValueHead(vocab);
    {
      torch::NoGradGuard ng;
      for (std::size_t i = 0; i < pm->parameters().size(); ++i) rm->parameters()[i].copy_(pm->parameters()[i]);
      pm->to(torch::kFloat64);
      rm->to(torch::kFloat64);
      vm->to(torch::kFloat64);
    }
    pi = std::make_unique<policy_t>(pm, std::make_shared<torch::optim::Adam>(pm->parameters(), 1e-2));
    ref = std::make_unique<policy_t>(rm);
    v = std::make_unique<value_t>(vm, std::make_shared<torch::optim::Adam>(vm->parameters(), 1e-2));
  }
};

rlhf::train::rl_options options(int steps) {
  rlhf::train::rl_options o;
  o.steps = steps;
  o.prompts_per_step = 2;
  o.group_size = 2;
  o.sample.max_new_tokens = 4;
  o.kl_coef = 0.05;
  o.progress = false;
  return o;
}
using gae_ppo = rlhf::train::rl_structure<rlhf::algorithm::ppo, rlhf::kl_estimator::k3, rlhf::kl_placement::reward,
                                          rlhf::advantage_estimator::gae>;
using trainer_t = rlhf::train::rl_trainer<gae_ppo, policy_t, policy_t, count_threes, value_t>;
const std::vector<std::vector<std::int64_t>> prompts{{1}, {2, 4}, {5, 1, 2}};
}  // namespace

CATCH_TEST_CASE("torch: a causal LM trains through the PPO trainer and resumes bit-identically", "[torch]") {
  torch::set_num_threads(1);
  count_threes reward;
  const auto path = std::string("torch_resume_test.ckpt");
  // 6 steps straight
  run a;
  auto oa = options(6);
  oa.metrics_path = "torch_resume_a.jsonl";
  trainer_t ta(*a.pi, *a.ref, reward, prompts, oa, a.v.get());
  const auto before = a.pm->parameters()[0].clone();
  ta.run();
  CATCH_CHECK(!torch::equal(before, a.pm->parameters()[0]));  // the policy moved
  // 3 steps, a checkpoint, 3 more steps in a new trainer over new models
  {
    run b;
    auto ob = options(3);
    ob.metrics_path = "torch_resume_bc.jsonl";
    trainer_t tb(*b.pi, *b.ref, reward, prompts, ob, b.v.get());
    tb.run();
    tb.save(path);
  }
  run c;
  auto oc = options(6);
  oc.metrics_path = "torch_resume_bc.jsonl";  // appended to on resume
  trainer_t tc(*c.pi, *c.ref, reward, prompts, oc, c.v.get());
  tc.load(path);
  tc.run();
  for (std::size_t i = 0; i < a.pm->parameters().size(); ++i)
    CATCH_CHECK(torch::equal(a.pm->parameters()[i], c.pm->parameters()[i]));
  for (std::size_t i = 0; i < a.vm->parameters().size(); ++i)
    CATCH_CHECK(torch::equal(a.vm->parameters()[i], c.vm->parameters()[i]));
  CATCH_CHECK(ta.last().number("reward") == tc.last().number("reward"));
  CATCH_CHECK(ta.last().number("kl_ref") == tc.last().number("kl_ref"));
  CATCH_CHECK(std::isfinite(ta.last().number("kl_ref")));
  // the reference stayed frozen
  for (std::size_t i = 0; i < a.rm->parameters().size(); ++i)
    CATCH_CHECK(torch::equal(a.rm->parameters()[i], c.rm->parameters()[i]));
  // the step records of the two metrics files are byte-identical (the config lines differ in "steps")
  auto steps_of = [](const std::string& f) {
    std::ifstream in(f);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);)
      if (l.find("\"record\": \"config\"") == std::string::npos && l.find("\"record\":\"config\"") == std::string::npos)
        lines.push_back(l);
    return lines;
  };
  const auto la = steps_of("torch_resume_a.jsonl"), lbc = steps_of("torch_resume_bc.jsonl");
  CATCH_CHECK(la.size() == 6);
  CATCH_CHECK(la == lbc);
  for (const char* f : {"torch_resume_a.jsonl", "torch_resume_bc.jsonl"}) std::remove(f);
  std::remove(path.c_str());
}

CATCH_TEST_CASE("torch: reference updates blend the parameters (frozen, hard sync, EMA)", "[torch]") {
  run r;
  torch::NoGradGuard ng;
  const auto p0 = r.pm->parameters()[0].clone();
  r.pm->parameters()[0].add_(1.0);  // the policy moved
  const auto ref0 = r.rm->parameters()[0].clone();
  r.ref->blend_from(*r.pi, 0.25);  // EMA: (1 - a) ref + a policy
  CATCH_CHECK(torch::allclose(r.rm->parameters()[0], 0.75 * ref0 + 0.25 * (p0 + 1.0), 0.0, 1e-15));
  r.ref->blend_from(*r.pi, 1.0);  // hard sync
  CATCH_CHECK(torch::equal(r.rm->parameters()[0], r.pm->parameters()[0]));
  expect_error([&] { r.ref->blend_from(*r.pi, 1.5); }, error_kind::param, "alpha");
}

CATCH_TEST_CASE("torch: generation follows the temperature, top-k and top-p, from the trainer's engine", "[torch]") {
  // the sampler itself: top-k 1 and a small nucleus both keep the most likely token only
  std::vector<double> p{0.1, 0.6, 0.3};
  rlhf::torch::lm_options o;
  o.top_k = 1;
  for (double u : {0.0, 0.5, 0.999}) CATCH_CHECK(rlhf::torch::detail::sample_token(p, o, u) == 1);
  o.top_k = 0;
  o.top_p = 0.5;
  for (double u : {0.0, 0.5, 0.999}) CATCH_CHECK(rlhf::torch::detail::sample_token(p, o, u) == 1);
  o.top_p = 0.85;  // {1, 2}: u below 0.6 / 0.9 picks 1, above picks 2
  CATCH_CHECK(rlhf::torch::detail::sample_token(p, o, 0.6) == 1);
  CATCH_CHECK(rlhf::torch::detail::sample_token(p, o, 0.7) == 2);
  o.top_p = 1.0;  // the whole distribution, in order of probability: 1, 2, 0
  CATCH_CHECK(rlhf::torch::detail::sample_token(p, o, 0.95) == 0);
  // generate: the same engine state gives the same responses; eos ends a response (mask 1 on it)
  run r;
  rlhf::torch::prompt_batch x;
  x.tokens = rlhf::tensor<std::int64_t, 2>({3, 2}, 0);
  x.tokens(0, 0) = 1;
  x.tokens(1, 0) = 2;
  x.tokens(1, 1) = 4;
  x.tokens(2, 0) = 5;
  x.lengths = {1, 2, 1};
  rlhf::rng_t g1(5), g2(5);
  const auto r1 = r.pi->generate(x, rlhf::sampling{0.7, 6}, g1), r2 = r.pi->generate(x, rlhf::sampling{0.7, 6}, g2);
  CATCH_CHECK(r1.seqs.responses.view().data()[0] == r2.seqs.responses.view().data()[0]);
  for (index_t i = 0; i < 3; ++i)
    for (index_t t = 0; t < 6; ++t) CATCH_CHECK(r1.seqs.responses(i, t) == r2.seqs.responses(i, t));
  policy_t with_eos(r.pm, nullptr, rlhf::torch::lm_options{0, 1.0, 3, 0});
  rlhf::rng_t g3(5);
  const auto r3 = with_eos.generate(x, rlhf::sampling{1.0, 6}, g3);
  for (index_t i = 0; i < 3; ++i) {
    bool ended = false;
    for (index_t t = 0; t < 6; ++t) {
      CATCH_CHECK(r3.seqs.response_mask(i, t) == (ended ? 0.0 : 1.0));
      if (!ended && r3.seqs.responses(i, t) == 3) ended = true;
    }
  }
  expect_error([&] { (void)r.pi->generate(x, rlhf::sampling{0.0, 6}, g1); }, error_kind::param, "temperature");
}

CATCH_TEST_CASE("torch: the causal LM's layout, label shift and batch independence", "[torch]") {
  run r;
  rlhf::torch::batch b;
  b.prompts.tokens = rlhf::tensor<std::int64_t, 2>({2, 3}, 0);
  b.prompts.tokens(0, 0) = 1;
  b.prompts.tokens(1, 0) = 2;
  b.prompts.tokens(1, 1) = 4;
  b.prompts.tokens(1, 2) = 5;
  b.prompts.lengths = {1, 3};
  b.responses = rlhf::tensor<std::int64_t, 2>({2, 2}, 0);
  b.responses(0, 0) = 3;
  b.responses(0, 1) = 2;
  b.responses(1, 0) = 1;
  b.response_mask = rlhf::tensor<double, 2>({2, 2}, 1.0);
  const auto z = r.ref->logits(b);
  const auto v = rlhf::as_view(z);
  CATCH_REQUIRE(v.extent(0) == 4);
  CATCH_REQUIRE(v.extent(1) == vocab);
  // a bigram model: the logits that predict y_t are the embedding of the token before it
  const auto w = r.rm->emb->weight;
  auto row = [&](std::int64_t tok, index_t i) {
    for (index_t k = 0; k < vocab; ++k)
      if (v(i, k) != w.index({tok, k}).item<double>()) return false;
    return true;
  };
  CATCH_CHECK(row(1, 0));  // y_0 of row 0 follows the prompt's last token 1
  CATCH_CHECK(row(3, 1));  // y_1 follows y_0 = 3
  CATCH_CHECK(row(5, 2));  // y_0 of row 1 follows 5 (its prompt is 3 long)
  CATCH_CHECK(row(1, 3));
}
