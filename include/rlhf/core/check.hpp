// rlhf++ — argument validation shared by every entry point.
//
// Each helper throws rlhf::error naming the function and the argument.
// Shape and parameter checks always run; the NaN/Inf scan runs when the
// backend tag asks for it (rlhf::cpu does by default).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include "error.hpp"
#include "tensor_view.hpp"

namespace rlhf::detail {

/// A view with a non-zero extent must have storage (a null pointer would be
/// dereferenced).
template <class T, std::size_t R, class S>
void require_storage(const char* fn, const char* arg, const tensor_view<T, R, S>& v) {
  if (v.size() != 0 && v.data() == nullptr) fail(error_kind::shape, fn, arg, "has no storage (null pointer)");
}

/// `v` has the shape of `ref` (and both have storage when not empty).
template <class T, std::size_t R, class S, class U, std::size_t R2, class S2>
void require_same_shape(const char* fn, const char* arg, const tensor_view<T, R, S>& v, const char* ref_arg,
                        const tensor_view<U, R2, S2>& ref) {
  require_storage(fn, ref_arg, ref);
  require_storage(fn, arg, v);
  bool same = R == R2;
  if (same)
    for (std::size_t d = 0; d < R; ++d) same = same && v.extent(d) == ref.extent(d);
  if (!same)
    fail(error_kind::shape, fn, arg,
         "has shape " + shape_string(v) + " but '" + ref_arg + "' has shape " + shape_string(ref));
}

template <class T, std::size_t R, class S>
void require_extent(const char* fn, const char* arg, const tensor_view<T, R, S>& v, std::size_t d, index_t want,
                    const char* what) {
  require_storage(fn, arg, v);
  if (v.extent(d) != want)
    fail(error_kind::shape, fn, arg,
         "has shape " + shape_string(v) + ": dimension " + std::to_string(d) + " must be " + std::to_string(want) +
             " (" + what + ")");
}

template <class T, std::size_t R, class S>
void require_nonempty(const char* fn, const char* arg, const tensor_view<T, R, S>& v) {
  if (v.size() == 0) {
    // a rank of a data-parallel op may hold no rows (an uneven shard): the
    // op requires its global batch to be non-empty, on the reduced counts
    if constexpr (R >= 1)
      if (v.extent(0) == 0 && this_rank().size > 1) return;
    fail(error_kind::empty, fn, arg, "is empty (shape " + shape_string(v) + ")");
  }
  if (v.data() == nullptr) fail(error_kind::shape, fn, arg, "has no storage (null pointer)");
}

template <class T, std::size_t R, class S>
void require_finite(const char* fn, const char* arg, const tensor_view<T, R, S>& v) {
  static_assert(R <= 3, "require_finite: rank > 3 not supported");
  auto bad = [&](double x, std::initializer_list<index_t> at) {
    std::ostringstream os;
    os << "contains a non-finite value (" << x << ") at [";
    bool first = true;
    for (auto i : at) {
      os << (first ? "" : ", ") << i;
      first = false;
    }
    os << "]";
    fail(error_kind::non_finite, fn, arg, os.str());
  };
  if constexpr (R == 1) {
    for (index_t i = 0; i < v.extent(0); ++i)
      if (!std::isfinite(static_cast<double>(v(i)))) bad(static_cast<double>(v(i)), {i});
  } else if constexpr (R == 2) {
    for (index_t i = 0; i < v.extent(0); ++i)
      for (index_t j = 0; j < v.extent(1); ++j)
        if (!std::isfinite(static_cast<double>(v(i, j)))) bad(static_cast<double>(v(i, j)), {i, j});
  } else {
    for (index_t i = 0; i < v.extent(0); ++i)
      for (index_t j = 0; j < v.extent(1); ++j)
        for (index_t k = 0; k < v.extent(2); ++k)
          if (!std::isfinite(static_cast<double>(v(i, j, k)))) bad(static_cast<double>(v(i, j, k)), {i, j, k});
  }
}

/// A computed output must be finite: finite inputs whose result overflows
/// are reported against the argument `arg`, never returned as NaN / Inf.
template <class T, std::size_t R, class S>
void require_finite_output(const char* fn, const char* arg, const tensor_view<T, R, S>& out) {
  static_assert(R == 1 || R == 2, "require_finite_output: rank 1 or 2");
  bool ok = true;
  if constexpr (R == 1) {
    for (index_t i = 0; i < out.extent(0); ++i) ok = ok && std::isfinite(static_cast<double>(out(i)));
  } else {
    for (index_t i = 0; i < out.extent(0); ++i)
      for (index_t j = 0; j < out.extent(1); ++j) ok = ok && std::isfinite(static_cast<double>(out(i, j)));
  }
  if (!ok)
    fail(error_kind::non_finite, fn, arg,
         "gives a non-finite result for these finite inputs (an overflow: values too large for the precision)");
}

/// The finite scan only when the tag asks for it.
template <class Tag, class T, std::size_t R, class S>
void require_finite(const Tag& tag, const char* fn, const char* arg, const tensor_view<T, R, S>& v) {
  if (tag.check_finite) require_finite(fn, arg, v);
}

/// A mask must be finite (always checked: a NaN mask silently poisons every mean).
template <class T, std::size_t R, class S>
void require_mask(const char* fn, const char* arg, const tensor_view<T, R, S>& m) {
  require_finite(fn, arg, m);
}

/// Whether two views share a byte of memory (their address ranges, from the
/// first to the last element, intersect). Empty and null views share none.
template <class T, std::size_t R, class S, class U, std::size_t R2, class S2>
bool overlaps(const tensor_view<T, R, S>& a, const tensor_view<U, R2, S2>& b) {
  auto span = [](const auto& v, const char*& lo, const char*& hi) {
    using E = std::remove_cvref_t<decltype(*v.data())>;
    std::ptrdiff_t neg = 0, pos = 0;
    for (std::size_t d = 0; d < v.shape().size(); ++d) {
      const std::ptrdiff_t off = static_cast<std::ptrdiff_t>(v.extent(d) - 1) * v.stride(d);
      (off < 0 ? neg : pos) += off;
    }
    const char* base = reinterpret_cast<const char*>(v.data());
    lo = base + neg * static_cast<std::ptrdiff_t>(sizeof(E));
    hi = base + (pos + 1) * static_cast<std::ptrdiff_t>(sizeof(E));
  };
  if (a.null() || b.null() || a.size() == 0 || b.size() == 0) return false;
  const char *alo, *ahi, *blo, *bhi;
  span(a, alo, ahi);
  span(b, blo, bhi);
  return alo < bhi && blo < ahi;
}

/// Two outputs (or an output and an input it is not allowed to replace)
/// must not share memory.
template <class T, std::size_t R, class S, class U, std::size_t R2, class S2>
void require_disjoint(const char* fn, const char* arg, const tensor_view<T, R, S>& out, const char* other_arg,
                      const tensor_view<U, R2, S2>& other) {
  if (overlaps(out, other))
    fail(error_kind::shape, fn, arg,
         std::string("shares memory with '") + other_arg + "': give it its own buffer (it is written while '" +
             other_arg + "' is still needed)");
}

/// Whether two elements of `v` are one address (a zero stride, or rows
/// that run into each other): such a view cannot be written element by
/// element. The dimensions sorted by |stride| must each step past all the
/// faster ones.
template <class T, std::size_t R, class S>
bool self_overlapping(const tensor_view<T, R, S>& v) {
  if (v.null() || v.size() <= 1) return false;
  std::array<std::pair<std::ptrdiff_t, std::ptrdiff_t>, R> dims{};  // (|stride|, extent)
  std::size_t n = 0;
  for (std::size_t d = 0; d < R; ++d)
    if (v.extent(d) > 1) {
      const auto st = static_cast<std::ptrdiff_t>(v.stride(d));
      dims[n++] = {st < 0 ? -st : st, static_cast<std::ptrdiff_t>(v.extent(d))};
    }
  std::sort(dims.begin(), dims.begin() + static_cast<std::ptrdiff_t>(n));
  std::ptrdiff_t reach = 0;  // the largest offset the faster dimensions reach
  for (std::size_t k = 0; k < n; ++k) {
    if (dims[k].first <= reach) return true;
    reach += (dims[k].second - 1) * dims[k].first;
  }
  return false;
}

/// An output's extent along `d` (require_extent), and one address per element.
template <class T, std::size_t R, class S>
void require_out_extent(const char* fn, const char* arg, const tensor_view<T, R, S>& v, std::size_t d, index_t want,
                        const char* what) {
  require_extent(fn, arg, v, d, want, what);
  if (self_overlapping(v))
    fail(error_kind::shape, fn, arg,
         "has strides under which two elements share one address (a zero or overlapping stride): an output needs "
         "one address per element");
}

/// An output view, when given, must match its input's shape and name each
/// element once (no zero stride, no rows that overlap).
template <class T, std::size_t R, class S, class U, std::size_t R2, class S2>
void require_output(const char* fn, const char* arg, const tensor_view<T, R, S>& out, const char* ref_arg,
                    const tensor_view<U, R2, S2>& ref) {
  if (out.null() && out.size() != 0)
    fail(error_kind::shape, fn, arg,
         "has no storage (null pointer) but shape " + shape_string(out) + ": pass {} for no output");
  if (out.null()) return;
  require_same_shape(fn, arg, out, ref_arg, ref);
  if (self_overlapping(out))
    fail(error_kind::shape, fn, arg,
         "has strides under which two elements share one address (a zero or overlapping stride): an output needs "
         "one address per element");
}

/// A computed result must be finite: inputs that are finite but extreme
/// (an unclamped log ratio of 1000) are reported, never returned as NaN/Inf.
inline void require_finite_result(double x, const char* fn, const char* arg, const char* hint) {
  if (!std::isfinite(x)) {
    std::ostringstream os;
    os << "gives a non-finite result (" << x << "): " << hint;
    fail(error_kind::non_finite, fn, arg, os.str());
  }
}

inline void require_param(bool ok, const char* fn, const char* param, const std::string& what) {
  if (!ok) fail(error_kind::param, fn, param, what);
}

inline void require_finite_param(double x, const char* fn, const char* param) {
  if (!std::isfinite(x)) {
    std::ostringstream os;
    os << "must be finite (got " << x << ")";
    fail(error_kind::param, fn, param, os.str());
  }
}

inline void require_nonneg_param(double x, const char* fn, const char* param) {
  require_finite_param(x, fn, param);
  if (!(x >= 0)) {
    std::ostringstream os;
    os << "must be >= 0 (got " << x << ")";
    fail(error_kind::param, fn, param, os.str());
  }
}

inline void require_positive_param(double x, const char* fn, const char* param) {
  require_finite_param(x, fn, param);
  if (!(x > 0)) {
    std::ostringstream os;
    os << "must be > 0 (got " << x << ")";
    fail(error_kind::param, fn, param, os.str());
  }
}

}  // namespace rlhf::detail
