// rlhf++ — on-policy distillation (GKD, Agarwal et al. 2024, arXiv
// 2306.13649; TRL GKDTrainer with lmbda = 1): the student samples responses
// to the prompts, and its next-token distribution at every response token is
// pulled toward the teacher's by the generalized JSD on the logits
// (distill::generalized_jsd: beta = 0 forward KL(teacher || student), 1
// reverse KL, temperature). The teacher is any model with logits: the
// reference model (distilling back toward the SFT model) or a larger one.
//
// Call order per step: student.generate(x), student.logits(b),
// teacher.logits(b), student.backward_logits(b, dlogits), student.step().
// The student: generate, logits(b) -> [B*T, V] (row b*T + t predicts
// response token t), backward_logits(b, dlogits), step(); the teacher:
// logits(b) of the same shape. CPU.
#pragma once

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "../core/numerics.hpp"
#include "../objectives/distill.hpp"
#include "checkpoint.hpp"
#include "metrics.hpp"
#include "model_calls.hpp"
#include "options.hpp"
#include "rollout.hpp"

namespace rlhf::train {

struct distill_options {
  long long steps = 100;
  long long prompts_per_step = 8;
  long long group_size = 1;  ///< responses per prompt
  sampling sample{};
  distill::jsd_params jsd{};  ///< beta, temperature, reduction (TRL GKDConfig: beta 0.5, temperature 0.9)
  std::string metrics_path;
  bool progress = true;
  long long progress_every = 10;
  std::string checkpoint_path;
  long long checkpoint_every = 0;
  unsigned long long seed = 0;
  /// A step that throws gives the student its state back (a Checkpointable student).
  bool rollback = true;
};

inline void check_distill_options(const distill_options& o, const char* fn) {
  using rlhf::detail::require_param;
  check_run_fields(o, fn);
  require_param(o.prompts_per_step >= 1, fn, "prompts_per_step", "must be >= 1");
  require_param(o.group_size >= 1, fn, "group_size", "must be >= 1");
  require_param(o.sample.max_new_tokens >= 1, fn, "sample.max_new_tokens", "must be >= 1");
  rlhf::detail::require_positive_param(o.sample.temperature, fn, "sample.temperature");
  distill::check_jsd_params(o.jsd, fn);
  require_param(o.jsd.reduction != distill::jsd_reduction::none, fn, "jsd.reduction",
                "must reduce to a scalar loss (batchmean, sum or mean)");
}

template <class S, class T, class B = batch_for<S>>
concept DistillStudent = requires(S& s, const B& b) {
  { s.logits(b) } -> viewable<2>;
  s.step();
}
&&requires(S& s, const B& b, grad_view_t<rlhf::detail::logits_t<S, B>> d) { s.backward_logits(b, d); };

template <class Student, class Teacher>
class distill_trainer : public runnable<distill_trainer<Student, Teacher>> {
 public:
  using token_type = token_type_of_t<Student>;
  using batch_type = basic_batch<token_type>;

 private:
  using B = batch_type;
  static_assert(check_policy<Student, B>());
  static_assert(DistillStudent<Student, Teacher, B>,
                "rlhf: train::distill_trainer's student needs logits(const batch&) -> [B*T, V], "
                "backward_logits(const batch&, dlogits) and step() (docs/training.md)");
  static_assert(LogitsModel<Teacher, B>,
                "rlhf: train::distill_trainer's teacher needs logits(const batch&) -> [B*T, V]");

 public:
  distill_trainer(Student& student, Teacher& teacher, std::vector<std::vector<token_type>> prompts, distill_options o)
      : student_(student), teacher_(teacher), o_(std::move(o)), rng_(o_.seed) {
    constexpr const char* fn = "train::distill_trainer";
    src_.prompts = std::move(prompts);
    src_.check(fn);
    check_distill_options(o_, fn);
  }

  [[nodiscard]] long long step_count() const noexcept { return step_; }
  [[nodiscard]] const record& last() const noexcept { return last_; }
  [[nodiscard]] const distill_options& options() const noexcept { return o_; }
  [[nodiscard]] const step_profile& profile() const noexcept { return prof_; }

  [[nodiscard]] record config() const {
    record r;
    r.set("record", "config").set("trainer", "distill");
    r.set("steps", o_.steps).set("prompts_per_step", o_.prompts_per_step).set("group_size", o_.group_size);
    r.set("sample.temperature", o_.sample.temperature).set("sample.max_new_tokens", o_.sample.max_new_tokens);
    r.set("jsd.beta", o_.jsd.beta).set("jsd.temperature", o_.jsd.temperature);
    r.set("jsd.reduction", to_string(o_.jsd.reduction)).set("seed", static_cast<long long>(o_.seed));
    return r;
  }

  /// One step; a step that throws leaves the cursor and the engine as they were.
  record step() {
    return detail::guarded_step(
        prof_, [&] { return step_impl(); }, rollback_, o_.rollback, src_.cursor, rng_, step_, last_);
  }

  void save(const std::string& path) const {
    state_writer w("distill_trainer", "distill");
    std::ostringstream g;
    g << rng_;
    w.number("step", step_).number("cursor", src_.cursor).field("rng", g.str());
    w.model("student", student_).model("teacher", teacher_);
    write_checkpoint(path, w.str());
  }

