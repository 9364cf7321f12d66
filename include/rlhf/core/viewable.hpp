// rlhf++ — "anything the library views without a copy".
//
// A model hands its outputs to the trainers as whatever it computes them in:
// an rlhf::tensor, an rlhf::tensor_view over its own memory (host or device,
// built with rlhf::view(ptr, {N, V}) or by hand), an Eigen matrix or Map
// (adapt/eigen.hpp), an xtensor container (adapt/xtensor.hpp), a torch
// tensor (adapt/torch.hpp). rlhf::as_view(x) gives the tensor_view of any of
// them, never copying.
//
// Extension point: specialize rlhf::view_adapter<X> with
//   static auto get(X& x) -> rlhf::tensor_view<E, R, Space>
// (the adaptor headers do exactly that). A class template rather than a
// free function, so an adaptor included after this header is still found
// where a trainer is instantiated.
#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>

#include "tensor_view.hpp"

namespace rlhf {

template <class X>
struct is_tensor_view : std::false_type {};
template <class T, std::size_t R, class S>
struct is_tensor_view<tensor_view<T, R, S>> : std::true_type {};

/// How to view an X (primary template: not viewable).
template <class X, class = void>
struct view_adapter {};

template <class T, std::size_t R, class S>
struct view_adapter<tensor_view<T, R, S>> {
  static tensor_view<T, R, S> get(const tensor_view<T, R, S>& v) noexcept { return v; }
};
template <class T, std::size_t R>
struct view_adapter<tensor<T, R>> {
  static tensor_view<T, R> get(tensor<T, R>& t) noexcept { return t.view(); }
  static tensor_view<const T, R> get(const tensor<T, R>& t) noexcept { return t.view(); }
};

/// The view of x (no copy). Const objects give views of const elements.
template <class X>
auto as_view(X& x) -> decltype(view_adapter<std::remove_cv_t<X>>::get(x)) {
  return view_adapter<std::remove_cv_t<X>>::get(x);
}

template <class X, std::size_t Rank>
concept viewable = requires(X& x) {
  {rlhf::as_view(x)};
  requires is_tensor_view<decltype(rlhf::as_view(x))>::value;
  requires decltype(rlhf::as_view(x))::rank == Rank;
};

/// The view type of an X, its element type (without const) and its memory space.
template <class X>
using view_of_t = decltype(rlhf::as_view(std::declval<X&>()));
template <class X>
using element_of_t = typename view_of_t<X>::value_type;
template <class X>
using space_of_t = typename view_of_t<X>::space;

}  // namespace rlhf
