// rlhf++ — zero-copy views of libtorch tensors, and torch tensors over the
// library's memory.
//
//   rlhf::view<T, Rank>(t)              host tensor -> tensor_view<T, Rank>
//   rlhf::view<T, Rank, device_space>(t) CUDA tensor -> a device view
//   rlhf::to_torch(v)                   tensor_view -> at::Tensor (from_blob, no copy)
//   rlhf::torch_view<T, Rank>{t}        a tensor that is viewable (rlhf::as_view):
//                                       a model can return torch memory to a trainer
//
// T is the element type the caller reads: float, double, c10::Half,
// c10::BFloat16 (or CUDA's __half / __nv_bfloat16 when their headers are
// included first), std::int64_t token ids, std::int32_t, bool, std::uint8_t;
// const T for read-only use. The view keeps torch's strides (in elements),
// so a transposed or sliced tensor is a strided view, never a copy; a
// layout a strided view cannot express (sparse, MKL-DNN, a lazily
// conjugated or negated tensor) or another dtype is an rlhf::error (param)
// naming the argument. The tensor must outlive the view (to_torch: the
// view's storage must outlive the tensor).
//
// Include this header only where libtorch is available (CMake target
// rlhf::torch); no core header includes it. docs/torch.md.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "../core/check.hpp"
#include "../core/tensor_view.hpp"
#include "../core/viewable.hpp"

