// rlhf++ — zero-copy views of xtensor containers (xt::xtensor, xt::xarray,
// xt::adapt results with direct storage).
//
//   rlhf::view<Rank>(x)  -> tensor_view<value_type, Rank> using x's strides
// Include this header only where xtensor is available; the core never needs it.
#pragma once

#include <cstddef>
#include <type_traits>
#include <xtensor/xcontainer.hpp>
#include <xtensor/xtensor.hpp>

#include "../core/check.hpp"
#include "../core/tensor_view.hpp"
#include "../core/viewable.hpp"

namespace rlhf {

namespace detail {
template <std::size_t Rank, class E, class S>
tensor_view<S, Rank> xt_view(E& x, S* data) {
  if (x.dimension() != Rank)
    fail(error_kind::shape, "view", "xtensor",
         "has " + std::to_string(x.dimension()) + " dimensions, expected " + std::to_string(Rank));
  std::array<index_t, Rank> shape{}, strides{};
  for (std::size_t d = 0; d < Rank; ++d) {
    shape[d] = static_cast<index_t>(x.shape()[d]);
    // xtensor stores 0 as the stride of an extent-1 dimension; any value works there.
    strides[d] = static_cast<index_t>(x.strides()[d]);
  }
  return tensor_view<S, Rank>(data, shape, strides);
}
}  // namespace detail

template <std::size_t Rank, class D>
auto view(xt::xcontainer<D>& x) {
  return detail::xt_view<Rank>(x, x.data());
}

template <std::size_t Rank, class D>
auto view(const xt::xcontainer<D>& x) {
  using S = const typename xt::xcontainer<D>::value_type;
  return detail::xt_view<Rank, const xt::xcontainer<D>, S>(x, x.data());
}

/// Fixed-rank xtensor containers are viewable (rlhf::as_view,
/// core/viewable.hpp): a model may return an xt::xtensor<T, 2> to a trainer.
template <class EC, std::size_t N, xt::layout_type L, class Tag>
struct view_adapter<xt::xtensor_container<EC, N, L, Tag>> {
  using X = xt::xtensor_container<EC, N, L, Tag>;
  static auto get(X& x) { return view<N>(x); }
  static auto get(const X& x) { return view<N>(x); }
};

}  // namespace rlhf
