// rlhf++ — non-owning strided views and a minimal owning tensor.
//
// tensor_view<T, Rank, Space> is the currency of every op: a pointer, an
// extent per dimension and a stride per dimension (in elements). It never
// owns or allocates. Adaptors (adapt/eigen.hpp, adapt/xtensor.hpp) build
// views over Eigen and xtensor storage without copying; rlhf::view(ptr, {...})
// wraps raw memory.
//
// tensor<T, Rank> is the owning type returned by the convenience overloads:
// contiguous row-major storage in a std::vector, convertible to a view.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "backend.hpp"
#include "config.hpp"
#include "error.hpp"

namespace rlhf {

template <class T, std::size_t Rank, class Space = host_space>
class tensor_view {
  static_assert(Rank >= 1, "rlhf::tensor_view: rank must be at least 1");

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using space = Space;
  static constexpr std::size_t rank = Rank;
  using extents_type = std::array<index_t, Rank>;

  constexpr tensor_view() noexcept : data_(nullptr), shape_{}, strides_{} {}

  /// Strided view; strides in elements.
  constexpr tensor_view(T* data, const extents_type& shape, const extents_type& strides) noexcept
      : data_(data), shape_(shape), strides_(strides) {}

  /// Contiguous row-major view.
  constexpr tensor_view(T* data, const extents_type& shape) noexcept
      : data_(data), shape_(shape), strides_(row_major_strides(shape)) {}

  /// A view of T converts to a view of const T.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  constexpr tensor_view(const tensor_view<U, Rank, Space>& o) noexcept  // NOLINT: implicit by design
      : data_(o.data()), shape_(o.shape()), strides_(o.strides()) {}

  [[nodiscard]] constexpr T* data() const noexcept { return data_; }
  [[nodiscard]] constexpr const extents_type& shape() const noexcept { return shape_; }
  [[nodiscard]] constexpr const extents_type& strides() const noexcept { return strides_; }
  [[nodiscard]] constexpr index_t extent(std::size_t d) const noexcept { return shape_[d]; }
  [[nodiscard]] constexpr index_t stride(std::size_t d) const noexcept { return strides_[d]; }
  [[nodiscard]] constexpr index_t size() const noexcept {
    index_t n = 1;
    for (auto e : shape_) n *= e;
    return n;
  }
  [[nodiscard]] constexpr bool empty() const noexcept { return size() == 0; }
  /// True when no storage is attached (the "not requested" output).
  [[nodiscard]] constexpr bool null() const noexcept { return data_ == nullptr; }
  [[nodiscard]] constexpr bool contiguous() const noexcept { return strides_ == row_major_strides(shape_); }

  template <class... I>
  constexpr T& operator()(I... idx) const noexcept {
    static_assert(sizeof...(I) == Rank, "rlhf::tensor_view: wrong number of indices");
    const index_t ii[] = {static_cast<index_t>(idx)...};
    index_t off = 0;
    for (std::size_t d = 0; d < Rank; ++d) off += ii[d] * strides_[d];
    return data_[off];
  }

  /// Row r of a rank-2 view as a rank-1 view.
  [[nodiscard]] constexpr tensor_view<T, 1, Space> row(index_t r) const noexcept requires(Rank == 2) {
    return {data_ + r * strides_[0], {shape_[1]}, {strides_[1]}};
  }

  /// Swap the two axes of a rank-2 view (no copy).
  [[nodiscard]] constexpr tensor_view transposed() const noexcept requires(Rank == 2) {
    return {data_, {shape_[1], shape_[0]}, {strides_[1], strides_[0]}};
  }

  static constexpr extents_type row_major_strides(const extents_type& shape) noexcept {
    extents_type s{};
    index_t acc = 1;
    for (std::size_t d = Rank; d-- > 0;) {
      s[d] = acc;
      acc *= shape[d];
    }
    return s;
  }

 private:
  T* data_;
  extents_type shape_;
  extents_type strides_;
};

template <class T, std::size_t Rank>
using host_view = tensor_view<T, Rank, host_space>;

/// "[2, 7]" — used in error messages.
template <class T, std::size_t R, class S>
std::string shape_string(const tensor_view<T, R, S>& v) {
  std::string s = "[";
  for (std::size_t d = 0; d < R; ++d) s += (d ? ", " : "") + std::to_string(v.extent(d));
  return s + "]";
}

/// Owning, contiguous, row-major host tensor (the convenience overloads' result).
template <class T, std::size_t Rank>
class tensor {
 public:
  using extents_type = std::array<index_t, Rank>;
  tensor() = default;
  explicit tensor(const extents_type& shape, T fill = T(0)) : shape_(shape) {
    index_t n = 1;
    for (auto e : shape) n *= e;
    data_.assign(static_cast<std::size_t>(n), fill);
  }
  /// New shape; keeps the storage (no allocation when it is large enough).
  /// The values are unspecified afterwards.
  void resize(const extents_type& shape) {
    index_t n = 1;
    for (auto e : shape) n *= e;
    shape_ = shape;
    data_.resize(static_cast<std::size_t>(n));
  }
  [[nodiscard]] const extents_type& shape() const noexcept { return shape_; }
  [[nodiscard]] index_t extent(std::size_t d) const noexcept { return shape_[d]; }
  [[nodiscard]] index_t size() const noexcept { return static_cast<index_t>(data_.size()); }
  [[nodiscard]] T* data() noexcept { return data_.data(); }
  [[nodiscard]] const T* data() const noexcept { return data_.data(); }
  [[nodiscard]] std::vector<T>& storage() noexcept { return data_; }
  [[nodiscard]] const std::vector<T>& storage() const noexcept { return data_; }

