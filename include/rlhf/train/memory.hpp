// rlhf++ — where the trainers' buffers live, and how data crosses memory
// spaces and element types at the model boundary.
//
// The trainer's memory space is its backend tag's (rlhf::cpu: host;
// rlhf::cuda: device). Its [B, T] buffers are work_t<W, 2, Space>:
// rlhf::tensor on the host, rlhf::device_tensor on the device, both resized
// in place (storage kept from step to step). Everything that moves data is
// in memory<Space>: memory<host_space> here, memory<device_space> in
// <rlhf/backend/cuda/train.cuh> (a class template, so the device half is
// found wherever the trainer is instantiated, whatever the include order).
//
// bring<X, Space>(tag, x, buf, bytes) is the one boundary operation: x
// itself when it already has element type X and lives in Space (no copy);
// otherwise converted and / or copied into buf, and the bytes counted.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/backend.hpp"
#include "../core/check.hpp"
#include "../concepts/batch.hpp"
#include "../core/tensor_view.hpp"

namespace rlhf {
template <class T, std::size_t Rank>
class device_tensor;  // <rlhf/cuda.hpp>
}  // namespace rlhf

namespace rlhf::train::detail {

template <class T, std::size_t R, class Space>
struct work_sel {
  using type = tensor<T, R>;
};
template <class T, std::size_t R>
struct work_sel<T, R, device_space> {
  using type = device_tensor<T, R>;
};
/// A resizable owning buffer in memory space Space.
template <class T, std::size_t R, class Space>
using work_t = typename work_sel<T, R, Space>::type;

/// Data movement and the elementwise helpers of one memory space.
template <class Space>
struct memory {};

template <>
struct memory<host_space> {
  static constexpr bool available = true;

  /// out = X(x), element by element (x may be strided; out is contiguous).
  template <class Tag, class E, class X, std::size_t R>
  static void convert(Tag, tensor_view<E, R> x, tensor_view<X, R> out) {
    if constexpr (R == 1) {
      for (index_t i = 0; i < x.extent(0); ++i) out(i) = static_cast<X>(x(i));
    } else {
      static_assert(R == 2, "rlhf: the trainers convert rank-1 and rank-2 tensors");
      for (index_t i = 0; i < x.extent(0); ++i)
        for (index_t j = 0; j < x.extent(1); ++j) out(i, j) = static_cast<X>(x(i, j));
    }
  }

  /// out[i, :] = x[rows[i], :].
  template <class Tag, class T>
  static void gather_rows(Tag, tensor_view<const T, 2> x, const std::vector<index_t>& rows, tensor_view<T, 2> out) {
    rlhf::gather_rows(x, rows, out);
  }

  /// An rlhf::error(non_finite) naming `what` when x holds NaN or Inf
  /// (whatever the tag's check_finite: the trainers check every model output).
  template <class Tag, class T, std::size_t R>
  static void require_finite(Tag, const char* fn, const char* what, tensor_view<T, R> x) {
    rlhf::detail::require_finite(fn, what, x);
  }
};

/// The staging a boundary crossing may need: the destination buffer, and the
/// host bytes of a device -> host or host -> device copy.
template <class X, std::size_t R, class Space>
struct boundary_buf {
  work_t<X, R, Space> dst;
  tensor<X, R> host_stage;     ///< host -> device: x converted on the host, then uploaded
  std::vector<std::byte> raw;  ///< device -> host: x's own elements, then converted on the host
};

/// T, as a type that depends on U (so that a discarded branch names the
/// device memory without instantiating it).
template <class T, class U>
struct dependent {
  using type = T;
};

template <class Space>
inline constexpr bool memory_available_v = requires {
  memory<Space>::available;
};

/// x as a view of element type X in memory space Space: x itself when it
/// already is one (no copy), else converted / copied into `buf` and the bytes
/// counted in `bytes`. Both directions of the model boundary: a model's
/// output into the trainer's precision and space, a gradient into the
/// model's element type and space.
template <class X, class Space, class Tag, class E, std::size_t R, class S1>
tensor_view<const X, R, Space> bring(Tag be, tensor_view<E, R, S1> x, boundary_buf<X, R, Space>& buf,
                                     std::size_t& bytes) {
  using E0 = std::remove_const_t<E>;
  const tensor_view<const E0, R, S1> cx = x;
  if constexpr (std::is_same_v<E0, X> && std::is_same_v<S1, Space>) {
    return cx;
  } else {
    static_assert(std::is_same_v<S1, Space> || memory_available_v<typename dependent<device_space, S1>::type>,
                  "rlhf: a model output or gradient in device memory (or a device trainer): #include "
                  "<rlhf/backend/cuda/train.cuh> (nvcc) before <rlhf/rlhf.hpp> (docs/cuda.md)");
    using device_memory = memory<typename dependent<device_space, S1>::type>;
    const auto n = static_cast<std::size_t>(x.size());
    if constexpr (std::is_same_v<S1, Space>) {
      buf.dst.resize(x.shape());
      memory<Space>::convert(be, cx, buf.dst.view());
      bytes += n * (sizeof(E0) + sizeof(X));
    } else if constexpr (std::is_same_v<S1, host_space>) {
      // host -> device: convert (and make contiguous) on the host, one upload
      buf.host_stage.resize(x.shape());
      memory<host_space>::convert(be, cx, buf.host_stage.view());
      buf.dst.resize(x.shape());
      device_memory::upload(be, tensor_view<const X, R>(buf.host_stage.view()), buf.dst.view());
      bytes += n * (sizeof(E0) + (std::is_same_v<E0, X> ? 0 : sizeof(X)));
    } else {
      // device -> host: one download of x's elements, then convert on the host
      buf.raw.resize(n * sizeof(E0));
      const tensor_view<E0, R> staged(reinterpret_cast<E0*>(buf.raw.data()), x.shape());
      device_memory::download(be, cx, staged);
      buf.dst.resize(x.shape());
      memory<host_space>::convert(be, tensor_view<const E0, R>(staged), buf.dst.view());
      bytes += n * (sizeof(E0) + (std::is_same_v<E0, X> ? 0 : sizeof(X)));
    }
    return tensor_view<const X, R, Space>(buf.dst.view());
  }
}

/// A batch's response mask and labels where the trainer's ops run: the batch
/// itself (host metadata for the models) on the host; uploaded once per
/// batch on the device.
template <class Tok, class Space>
class batch_mirror {
 public:
  template <class Tag, class B>
  void set(Tag be, const B& b, std::size_t& bytes) {
    mask_ = bring<double, Space>(be, b.response_mask.view(), mask_buf_, bytes);
    labels_ = bring<Tok, Space>(be, tensor_view<const Tok, 1>(b.responses.data(), {b.size() * b.length()}), labels_buf_,
                                bytes);
  }
  [[nodiscard]] tensor_view<const double, 2, Space> mask() const noexcept { return mask_; }
  /// The responses as one [B*T] vector (row i*T + t is y_t of sequence i).
  [[nodiscard]] tensor_view<const Tok, 1, Space> labels() const noexcept { return labels_; }

 private:
  boundary_buf<double, 2, Space> mask_buf_;
  boundary_buf<Tok, 1, Space> labels_buf_;
  tensor_view<const double, 2, Space> mask_{};
  tensor_view<const Tok, 1, Space> labels_{};
};

}  // namespace rlhf::train::detail