namespace rlhf {

/// The torch dtype of an element type (specialize for a type of your own
/// with the same bytes).
template <class T, class = void>
struct torch_dtype {};
template <>
struct torch_dtype<float> : std::integral_constant<at::ScalarType, at::kFloat> {};
template <>
struct torch_dtype<double> : std::integral_constant<at::ScalarType, at::kDouble> {};
template <>
struct torch_dtype<c10::Half> : std::integral_constant<at::ScalarType, at::kHalf> {};
template <>
struct torch_dtype<c10::BFloat16> : std::integral_constant<at::ScalarType, at::kBFloat16> {};
template <>
struct torch_dtype<std::int64_t> : std::integral_constant<at::ScalarType, at::kLong> {};
template <>
struct torch_dtype<std::int32_t> : std::integral_constant<at::ScalarType, at::kInt> {};
template <>
struct torch_dtype<std::uint8_t> : std::integral_constant<at::ScalarType, at::kByte> {};
template <>
struct torch_dtype<bool> : std::integral_constant<at::ScalarType, at::kBool> {};
/// long long where it is not std::int64_t (the library's token index type on some ABIs)
template <class T>
struct torch_dtype<T, std::enable_if_t<std::is_same_v<T, long long> && !std::is_same_v<long long, std::int64_t>>>
    : std::integral_constant<at::ScalarType, at::kLong> {};
#if defined(__CUDA_FP16_H__)
template <>
struct torch_dtype<__half> : std::integral_constant<at::ScalarType, at::kHalf> {};
#endif
#if defined(__CUDA_BF16_H__)
template <>
struct torch_dtype<__nv_bfloat16> : std::integral_constant<at::ScalarType, at::kBFloat16> {};
#endif

template <class T>
concept torch_element = requires {
  torch_dtype<std::remove_const_t<T>>::value;
};

namespace detail {
inline std::string torch_shape(const at::Tensor& t) {
  std::string s = "[";
  for (std::int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

/// Everything a strided view needs of `t`, or an rlhf::error naming `arg`.
template <class T, std::size_t Rank, class Space>
void check_torch_view(const at::Tensor& t, const char* fn, const char* arg) {
  using E = std::remove_const_t<T>;
  if (!t.defined()) fail(error_kind::param, fn, arg, "is an undefined tensor");
  if (t.dim() != static_cast<std::int64_t>(Rank))
    fail(error_kind::shape, fn, arg,
         "has " + std::to_string(t.dim()) + " dimensions (shape " + torch_shape(t) + "), the view has " +
             std::to_string(Rank));
  if (t.layout() != at::kStrided)
    fail(
        error_kind::param, fn, arg,
        "is not a strided tensor (sparse or MKL-DNN layout): call .to_dense() first, a strided view cannot express it");
  if (t.is_conj() || t.is_neg())
    fail(error_kind::param, fn, arg,
         "carries a lazy conjugation or negation (its memory is not its values): call .resolve_conj() / "
         ".resolve_neg() first");
  if (t.scalar_type() != torch_dtype<E>::value)
    fail(error_kind::param, fn, arg,
         std::string("has dtype ") + c10::toString(t.scalar_type()) + ", the view reads " +
             c10::toString(torch_dtype<E>::value) + ": convert it (.to(...)) or view it with the matching type");
  if (t.element_size() != static_cast<std::int64_t>(sizeof(E)))
    fail(error_kind::param, fn, arg, "has elements of another size than the view's type");
  if constexpr (std::is_same_v<Space, host_space>) {
    if (!t.device().is_cpu())
      fail(error_kind::param, fn, arg,
           "is on " + t.device().str() +
               ": a host view needs a CPU tensor (rlhf::view<T, R, rlhf::device_space> for "
               "a CUDA one)");
  } else {
    if (!t.device().is_cuda())
      fail(error_kind::param, fn, arg, "is on " + t.device().str() + ": a device view needs a CUDA tensor");
  }
}
}  // namespace detail

/// The view of a torch tensor: same memory, same strides, no copy.
template <torch_element T, std::size_t Rank, class Space = host_space>
tensor_view<T, Rank, Space> view(const at::Tensor& t, const char* arg = "tensor") {
  detail::check_torch_view<T, Rank, Space>(t, "rlhf::view", arg);
  std::array<index_t, Rank> shape{}, strides{};
  for (std::size_t d = 0; d < Rank; ++d) {
    shape[d] = static_cast<index_t>(t.size(static_cast<std::int64_t>(d)));
    strides[d] = static_cast<index_t>(t.stride(static_cast<std::int64_t>(d)));
  }
  T* data = t.numel() == 0 ? nullptr : static_cast<T*>(t.data_ptr());
  return tensor_view<T, Rank, Space>(data, shape, strides);
}

/// A torch tensor over a view's memory (at::from_blob: no copy, the view's
/// strides). The view's storage must outlive the tensor; a view of const
/// elements gives a tensor that must not be written. A device view gives a
/// CUDA tensor on `device` (the current CUDA device by default).
template <class T, std::size_t Rank, class Space>
requires torch_element<T> at::Tensor to_torch(const tensor_view<T, Rank, Space>& v,
                                              at::Device device = std::is_same_v<Space, host_space>
                                                                      ? at::Device(at::kCPU)
                                                                      : at::Device(at::kCUDA)) {
  using E = std::remove_const_t<T>;
  if (v.null() && v.size() != 0)
    detail::fail(error_kind::shape, "rlhf::to_torch", "view",
                 "has no storage (null pointer) but shape " + shape_string(v));
  if (std::is_same_v<Space, host_space> != device.is_cpu())
    detail::fail(error_kind::param, "rlhf::to_torch", "device",
                 "is " + device.str() + " but the view's memory is " +
                     (std::is_same_v<Space, host_space> ? "host" : "device") + " memory");
  std::vector<std::int64_t> sizes(Rank), strides(Rank);
  for (std::size_t d = 0; d < Rank; ++d) {
    sizes[d] = static_cast<std::int64_t>(v.extent(d));
    strides[d] = static_cast<std::int64_t>(v.stride(d));
  }
  const auto opts = at::TensorOptions().dtype(torch_dtype<E>::value).device(device);
  return at::from_blob(const_cast<E*>(v.data()), sizes, strides, opts);
}

/// A torch tensor with a fixed element type and rank: viewable, so a model
/// may return it where a trainer reads a tensor (log-probs, logits,
/// entropies) and the trainer reads torch's memory without a copy. The
/// tensor is checked when it is wrapped (check()) and again when viewed.
template <torch_element T, std::size_t Rank, class Space = host_space>
struct torch_view {
  at::Tensor tensor;
  const torch_view& check(const char* arg = "tensor") const {
    detail::check_torch_view<T, Rank, Space>(tensor, "rlhf::torch_view", arg);
    return *this;
  }
};

template <class T, std::size_t Rank, class Space>
struct view_adapter<torch_view<T, Rank, Space>> {
  static tensor_view<const T, Rank, Space> get(const torch_view<T, Rank, Space>& x) {
    return view<const T, Rank, Space>(x.tensor);
  }
  static tensor_view<T, Rank, Space> get(torch_view<T, Rank, Space>& x) { return view<T, Rank, Space>(x.tensor); }
};

}  // namespace rlhf