  template <class... I>
  T& operator()(I... idx) noexcept {
    return view()(idx...);
  }
  template <class... I>
  const T& operator()(I... idx) const noexcept {
    return view()(idx...);
  }
  [[nodiscard]] tensor_view<T, Rank> view() noexcept { return {data_.data(), shape_}; }
  [[nodiscard]] tensor_view<const T, Rank> view() const noexcept { return {data_.data(), shape_}; }
  operator tensor_view<T, Rank>() noexcept { return view(); }              // NOLINT
  operator tensor_view<const T, Rank>() const noexcept { return view(); }  // NOLINT

 private:
  extents_type shape_{};
  std::vector<T> data_;
};

/// Views over raw host memory: rlhf::view(ptr, {B, T}) (row-major) or with strides.
template <class T, std::size_t Rank>
constexpr tensor_view<T, Rank> view(T* data, const index_t (&shape)[Rank]) noexcept {
  std::array<index_t, Rank> s{};
  for (std::size_t d = 0; d < Rank; ++d) s[d] = shape[d];
  return {data, s};
}
template <class T, std::size_t Rank>
constexpr tensor_view<T, Rank> view(T* data, const index_t (&shape)[Rank], const index_t (&strides)[Rank]) noexcept {
  std::array<index_t, Rank> s{}, st{};
  for (std::size_t d = 0; d < Rank; ++d) {
    s[d] = shape[d];
    st[d] = strides[d];
  }
  return {data, s, st};
}
/// A view with a run-time shape (and optional strides): any sized range of
/// integers, e.g. a std::vector, a std::span or torch's IntArrayRef:
/// rlhf::view<2>(t.data_ptr<float>(), t.sizes(), t.strides()). A shape of
/// another rank, or a negative extent, is an rlhf::error(shape).
template <std::size_t Rank, class T, class Shape>
requires requires(const Shape& s) {
  s.size();
  static_cast<index_t>(s[0]);
}
tensor_view<T, Rank> view(T* data, const Shape& shape) {
  std::array<index_t, Rank> s{};
  if (static_cast<std::size_t>(shape.size()) != Rank)
    detail::fail(error_kind::shape, "view", "shape",
                 "has " + std::to_string(shape.size()) + " extents, expected " + std::to_string(Rank));
  for (std::size_t d = 0; d < Rank; ++d) {
    s[d] = static_cast<index_t>(shape[d]);
    if (s[d] < 0) detail::fail(error_kind::shape, "view", "shape", "has a negative extent");
  }
  return {data, s};
}
template <std::size_t Rank, class T, class Shape, class Strides>
requires requires(const Shape& s, const Strides& st) {
  s.size();
  st.size();
  static_cast<index_t>(s[0]);
  static_cast<index_t>(st[0]);
}
tensor_view<T, Rank> view(T* data, const Shape& shape, const Strides& strides) {
  const auto v = view<Rank>(data, shape);
  if (static_cast<std::size_t>(strides.size()) != Rank)
    detail::fail(error_kind::shape, "view", "strides",
                 "has " + std::to_string(strides.size()) + " entries, expected " + std::to_string(Rank));
  std::array<index_t, Rank> st{};
  for (std::size_t d = 0; d < Rank; ++d) st[d] = static_cast<index_t>(strides[d]);
  return {data, v.shape(), st};
}
// (constrained to non-const T, so that view<const float, 2>(x) of another
// kind of x, such as a torch tensor, never instantiates tensor<const float>)
template <class T, std::size_t Rank>
requires(!std::is_const_v<T>) tensor_view<T, Rank> view(tensor<T, Rank>& t)
noexcept { return t.view(); }
template <class T, std::size_t Rank>
requires(!std::is_const_v<T>) tensor_view<const T, Rank> view(const tensor<T, Rank>& t)
noexcept { return t.view(); }
/// Rank-1 view of a std::vector.
template <class T>
requires(!std::is_const_v<T>) tensor_view<T, 1> view(std::vector<T>& v)
noexcept { return {v.data(), {static_cast<index_t>(v.size())}}; }
template <class T>
requires(!std::is_const_v<T>) tensor_view<const T, 1> view(const std::vector<T>& v)
noexcept { return {v.data(), {static_cast<index_t>(v.size())}}; }

}  // namespace rlhf