  void load(const std::string& path) {
    const state_reader st(read_checkpoint(path), path, "distill_trainer", "distill");
    st.expect_only({"step", "cursor", "rng"}, {"student", "teacher"});
    const long long step = st.integer("step"), cursor = st.integer("cursor");
    if (step < 0 || cursor < 0) st.bad("holds a negative step or cursor");
    rng_t g;
    st.read("rng", g);
    st.expect_model<Student>("student");
    st.expect_model<Teacher>("teacher");
    load_models(st, {slot("student", student_), slot("teacher", teacher_)});
    step_ = step;
    src_.cursor = cursor;
    rng_ = g;
  }

 private:
  /// A model's logits [B*T, V] as doubles (the shape checked against the batch).
  template <class M>
  static void logits_of(M& m, const B& b, const char* name, tensor<double, 2>& out, index_t V = -1) {
    constexpr const char* fn = "train::distill_trainer::step";
    decltype(auto) z = m.logits(b);
    const auto v = rlhf::as_view(z);
    const index_t rows = b.size() * b.length();
    if (v.extent(0) != rows || (V >= 0 && v.extent(1) != V))
      rlhf::detail::fail(error_kind::shape, fn, name,
                         "has shape " + shape_string(v) + "; expected [" + std::to_string(rows) + ", " +
                             (V >= 0 ? std::to_string(V) : std::string("V")) + "] (one row per response token)");
    out.resize({v.extent(0), v.extent(1)});
    for (index_t r = 0; r < v.extent(0); ++r)
      for (index_t k = 0; k < v.extent(1); ++k) out(r, k) = static_cast<double>(v(r, k));
  }

  record step_impl() {
    constexpr const char* fn = "train::distill_trainer::step";
    auto x = src_.next(o_.prompts_per_step, o_.group_size);
    ro_ = detail::sample(student_, x, o_.sample, rng_, prof_);
    const B& b = ro_.seqs;
    const index_t N = b.size() * b.length();
    detail::timed(prof_.model_s, [&] {
      logits_of(student_, b, "student logits", zs_);
      logits_of(teacher_, b, "teacher logits", zt_, zs_.extent(1));
    });
    labels_.resize({N});
    double tokens = 0;
    for (index_t i = 0; i < b.size(); ++i)
      for (index_t t = 0; t < b.length(); ++t) {
        const bool on = b.response_mask(i, t) != 0;
        labels_(i * b.length() + t) = on ? static_cast<long long>(b.responses(i, t)) : o_.jsd.ignore_index;
        tokens += on ? 1.0 : 0.0;
      }
    dz_.resize(zs_.shape());
    const auto res = detail::timed(prof_.ops_s, [&] {
      return distill::generalized_jsd(cpu, tensor_view<const double, 2>(zs_.view()),
                                      tensor_view<const double, 2>(zt_.view()),
                                      tensor_view<const long long, 1>(labels_.view()), o_.jsd, dz_.view());
    });
    // the sampled tokens' log-probs at temperature 1: log pi_s(y) - log pi_t(y), an estimate of
    // KL(student || teacher) per token on the student's own samples
    double kl = 0;
    const index_t V = zs_.extent(1);
    for (index_t r = 0; r < N; ++r) {
      if (labels_(r) == o_.jsd.ignore_index) continue;
      const auto y = static_cast<index_t>(labels_(r));
      if (y < 0 || y >= V)
        rlhf::detail::fail(
            error_kind::shape, fn, "responses",
            "holds token " + std::to_string(y) + " outside the vocabulary [0, " + std::to_string(V) + ")");
      kl += (zs_(r, y) - num::logsumexp(&zs_(r, 0), V, 1)) - (zt_(r, y) - num::logsumexp(&zt_(r, 0), V, 1));
    }
    rollback_.keep("student", student_);  // given back if the step throws from here on
    detail::timed(prof_.model_s, [&] {
      backward_student(b);
      student_.step();
    });
    ++step_;
    double g2 = 0;
    for (auto v : dz_.storage()) g2 += v * v;
    record r;
    r.set("step", step_).set("loss", res.loss).set("kl_teacher_token", tokens > 0 ? kl / tokens : 0.0);
    r.set("response_length", tokens / static_cast<double>(b.size())).set("grad_norm", std::sqrt(g2));
    last_ = r;
    return r;
  }

  /// d loss / d logits to the student, in the element type of its logits.
  void backward_student(const B& b) {
    using G = grad_view_t<rlhf::detail::logits_t<Student, B>>;
    using E = typename G::value_type;
    if constexpr (std::is_same_v<E, double>) {
      student_.backward_logits(b, G(dz_.view()));
    } else {
      dz_e_.resize(dz_.shape());
      for (index_t i = 0; i < dz_.size(); ++i) dz_e_.data()[i] = static_cast<E>(dz_.data()[i]);
      student_.backward_logits(b, G(dz_e_.view()));
    }
  }

  Student& student_;
  Teacher& teacher_;
  detail::prompt_source<token_type> src_;
  distill_options o_;
  rng_t rng_;
  long long step_ = 0;
  record last_;
  step_profile prof_;
  model_rollback rollback_;
  basic_rollout<token_type> ro_;
  tensor<double, 2> zs_, zt_, dz_;
  tensor<typename grad_view_t<rlhf::detail::logits_t<Student, B>>::value_type, 2> dz_e_;
  tensor<long long, 1> labels_;
};

}  // namespace rlhf::train
