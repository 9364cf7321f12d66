// rlhf++ — zero-copy views of Eigen storage.
//
//   rlhf::view(matrix)   any Eigen dense matrix/array/Map/Ref/Block with direct
//                        access -> tensor_view<Scalar, 2> (row/col-major and
//                        inner/outer strides honoured; a column-major matrix
//                        becomes a strided view, no copy)
//   rlhf::view_vector(v) a vector -> tensor_view<Scalar, 1>
// Include this header only where Eigen is available; the core never needs it.
#pragma once

#include <Eigen/Core>
#include <type_traits>

#include "../core/tensor_view.hpp"
#include "../core/viewable.hpp"

namespace rlhf {

namespace detail {
template <class D>
constexpr bool eigen_direct_v = (Eigen::internal::traits<D>::Flags & Eigen::DirectAccessBit) != 0;
}

namespace detail {
/// rows x cols view over Eigen storage; a column-major object becomes a
/// strided view (strides {inner, outer}), a row-major one {outer, inner}.
template <class S, class M>
tensor_view<S, 2> eigen_matrix_view(S* data, const M& m, bool row_major) {
  const index_t outer = m.outerStride(), inner = m.innerStride();
  return tensor_view<S, 2>(data, {static_cast<index_t>(m.rows()), static_cast<index_t>(m.cols())},
                           row_major ? std::array<index_t, 2>{outer, inner} : std::array<index_t, 2>{inner, outer});
}
}  // namespace detail

template <class Derived>
requires detail::eigen_direct_v<Derived>
auto view(Eigen::PlainObjectBase<Derived>& m) { return detail::eigen_matrix_view(m.data(), m, Derived::IsRowMajor); }

template <class Derived>
requires detail::eigen_direct_v<Derived>
auto view(const Eigen::PlainObjectBase<Derived>& m) {
  return detail::eigen_matrix_view(m.data(), m, Derived::IsRowMajor);
}

/// Maps, Refs and Blocks (anything exposing data(), strides and direct access).
template <class Derived>
requires(detail::eigen_direct_v<Derived> && !std::is_base_of_v<Eigen::PlainObjectBase<Derived>, Derived>) auto view(
    Eigen::MapBase<Derived, Eigen::WriteAccessors>& m) {
  return detail::eigen_matrix_view(m.data(), m, Derived::IsRowMajor);
}

template <class Derived>
requires detail::eigen_direct_v<Derived>
auto view_vector(Eigen::DenseBase<Derived>& v) {
  using S = typename Derived::Scalar;
  auto& d = v.derived();
  return tensor_view<S, 1>(d.data(), {static_cast<index_t>(d.size())}, {static_cast<index_t>(d.innerStride())});
}

template <class Derived>
requires detail::eigen_direct_v<Derived>
auto view_vector(const Eigen::DenseBase<Derived>& v) {
  using S = const typename Derived::Scalar;
  const auto& d = v.derived();
  return tensor_view<S, 1>(d.data(), {static_cast<index_t>(d.size())}, {static_cast<index_t>(d.innerStride())});
}

/// Eigen matrices, arrays, Maps and Refs with direct access are viewable
/// (rlhf::as_view, core/viewable.hpp): a model may return them to a trainer.
namespace detail {
template <class X>
struct eigen_direct : std::bool_constant<eigen_direct_v<X>> {};
}  // namespace detail

template <class X>
struct view_adapter<
    X, std::enable_if_t<std::conjunction_v<std::is_base_of<Eigen::DenseBase<X>, X>, detail::eigen_direct<X>>>> {
  static auto get(X& m) { return detail::eigen_matrix_view(m.data(), m, X::IsRowMajor); }
  static auto get(const X& m) {
    using S = const typename X::Scalar;
    return detail::eigen_matrix_view(static_cast<S*>(m.data()), m, X::IsRowMajor);
  }
};

}  // namespace rlhf
