// libFuzzer target: the ops' argument checking and numerics. The bytes
// choose an op, its shapes (some mismatched), its views' layouts (strided,
// null with a shape, an output over an input) and its values (NaN, +-Inf,
// +-1e308, tiny, ordinary). Every call either returns finite results in
// every output (the op's contract: never NaN / Inf from finite input) or
// throws rlhf::error; any other exception, a crash or a sanitizer report is
// a finding (tests/fuzz/README.md).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <rlhf/kl/full.hpp>
#include <rlhf/rlhf.hpp>
#include <vector>

namespace {
using rlhf::index_t;
using V2 = rlhf::tensor_view<double, 2>;
using C2 = rlhf::tensor_view<const double, 2>;
using V1 = rlhf::tensor_view<double, 1>;
using C1 = rlhf::tensor_view<const double, 1>;

struct input {
  const std::uint8_t* d;
  std::size_t n, i = 0;
  std::uint8_t u8() { return i < n ? d[i++] : 0; }
  double value() {
    static const double special[] = {0.0,       1.0,  -1.0,  0.5,   -0.5,   1e308, -1e308, 1e-308, NAN,   INFINITY,
                                     -INFINITY, 20.0, -20.0, 700.0, -700.0, -1e4,  1e4,    3e38,   -3e38, 4e-324};
    const std::uint8_t c = u8();
    if (c < 40) return special[c % 20];
    return (static_cast<double>(c) - 148.0) / 8.0;
  }
  double mask_value() {
    const std::uint8_t c = u8();
    if (c < 100) return 1.0;
    if (c < 200) return 0.0;
    static const double odd[] = {0.5, 2.0, -1.0, NAN, INFINITY, 1e308};
    return odd[c % 6];
  }
};

/// The views of one call: storage kept alive, every output remembered for
/// the finiteness check.
struct arena {
  input& in;
  std::deque<std::vector<double>> store;
  std::vector<V2> outs2;
  std::vector<V1> outs1;

