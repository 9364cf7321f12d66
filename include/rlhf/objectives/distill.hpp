// rlhf++ — on-policy distillation's loss on the logits: the generalized
// Jensen-Shannon divergence of GKD (Agarwal et al. 2024, arXiv 2306.13649),
// TRL experimental GKDTrainer.generalized_jsd_loss.
//
// Per position, over the vocabulary, with s = log_softmax(z / tau) (student),
// t = log_softmax(y / tau) (teacher), p_s = e^s, p_t = e^t:
//   0 < beta < 1: m = log((1 - beta) p_s + beta p_t) (as logsumexp),
//                 jsd = beta p_t (t - m) + (1 - beta) p_s (s - m)
//   beta = 0:     jsd = p_t (t - s)     (forward KL(teacher || student))
//   beta = 1:     jsd = p_s (s - t)     (reverse KL(student || teacher))
// L = c sum jsd over the kept positions (labels != ignore_index), c by the
// reduction. The gradient by the student's logits, with G = dL/ds:
//   G = c (1 - beta) p_s (s - m)   (beta = 0: -c p_t; beta = 1: c p_s (s - t + 1))
//   dL/dz = (G - p_s sum_v G) / tau
// Per row three streaming passes over the two logit rows (a row and its
// partner stay in L2 for the later passes): both log-sum-exps (online), the
// sums of jsd and G, then the gradient. No softmax is stored; rows run on
// OpenMP threads.
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "../backend/cpu/jsd_kernel.hpp"
#include "../backend/cpu/loops.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../core/named_enum.hpp"

