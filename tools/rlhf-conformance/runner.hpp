// rlhf-conformance — runs the conformance vectors (shared/conformance/SCHEMA.md)
// against rlhf++ and compares outputs and gradients.
//
// Each op of OPS.md maps to a handler that reads the case's params and inputs,
// calls the library in element type T (double, or float for --float), and
// writes the outputs by the reference's names and the vector-Jacobian products
// of the named cotangents with respect to the named inputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
// the op headers only (no <rlhf/rlhf.hpp>: its training layer uses Boost.Hana,
// which nvcc does not compile, and the CUDA build of this runner is nvcc's)
#include <rlhf/advantage/gae.hpp>
#include <rlhf/advantage/gpg.hpp>
#include <rlhf/advantage/grpo.hpp>
#include <rlhf/advantage/group_variants.hpp>
#include <rlhf/advantage/opo.hpp>
#include <rlhf/advantage/reinforce.hpp>
#include <rlhf/advantage/rloo.hpp>
#include <rlhf/kl/controller.hpp>
#include <rlhf/kl/estimators.hpp>
#include <rlhf/kl/is.hpp>
#include <rlhf/kl/penalty.hpp>
#include <rlhf/objectives/a2c.hpp>
#include <rlhf/objectives/distill.hpp>
#include <rlhf/objectives/dpo.hpp>
#include <rlhf/objectives/is_correction.hpp>
#include <rlhf/objectives/policy_variants.hpp>
#include <rlhf/objectives/preference.hpp>
#include <rlhf/objectives/ppo.hpp>
#include <rlhf/objectives/reward.hpp>
#include <rlhf/objectives/rollout_correction.hpp>
#include <rlhf/ops/aggregate.hpp>
#include <rlhf/ops/logits.hpp>
#include <rlhf/ops/masked.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace rlhf_conformance {

using json = nlohmann::json;
using rlhf::index_t;

/// Set by --backend cuda (runners built by nvcc only).
inline bool use_cuda = false;

/// A dense array parsed from nested JSON lists (row-major).
struct nd {
  std::vector<index_t> shape;
  std::vector<double> data;
  [[nodiscard]] index_t size() const { return static_cast<index_t>(data.size()); }
};

inline double number(const json& j) {
  if (j.is_string()) {
    const auto s = j.get<std::string>();
    if (s == "NaN") return NAN;
    if (s == "Infinity") return INFINITY;
    if (s == "-Infinity") return -INFINITY;
    throw std::runtime_error("not a number: " + s);
  }
  if (j.is_boolean()) return j.get<bool>() ? 1.0 : 0.0;
  return j.get<double>();
}

inline void flatten(const json& j, std::size_t depth, nd& out) {
  if (!j.is_array()) {
    out.data.push_back(number(j));
    return;
  }
  if (out.shape.size() <= depth) out.shape.push_back(static_cast<index_t>(j.size()));
  for (const auto& e : j) flatten(e, depth + 1, out);
}

inline nd parse(const json& j) {
  nd r;
  flatten(j, 0, r);
  return r;
}

/// Storage for the element-type-T copies of a case's inputs.
template <class T>
class arena {
 public:
  explicit arena(const std::map<std::string, nd>& inputs) : inputs_(inputs) {}

  bool has(const std::string& k) const { return inputs_.count(k) != 0; }
  const nd& raw(const std::string& k) const {
    auto it = inputs_.find(k);
    if (it == inputs_.end()) throw std::runtime_error("missing input '" + k + "'");
    return it->second;
  }
  /// [B, T] view: rank 1 becomes [1, N]; leading dimensions are flattened.
  rlhf::tensor_view<const T, 2> mat(const std::string& k) {
    const nd& a = raw(k);
    index_t cols = a.shape.empty() ? 1 : a.shape.back();
    index_t rows = cols == 0 ? 0 : a.size() / std::max<index_t>(cols, 1);
    if (a.shape.size() == 1) rows = 1;
    return {store(a), {rows, cols}};
  }
  rlhf::tensor_view<const T, 1> vec(const std::string& k) {
    const nd& a = raw(k);
    return {store(a), {a.size()}};
  }
  rlhf::tensor_view<const long long, 1> ints(const std::string& k) {
    const nd& a = raw(k);
    auto& v = int_store_.emplace_back(a.data.begin(), a.data.end());
    return {v.data(), {a.size()}};
  }
  /// A writable [B, T] buffer shaped like `like`.
  rlhf::tensor_view<T, 2> out2(rlhf::tensor_view<const T, 2> like) {
    auto& v = store_.emplace_back(static_cast<std::size_t>(like.size()), T(0));
    return {v.data(), like.shape()};
  }
  rlhf::tensor_view<T, 1> out1(index_t n) {
    auto& v = store_.emplace_back(static_cast<std::size_t>(n), T(0));
    return {v.data(), {n}};
  }

