// rlhf++ — argument aliases that keep template deduction on one argument.
//
// Each op deduces its element type from its first tensor argument
// (`tensor_view<T, R>` with T possibly const); every other argument is
// written with these non-deduced aliases, so views of T and of const T
// convert freely.
#pragma once

#include <type_traits>

#include "tensor_view.hpp"

namespace rlhf {

template <class T>
using value_t = std::remove_const_t<T>;

/// Read-only input view of the same element type as the deduced T.
template <class T, std::size_t R>
using in_view = std::type_identity_t<tensor_view<const value_t<T>, R>>;

/// Writable output view of the same element type as the deduced T.
/// A default-constructed (null) output view means "not requested".
template <class T, std::size_t R>
using out_view = std::type_identity_t<tensor_view<value_t<T>, R>>;

/// The same on device memory (the CUDA backend's overloads).
template <class T, std::size_t R>
using in_dview = std::type_identity_t<tensor_view<const value_t<T>, R, device_space>>;
template <class T, std::size_t R>
using out_dview = std::type_identity_t<tensor_view<value_t<T>, R, device_space>>;

/// The same in memory space S (the backend-generic entry points: S is the
/// tag's space, `typename Tag::space`).
template <class T, std::size_t R, class S>
using in_view_in = std::type_identity_t<tensor_view<const value_t<T>, R, S>>;
template <class T, std::size_t R, class S>
using out_view_in = std::type_identity_t<tensor_view<value_t<T>, R, S>>;

}  // namespace rlhf