  /// An input [B, T]: contiguous, strided, null with a shape, or one column too many.
  V2 make2(index_t B, index_t T, bool mask = false) {
    const std::uint8_t mode = in.u8() % 24;
    if (mode == 0) return V2(nullptr, {B, T});
    const index_t Tw = mode == 1 ? T + 1 : T;
    const index_t s1 = mode == 2 ? 2 : 1;
    auto& v = store.emplace_back(static_cast<std::size_t>(B * Tw * s1 + 1), 0.0);
    for (auto& x : v) x = mask ? in.mask_value() : in.value();
    return V2(v.data(), {B, Tw}, {Tw * s1, s1});
  }
  V1 make1(index_t B) {
    const std::uint8_t mode = in.u8() % 24;
    if (mode == 0) return V1(nullptr, {B});
    const index_t n = mode == 1 ? B + 1 : B;
    auto& v = store.emplace_back(static_cast<std::size_t>(n), 0.0);
    for (auto& x : v) x = in.value();
    return V1(v.data(), {n});
  }
  /// An output [B, T]: its own buffer, absent, or (sometimes) the memory of `alias`.
  V2 out2(index_t B, index_t T, V2 alias = {}) {
    const std::uint8_t mode = in.u8() % 16;
    V2 o;
    if (mode == 0) return o;  // not requested
    if (mode == 1 && !alias.null())
      o = alias;
    else {
      auto& v = store.emplace_back(static_cast<std::size_t>(B * T), 0.0);
      o = V2(v.data(), {B, T});
    }
    outs2.push_back(o);
    return o;
  }
  V1 out1(index_t B) {
    auto& v = store.emplace_back(static_cast<std::size_t>(B), 0.0);
    outs1.push_back(V1(v.data(), {B}));
    return outs1.back();
  }
};

bool trace() {
  static const bool on = std::getenv("RLHF_FUZZ_TRACE") != nullptr;
  return on;
}

void require_finite(double x) {
  if (!std::isfinite(x)) __builtin_trap();  // a NaN / Inf returned without an error
}

void dump(const char* what, const C2& v) {
  std::fprintf(stderr, "%s [%lld, %lld] strides (%lld, %lld)%s:", what, static_cast<long long>(v.extent(0)),
               static_cast<long long>(v.extent(1)), static_cast<long long>(v.stride(0)),
               static_cast<long long>(v.stride(1)), v.null() ? " null" : "");
  if (!v.null())
    for (index_t b = 0; b < v.extent(0); ++b)
      for (index_t t = 0; t < v.extent(1); ++t) std::fprintf(stderr, " %.17g", v(b, t));
  std::fprintf(stderr, "\n");
}

void check_outputs(const arena& a) {
  if (trace()) {
    for (const auto& v : a.store) {
      std::fprintf(stderr, "buffer:");
      for (double x : v) std::fprintf(stderr, " %.17g", x);
      std::fprintf(stderr, "\n");
    }
    for (const auto& o : a.outs2) dump("out", C2(o));
  }
  for (const auto& o : a.outs2)
    for (index_t b = 0; b < o.extent(0); ++b)
      for (index_t t = 0; t < o.extent(1); ++t) require_finite(o(b, t));
  for (const auto& o : a.outs1)
    for (index_t b = 0; b < o.extent(0); ++b) require_finite(o(b));
}

rlhf::ppo::policy_params policy_preset(std::uint8_t c) {
  switch (c % 4) {
    case 0:
      return rlhf::ppo::policy_params::verl();
    case 1:
      return rlhf::ppo::policy_params::trl();
    case 2:
      return rlhf::ppo::policy_params::openrlhf();
    default:
      return rlhf::ppo::policy_params::sb3();
  }
}
rlhf::kl_params kl_preset(std::uint8_t c) {
  const auto e = static_cast<rlhf::kl_estimator>(c % enum_size(rlhf::kl_estimator{}));
  return (c / 8) % 2 == 0 ? rlhf::kl_params::verl(e) : rlhf::kl_params::openrlhf(e);
}
rlhf::agg_params agg(std::uint8_t c) {
  rlhf::agg_params p;
  p.mode = static_cast<rlhf::agg_mode>(c % enum_size(rlhf::agg_mode{}));
  return p;
}

void run(input& in) {
  arena a{in, {}, {}, {}};
  const std::uint8_t op = in.u8();
  const index_t B = 1 + in.u8() % 4, T = 1 + in.u8() % 6;
  const std::uint8_t knob = in.u8();
  const auto cpu = rlhf::cpu;
  std::vector<double> r;  // scalars returned
  if (trace())
    std::fprintf(stderr, "op %d B %lld T %lld knob %d\n", op % 15, static_cast<long long>(B), static_cast<long long>(T),
                 knob);
  switch (op % 15) {
    case 0: {
      const V2 lp = a.make2(B, T), old = a.make2(B, T), adv = a.make2(B, T), m = a.make2(B, T, true);
      const V2 d = a.out2(B, T, lp);
      const auto s = rlhf::ppo::policy_loss(cpu, C2(lp), C2(old), C2(adv), C2(m), policy_preset(knob), d);
      r = {s.loss, s.clipfrac, s.ppo_kl, s.clipfrac_lower};
      break;
    }
    case 1: {
      const V2 lp = a.make2(B, T), old = a.make2(B, T), adv = a.make2(B, T), m = a.make2(B, T, true);
      const auto kind = static_cast<rlhf::ppo::policy_loss_kind>(knob % enum_size(rlhf::ppo::policy_loss_kind{}));
      auto v = rlhf::ppo::variant_params::verl(kind);
      if (kind == rlhf::ppo::policy_loss_kind::dro) v.dro_beta = 0.1;
      const V2 d = a.out2(B, T, lp);
      const auto s = rlhf::ppo::policy_loss_variant(cpu, C2(lp), C2(old), C2(adv), C2(m), v, d);
      r = {s.loss, s.clipfrac, s.ppo_kl};
      break;
    }
    case 2: {
      const V2 v = a.make2(B, T), ret = a.make2(B, T), old = a.make2(B, T), m = a.make2(B, T, true);
      const auto p = knob % 2 == 0 ? rlhf::ppo::value_params::verl() : rlhf::ppo::value_params::sb3();
      const auto s = rlhf::ppo::value_loss(cpu, C2(v), C2(ret), C2(old), C2(m), p, a.out2(B, T, v));
      r = {s.loss, s.clipfrac};
      break;
    }
    case 3: {
      const V2 lp = a.make2(B, T), old = a.make2(B, T), adv = a.make2(B, T), m = a.make2(B, T, true);
      const V2 h = knob % 2 ? a.make2(B, T) : V2{}, ref = knob % 4 >= 2 ? a.make2(B, T) : V2{};
      rlhf::ppo::actor_params p;
      p.policy = policy_preset(knob / 4);
      p.entropy_coef = h.null() ? 0.0 : 0.01;
      p.kl_coef = ref.null() ? 0.0 : 0.1;
      const V2 d = a.out2(B, T, lp), dh = h.null() ? V2{} : a.out2(B, T, h);
      const auto s = rlhf::ppo::actor_loss(cpu, C2(lp), C2(old), C2(adv), C2(m), C2(h), C2(ref), p, d, dh);
      r = {s.loss, s.entropy, s.kl};
      break;
    }
    case 4: {
      const V2 lp = a.make2(B, T), ref = a.make2(B, T), m = a.make2(B, T, true);
      const auto s =
          rlhf::kl::loss(cpu, C2(lp), C2(ref), C2(m), 0.1, kl_preset(knob), agg(knob / 16), a.out2(B, T, lp));
      r = {s.loss, s.mean_kl};
      break;
    }
    case 5: {
      const V2 sc = a.make2(B, T), lp = a.make2(B, T), ref = a.make2(B, T), m = a.make2(B, T, true);
      const V2 out = a.out2(B, T, sc);
      if (out.null()) return;
      const auto s = rlhf::kl::apply_in_reward(cpu, C2(sc), C2(lp), C2(ref), C2(m), 0.05, kl_preset(knob), out);
      r = {s.mean_seq_kl, s.beta};
      break;
    }
    case 6: {
      const V2 l = a.make2(B, T), m = a.make2(B, T, true);
      r = {rlhf::ops::aggregate(cpu, C2(l), C2(m), agg(knob))};
      break;
    }
    case 7: {
      const V2 v = a.make2(B, T), m = a.make2(B, T, true);
      switch (knob % 5) {
        case 0:
          r = {rlhf::ops::masked_mean(cpu, C2(v), C2(m), 1e-8, a.out2(B, T, v))};
          break;
        case 1: {
          const auto s = rlhf::ops::masked_var(cpu, C2(v), C2(m), knob % 2 == 0, 1e-8, a.out2(B, T, v));
          r = {s.var, s.mean};
          break;
        }
        case 2: {
          const V2 o = a.out2(B, T, v);
          if (o.null()) return;
          const auto s = rlhf::ops::masked_whiten(cpu, C2(v), C2(m), rlhf::whiten_params::verl(), o);
          r = {s.mean, s.var};
          break;
        }
        case 3: {
          const V2 cot = a.make2(B, T), o = a.out2(B, T, cot);
          if (o.null()) return;
          rlhf::ops::masked_whiten_backward(cpu, C2(v), C2(m), rlhf::whiten_params::trl(), C2(cot), o);
          break;
        }
        default:
          r = {rlhf::ops::masked_sum(cpu, C2(v), C2(m))};
      }
      break;
    }
    case 8: {
      const V2 rw = a.make2(B, T), m = a.make2(B, T, true);
      const V2 adv = a.out2(B, T, rw), ret = a.out2(B, T, adv);
      if (adv.null() || ret.null()) return;
      if (knob % 3 == 0) {
        const V2 v = a.make2(B, T);
        rlhf::adv::gae_params p;
        p.whiten = knob % 2 == 0;
        rlhf::adv::gae(cpu, C2(rw), C2(v), C2(m), p, {adv, ret});
      } else if (knob % 3 == 1) {
        rlhf::adv::reinforce_pp(cpu, C2(rw), C2(m), rlhf::adv::reinforce_pp_params{}, {adv, ret});
      } else {
        const V1 base = a.make1(B);
        rlhf::adv::remax(cpu, C2(rw), C1(base), C2(m), {adv, ret});
      }
      break;
    }
    case 9: {
      const V2 rw = a.make2(B, T), m = a.make2(B, T, true);
      std::vector<long long> idx(static_cast<std::size_t>(B));
      for (auto& x : idx) x = in.u8() % 3;
      const rlhf::tensor_view<const long long, 1> index(idx.data(), {B});
      const V2 adv = a.out2(B, T, rw), ret = a.out2(B, T, adv);
      if (adv.null() || ret.null()) return;
      const rlhf::adv::outputs<double> out{adv, ret};
      switch (knob % 6) {
        case 0:
          rlhf::adv::grpo(cpu, C2(rw), C2(m), index, rlhf::adv::grpo_params::verl(knob % 2 == 0), out);
          break;
        case 1:
          rlhf::adv::rloo(cpu, C2(rw), C2(m), index, rlhf::adv::rloo_params{}, out);
          break;
        case 2:
          rlhf::adv::opo(cpu, C2(rw), C2(m), index, out);
          break;
        case 3:
          rlhf::adv::gpg(cpu, C2(rw), C2(m), index, rlhf::adv::gpg_params{}, out);
          break;
        case 4:
          rlhf::adv::grpo_passk(cpu, C2(rw), C2(m), index, rlhf::adv::grpo_params::verl(), out);
          break;
        default:
          rlhf::adv::reinforce_pp_baseline(cpu, C2(rw), C2(m), index, rlhf::whiten_params::verl(), out);
      }
      break;
    }
    case 10: {
      const V2 z = a.make2(B, T);  // [N, V] logits
      std::vector<long long> lab(static_cast<std::size_t>(B));
      for (auto& x : lab) x = static_cast<long long>(in.u8() % (T + 1)) - (in.u8() % 16 == 0 ? 1 : 0);
      const rlhf::tensor_view<const long long, 1> labels(lab.data(), {B});
      rlhf::ops::logits_params p;
      p.temperature = knob % 3 == 0 ? 0.5 : 1.0;
      if (knob % 2 == 0) {
        rlhf::ops::logprobs_entropy(cpu, C2(z), labels, a.out1(B), a.out1(B), a.out1(B), p);
      } else {
        const V1 g = a.make1(B), h = a.make1(B);
        const V2 dz = a.out2(B, T, z);
        if (dz.null()) return;
        rlhf::ops::logprobs_entropy_backward(cpu, C2(z), labels, C1(g), C1(h), dz, p);
      }
      break;
    }
    case 11: {
      const V1 c = a.make1(B), j = a.make1(B), rc = a.make1(B), rj = a.make1(B);
      const auto t = static_cast<rlhf::dpo::loss_type>(knob % enum_size(rlhf::dpo::loss_type{}));
      auto p = rlhf::dpo::params::trl(t, 0.1);
      const V1 lc = knob % 2 ? a.make1(B) : V1{}, lr = knob % 2 ? a.make1(B) : V1{};
      const rlhf::dpo::outputs<double> out{a.out1(B), a.out1(B), a.out1(B), a.out1(B), a.out1(B)};
      const auto s = rlhf::dpo::loss(cpu, C1(c), C1(j), C1(rc), C1(rj), p, out, C1(lc), C1(lr));
      r = {s.loss, s.reward_margin, s.reward_accuracy, s.chosen_reward, s.rejected_reward};
      break;
    }
    case 12: {
      const V2 lp = a.make2(B, T), v = a.make2(B, T), adv = a.make2(B, T), ret = a.make2(B, T), m = a.make2(B, T, true);
      const V2 h = knob % 2 ? a.make2(B, T) : V2{};
      auto p = rlhf::a2c::params::sb3();
      if (h.null()) p.ent_coef = 0;
      const auto s = rlhf::a2c::loss(cpu, C2(lp), C2(v), C2(adv), C2(ret), C2(h), C2(m), p, a.out2(B, T, lp),
                                     a.out2(B, T, v), h.null() ? V2{} : a.out2(B, T, h));
      r = {s.loss, s.policy_loss, s.value_loss};
      break;
    }
    case 13: {
      const V2 z = a.make2(B, T), y = a.make2(B, T);
      const V1 up = knob % 2 ? a.make1(B) : V1{};
      rlhf::kl::full_from_logits(cpu, C2(z), C2(y), a.out1(B), a.out2(B, T, z), C1(up), knob % 3 == 0 ? 0.5 : 1.0);
      break;
    }
    default: {
      const V2 v = a.make2(B, T), m = a.make2(B, T, true);
      if (knob % 2 == 0) {
        rlhf::ops::masked_mean_rows(cpu, C2(v), C2(m), 1e-8, a.out1(B));
      } else {
        const V1 cot = a.make1(B);
        const V2 o = a.out2(B, T, v);
        if (o.null()) return;
        if (knob % 4 == 1)
          rlhf::ops::masked_mean_rows_backward(cpu, C2(m), 1e-8, C1(cot), o);
        else
          rlhf::ops::masked_sum_rows_backward(cpu, C2(m), C1(cot), o);
      }
    }
  }
  if (trace())
    for (double x : r) std::fprintf(stderr, "result %.17g\n", x);
  for (double x : r) require_finite(x);
  check_outputs(a);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{data, size};
  try {
    run(in);
  } catch (const rlhf::error&) {
  }
  return 0;
}