 private:
  const T* store(const nd& a) {
    auto& v = store_.emplace_back();
    v.reserve(a.data.size());
    for (double x : a.data) v.push_back(static_cast<T>(x));
    return v.data();
  }
  const std::map<std::string, nd>& inputs_;
  std::vector<std::vector<T>> store_;
  std::vector<std::vector<long long>> int_store_;
};

struct result {
  std::map<std::string, nd> outputs;
  std::map<std::string, nd> grads;
};

template <class V>
nd to_nd(const V& v) {
  nd r;
  if constexpr (V::rank == 1) {
    r.shape = {v.extent(0)};
    for (index_t i = 0; i < v.extent(0); ++i) r.data.push_back(static_cast<double>(v(i)));
  } else {
    r.shape = {v.extent(0), v.extent(1)};
    for (index_t i = 0; i < v.extent(0); ++i)
      for (index_t j = 0; j < v.extent(1); ++j) r.data.push_back(static_cast<double>(v(i, j)));
  }
  return r;
}
inline nd scalar(double x) { return nd{{}, {x}}; }

/// Everything a handler sees.
template <class T>
struct ctx {
  const json& params;
  arena<T>& in;
  const std::map<std::string, nd>& cot;
  bool on_device = true;  ///< false once an op of the case ran on the CPU under --backend cuda

  bool has_param(const char* k) const { return params.contains(k) && !params.at(k).is_null(); }
  double num(const char* k) const {
    if (!has_param(k)) rlhf::detail::fail(rlhf::error_kind::param, "conformance", k, "is missing or null");
    return number(params.at(k));
  }
  double num_or(const char* k, double d) const { return has_param(k) ? number(params.at(k)) : d; }
  bool flag_or(const char* k, bool d) const { return has_param(k) ? params.at(k).get<bool>() : d; }
  std::string str(const char* k) const {
    if (!has_param(k)) rlhf::detail::fail(rlhf::error_kind::param, "conformance", k, "is missing or null");
    return params.at(k).get<std::string>();
  }
  double cot_scalar(const std::string& name) const {
    auto it = cot.find(name);
    return it == cot.end() ? 0.0 : it->second.data.at(0);
  }
  /// Cotangent of an array output, as a rank-2 flat view of shape like `like`.
  std::vector<double> cot_array(const std::string& name, index_t n) const {
    auto it = cot.find(name);
    if (it == cot.end()) return std::vector<double>(static_cast<std::size_t>(n), 0.0);
    if (it->second.size() != n) throw std::runtime_error("cotangent '" + name + "' has the wrong size");
    return it->second.data;
  }
};

/// grad = cotangent * elementwise derivative (or scalar cotangent * gradient).
template <class V>
nd scaled(const V& g, double k) {
  nd r = to_nd(g);
  for (auto& x : r.data) x *= k;
  return r;
}
template <class V>
nd scaled(const V& g, const std::vector<double>& k) {
  nd r = to_nd(g);
  for (std::size_t i = 0; i < r.data.size(); ++i) r.data[i] *= k[i];
  return r;
}

template <class T>
using handler = std::function<void(ctx<T>&, result&)>;

template <class T>
std::map<std::string, handler<T>> handlers();  // defined in handlers.hpp

// ---------------------------------------------------------------------------

struct case_outcome {
  bool passed = false;
  std::string message;    // worst element / error description
  bool on_device = true;  // under --backend cuda: every op of the case ran on the device
};

struct tolerance {
  double rtol, atol;
};

inline bool close(double got, double want, tolerance t) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= t.atol + t.rtol * std::fabs(want);
}