namespace rlhf::distill {

RLHF_BACKEND_FIRST(generalized_jsd)

RLHF_NAMED_ENUM(jsd_reduction, (batchmean, "batchmean"), (sum, "sum"), (mean, "mean"), (none, "none"));

struct jsd_params {
  double beta = 0.5;         ///< 0: forward KL, 1: reverse KL (TRL GKDConfig beta)
  double temperature = 1.0;  ///< tau > 0
  jsd_reduction reduction = jsd_reduction::batchmean;
  double num_items_in_batch = 0;  ///< > 0: L = sum / num_items_in_batch whatever the reduction; 0 = unset
  long long ignore_index = -100;
  /// batchmean's divisor without labels (TRL: the batch size B of [B, T, V]
  /// logits); 0: the number of rows N
  double batch_rows = 0;
};

inline void check_jsd_params(const jsd_params& p, const char* fn) {
  rlhf::detail::require_param(p.beta >= 0 && p.beta <= 1, fn, "beta",
                              "must be in [0, 1]; got " + std::to_string(p.beta));
  rlhf::detail::require_param(std::isfinite(p.temperature) && p.temperature > 0, fn, "temperature", "must be > 0");
  rlhf::detail::require_param(std::isfinite(p.num_items_in_batch) && p.num_items_in_batch >= 0, fn,
                              "num_items_in_batch", "must be > 0 (0 = unset)");
  rlhf::detail::require_param(std::isfinite(p.batch_rows) && p.batch_rows >= 0, fn, "batch_rows", "must be >= 0");
}

/// "batchmean", "sum", "mean", "none"; anything else is rlhf::error(param).
inline jsd_reduction parse_jsd_reduction(std::string_view s) {
  if (auto e = parse_enum<jsd_reduction>(s)) return *e;
  rlhf::detail::fail(error_kind::param, "distill::parse_jsd_reduction", "reduction",
                     "unknown reduction '" + std::string(s) + "' (" + enum_name_list<jsd_reduction>() + ")");
}

struct jsd_result {
  double loss = 0;   ///< the reduced loss (sum over kept positions for `none`)
  index_t kept = 0;  ///< positions kept (labels != ignore_index)
};

namespace detail {
struct row_lse {
  double s, t;  ///< log-sum-exp of z / tau and of y / tau
};
template <class A>
double lse(const A& x, index_t V, double inv_tau) {
  double m = -INFINITY, s = 0;
  for (index_t v = 0; v < V; ++v) {
    const double a = static_cast<double>(x(v)) * inv_tau;
    if (a > m) {
      s = s * std::exp(m - a) + 1.0;
      m = a;
    } else {
      s += std::exp(a - m);
    }
  }
  return m + std::log(s);
}
/// jsd and dL/ds (before c) of one element.
inline void element(double s, double t, double beta, double l1mb, double lb, double& jsd, double& g) {
  const double ps = std::exp(s), pt = std::exp(t);
  if (beta == 0) {
    jsd = pt * (t - s);
    g = -pt;
  } else if (beta == 1) {
    jsd = ps * (s - t);
    g = ps * (s - t + 1.0);
  } else {
    const double a = s + l1mb, b = t + lb;
    const double hi = a > b ? a : b;
    const double m = hi + std::log1p(std::exp(-std::fabs(a - b)));
    jsd = beta * pt * (t - m) + (1.0 - beta) * ps * (s - m);
    g = (1.0 - beta) * ps * (s - m);
  }
}
}  // namespace detail

/// The generalized JSD of student logits [N, V] against teacher logits
/// [N, V]. `labels` [N] (optional): positions equal to ignore_index are not
/// counted. `dstudent` (optional) receives dL/dz (zero on ignored rows);
/// `elements` (optional, [N, V]) the per-element jsd (0 on ignored rows);
/// `cot` (optional, [N, V], reduction none only): the cotangent of the
/// elements, whose VJP then goes to dstudent. Every position masked under
/// batchmean or mean is rlhf::error(empty).
template <class T, class L>
jsd_result generalized_jsd(cpu_t tag, tensor_view<T, 2> student, in_view<T, 2> teacher, tensor_view<L, 1> labels,
                           const jsd_params& p, out_view<T, 2> dstudent = {}, out_view<T, 2> elements = {},
                           in_view<T, 2> cot = {}) {
  constexpr const char* fn = "distill::generalized_jsd";
  check_jsd_params(p, fn);
  rlhf::detail::require_same_shape(fn, "teacher_logits", teacher, "student_logits", student);
  rlhf::detail::require_nonempty(fn, "student_logits", student);
  if (!labels.null()) rlhf::detail::require_extent(fn, "labels", labels, 0, student.extent(0), "one label per row");
  rlhf::detail::require_output(fn, "dstudent", dstudent, "student_logits", student);
  rlhf::detail::require_output(fn, "elements", elements, "student_logits", student);
  if (!cot.null()) {
    rlhf::detail::require_same_shape(fn, "cot", cot, "student_logits", student);
    rlhf::detail::require_param(p.reduction == jsd_reduction::none, fn, "cot",
                                "is the cotangent of the elements: reduction none only");
  }
  rlhf::detail::require_finite(tag, fn, "student_logits", student);
  rlhf::detail::require_finite(tag, fn, "teacher_logits", teacher);
  if (!cot.null()) rlhf::detail::require_finite(tag, fn, "cot", cot);
  const index_t N = student.extent(0), V = student.extent(1);
  std::vector<unsigned char> keep(static_cast<std::size_t>(N), 1);
  index_t n = N;
  if (!labels.null()) {
    n = 0;
    for (index_t i = 0; i < N; ++i) {
      keep[static_cast<std::size_t>(i)] = static_cast<long long>(labels(i)) != p.ignore_index ? 1 : 0;
      n += keep[static_cast<std::size_t>(i)];
    }
  }
  double c = 1.0;
  if (p.num_items_in_batch > 0) {
    c = 1.0 / p.num_items_in_batch;
  } else {
    switch (p.reduction) {
      case jsd_reduction::batchmean:
        if (!labels.null()) {
          if (n == 0) rlhf::detail::fail(error_kind::empty, fn, "labels", "keeps no position (batchmean over none)");
          c = 1.0 / static_cast<double>(n);
        } else {
          c = 1.0 / (p.batch_rows > 0 ? p.batch_rows : static_cast<double>(N));
        }
        break;
      case jsd_reduction::mean:
        if (n == 0) rlhf::detail::fail(error_kind::empty, fn, "labels", "keeps no position (mean over none)");
        c = 1.0 / (static_cast<double>(n) * static_cast<double>(V));
        break;
      case jsd_reduction::sum:
      case jsd_reduction::none:
        c = 1.0;
        break;
    }
  }
  // the none reduction's VJP without a cotangent is that of the sum
  const double inv_tau = 1.0 / p.temperature, beta = p.beta;
  // both paths: an overflowing row is an error; the loss is c times the rows' sums
  auto finish = [&](index_t bad_row, const std::vector<double>& row_sum) {
    if (bad_row >= 0)
      rlhf::detail::fail(error_kind::non_finite, fn, "student_logits",
                         "row " + std::to_string(bad_row) + ": the divergence overflows");
    jsd_result r;
    r.kept = n;
    double total = 0;
    for (double x : row_sum) total += x;
    r.loss = c * total;
    rlhf::detail::require_finite_result(r.loss, fn, "student_logits", "the divergence overflows");
    return r;
  };
  using V_ = value_t<T>;
  // contiguous float / double rows, no element outputs: the SIMD kernel, each row's three
  // sweeps back to back (backend/cpu/jsd_kernel.hpp); an overflowing row is an error
  // raised after the rows are written (as the fused logits ops)
  if constexpr (std::is_same_v<V_, float> || std::is_same_v<V_, double>) {
    const bool unit = student.stride(1) == 1 && teacher.stride(1) == 1 && (dstudent.null() || dstudent.stride(1) == 1);
    if (unit && elements.null() && cot.null() && !rlhf::detail::overlaps(dstudent, student) &&
        !rlhf::detail::overlaps(dstudent, teacher)) {
      std::vector<double> row_sum(static_cast<std::size_t>(N), 0.0);
      cpu_kernels::jsd_args<V_> a;
      a.z = student.data();
      a.y = teacher.data();
      a.dz = dstudent.null() ? nullptr : dstudent.data();
      a.rows = N;
      a.V = V;
      a.zs = student.stride(0);
      a.ys = teacher.stride(0);
      a.ds = dstudent.null() ? 0 : dstudent.stride(0);
      a.inv_tau = inv_tau;
      a.beta = beta;
      a.c = c;
      a.keep = labels.null() ? nullptr : keep.data();
      a.row_sum = row_sum.data();
      return finish(cpu_kernels::run_jsd(a), row_sum);
    }
  }
  const double l1mb = std::log1p(-beta), lb = std::log(beta);
  // per row, from the sums' pass: both log-sum-exps, sum jsd, sum (cot) G
  std::vector<double> row_sum(static_cast<std::size_t>(N), 0.0), row_ls(row_sum.size()), row_lt(row_sum.size()),
      row_sg(row_sum.size());
  std::vector<unsigned char> bad(static_cast<std::size_t>(N), 0);
  // the sums first (nothing written): an overflow is an error before any output changes
  auto sums = [&](index_t i) {
    const auto ri = static_cast<std::size_t>(i);
    if (keep[ri] == 0) return;
    auto zs = [&](index_t v) { return student(i, v); };
    auto ys = [&](index_t v) { return teacher(i, v); };
    const double ls = detail::lse(zs, V, inv_tau), lt = detail::lse(ys, V, inv_tau);
    double sj = 0, sg = 0;
    for (index_t v = 0; v < V; ++v) {
      double j, g;
      detail::element(static_cast<double>(student(i, v)) * inv_tau - ls,
                      static_cast<double>(teacher(i, v)) * inv_tau - lt, beta, l1mb, lb, j, g);
      sj += j;
      sg += (cot.null() ? 1.0 : static_cast<double>(cot(i, v))) * g;
    }
    row_sum[ri] = sj;
    row_ls[ri] = ls;
    row_lt[ri] = lt;
    row_sg[ri] = sg;
    if (!std::isfinite(sj) || !std::isfinite(sg)) bad[ri] = 1;
  };
  // then the gradient and the elements, from the row's sums
  auto write = [&](index_t i) {
    const auto ri = static_cast<std::size_t>(i);
    for (index_t v = 0; v < V; ++v) {
      double dz = 0, j = 0;
      if (keep[ri] != 0) {
        const double s = static_cast<double>(student(i, v)) * inv_tau - row_ls[ri];
        double g;
        detail::element(s, static_cast<double>(teacher(i, v)) * inv_tau - row_lt[ri], beta, l1mb, lb, j, g);
        const double w = cot.null() ? 1.0 : static_cast<double>(cot(i, v));
        dz = c * (w * g - std::exp(s) * row_sg[ri]) * inv_tau;
      }
      if (!dstudent.null()) dstudent(i, v) = static_cast<V_>(dz);
      if (!elements.null()) elements(i, v) = static_cast<V_>(j);
    }
  };
  const bool heavy = N * V >= (index_t{1} << 15);
  cpu_loops::for_each_row(N, heavy, sums);
  index_t bad_row = -1;
  for (index_t i = N - 1; i >= 0; --i)
    if (bad[static_cast<std::size_t>(i)] != 0) bad_row = i;
  const jsd_result r = finish(bad_row, row_sum);
  if (!dstudent.null() || !elements.null()) cpu_loops::for_each_row(N, heavy, write);
  return r;
}

}  // namespace rlhf::distill