inline std::string compare(const std::string& what, const nd& got, const nd& want, tolerance t, bool& ok) {
  if (got.size() != want.size()) {
    ok = false;
    return what + ": got " + std::to_string(got.size()) + " elements, want " + std::to_string(want.size());
  }
  double worst = -1;
  index_t at = -1;
  for (index_t i = 0; i < want.size(); ++i) {
    if (close(got.data[i], want.data[i], t)) continue;
    const double err = std::isfinite(want.data[i])
                           ? std::fabs(got.data[i] - want.data[i]) / (t.atol + t.rtol * std::fabs(want.data[i]))
                           : INFINITY;
    if (err > worst || at < 0) {
      worst = err;
      at = i;
    }
  }
  if (at < 0) return {};
  ok = false;
  std::ostringstream os;
  os.precision(17);
  os << what << "[" << at << "]: got " << got.data[at] << ", want " << want.data[at]
     << " (|err| = " << std::fabs(got.data[at] - want.data[at]) << ")";
  return os.str();
}

template <class T>
case_outcome run_case(const std::string& op, const json& c, tolerance tol) {
  static const auto table = handlers<T>();
  case_outcome out;
  auto it = table.find(op);
  if (it == table.end()) {
    out.message = "unknown op '" + op + "'";
    return out;
  }
  if (c.contains("rtol")) tol.rtol = std::max(tol.rtol, c.at("rtol").get<double>());
  if (c.contains("atol")) tol.atol = std::max(tol.atol, c.at("atol").get<double>());
  std::map<std::string, nd> inputs, cot;
  for (auto& [k, v] : c.at("inputs").items()) inputs[k] = parse(v);
  if (c.contains("cotangents"))
    for (auto& [k, v] : c.at("cotangents").items()) cot[k] = parse(v);
  const json empty = json::object();
  const json& params = c.contains("params") ? c.at("params") : empty;
  const json& want_out = c.at("outputs");
  arena<T> ar(inputs);
  ctx<T> cx{params, ar, cot};
  result got;
  const bool want_error = want_out.contains("error");
  // The device backend does not scan its inputs for NaN / Inf (rlhf::cuda):
  // a case that expects that error runs on the CPU and is no device check.
  const bool was_cuda = use_cuda;
  if (use_cuda && want_error && want_out.at("error").get<std::string>() == "non_finite") {
    use_cuda = false;
    cx.on_device = false;
  }
  struct restore {
    bool v;
    ~restore() { use_cuda = v; }
  } restore_backend{was_cuda};
  out.on_device = was_cuda;
  try {
    it->second(cx, got);
    out.on_device = was_cuda && cx.on_device;
  } catch (const rlhf::error& e) {
    out.on_device = was_cuda && cx.on_device;
    if (want_error && want_out.at("error").get<std::string>() == rlhf::to_string(e.kind())) {
      out.passed = true;
      return out;
    }
    out.message = std::string("raised ") + rlhf::to_string(e.kind()) + ": " + e.what();
    return out;
  } catch (const std::exception& e) {
    out.message = std::string("runner error: ") + e.what();
    return out;
  }
  if (want_error) {
    out.message = "expected an error of kind '" + want_out.at("error").get<std::string>() + "', got a result";
    return out;
  }
  bool ok = true;
  std::string msg;
  for (auto& [k, v] : want_out.items()) {
    auto g = got.outputs.find(k);
    if (g == got.outputs.end()) {
      ok = false;
      msg = "output '" + k + "' not produced";
      break;
    }
    auto m = compare("output " + k, g->second, parse(v), tol, ok);
    if (!m.empty() && msg.empty()) msg = m;
  }
  if (c.contains("grads"))
    for (auto& [k, v] : c.at("grads").items()) {
      auto g = got.grads.find(k);
      if (g == got.grads.end()) {
        ok = false;
        if (msg.empty()) msg = "grad '" + k + "' not produced";
        continue;
      }
      auto m = compare("grad " + k, g->second, parse(v), tol, ok);
      if (!m.empty() && msg.empty()) msg = m;
    }
  out.passed = ok;
  out.message = msg;
  return out;
}

}  // namespace rlhf_conformance
