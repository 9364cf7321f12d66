// rlhf++ — the CUDA backend's host-visible part: the rlhf::cuda tag (with a
// stream), device views and an RAII device buffer, CUDA errors as
// rlhf::error(device). This header compiles with the host compiler; the
// kernels are in rlhf/backend/cuda/*.cuh and need nvcc (include this header
// and those from a .cu file, and link the rlhf::cuda CMake target).
//
//   rlhf::kl::estimate(rlhf::cuda.on(stream), d_logp, d_ref, params, d_kl, d_dkl);
// is the same call as with rlhf::cpu, on device memory.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <functional>
#include <string>

#include "core/backend.hpp"
#include "core/error.hpp"
#include "core/tensor_view.hpp"
#include "core/viewable.hpp"

struct cublasContext;  // cuBLAS's handle type (cublasHandle_t is cublasContext*)

namespace rlhf {

/// Device execution on a stream (default: the legacy default stream).
/// Inputs are not scanned for NaN/Inf on the device (that would cost a
/// reduction per input); check_finite is kept for interface symmetry.
struct cuda_t {
  using backend_tag = void;    ///< an experiment's backend choice: rlhf::experiment<..., rlhf::cuda>
  using space = device_space;  ///< its ops read and write device memory
  static constexpr const char* name = "cuda";
  cudaStream_t stream = nullptr;
  bool check_finite = false;
  /// The cuBLAS handle of the fused linear ops (not owned); null: one per
  /// host thread, created on first use.
  cublasContext* blas = nullptr;
  /// The logits kernels may keep a row of long vocabularies in shared
  /// memory (docs/cuda.md); false reads it twice from L2 / HBM instead.
  bool row_cache = true;

  [[nodiscard]] constexpr cuda_t on(cudaStream_t s) const noexcept {
    cuda_t t = *this;
    t.stream = s;
    return t;
  }
  [[nodiscard]] constexpr cuda_t unchecked() const noexcept {
    cuda_t t = *this;
    t.check_finite = false;
    return t;
  }
  /// The same tag with cuBLAS handle `h` (rlhf::cublas_handle::get(), or your own).
  [[nodiscard]] constexpr cuda_t with(cublasContext* h) const noexcept {
    cuda_t t = *this;
    t.blas = h;
    return t;
  }
  [[nodiscard]] constexpr cuda_t cache_rows(bool on) const noexcept {
    cuda_t t = *this;
    t.row_cache = on;
    return t;
  }
};

inline constexpr cuda_t cuda{};
static_assert(backend<cuda_t>);

template <class T, std::size_t Rank>
using device_view = tensor_view<T, Rank, device_space>;

namespace detail {
/// Turns a CUDA status into rlhf::error(device) carrying CUDA's message.
inline void check_cuda(cudaError_t status, const char* fn, const char* what) {
  if (status != cudaSuccess)
    fail(error_kind::device, fn, "",
         std::string(what) + " failed: " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}
}  // namespace detail

/// True when a CUDA device can run kernels here (any runtime error, such as
/// no driver, counts as "no device").
inline bool cuda_available() noexcept {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/// Owning device memory (RAII), movable, not copyable.
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t n) : n_(n) {
    if (n > 0)
      detail::check_cuda(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)), "device_buffer", "cudaMalloc");
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept : p_(o.p_), n_(o.n_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_;
      n_ = o.n_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  ~device_buffer() { release(); }

  [[nodiscard]] T* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }

  void copy_from_host(const T* host, std::size_t n) {
    detail::check_cuda(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice), "device_buffer",
                       "cudaMemcpy (to device)");
  }
  void copy_to_host(T* host, std::size_t n) const {
    detail::check_cuda(cudaMemcpy(host, p_, n * sizeof(T), cudaMemcpyDeviceToHost), "device_buffer",
                       "cudaMemcpy (to host)");
  }
  /// Row-major [d0, d1] device view of the buffer.
  [[nodiscard]] device_view<T, 2> view(index_t d0, index_t d1) const noexcept { return {p_, {d0, d1}}; }
  [[nodiscard]] device_view<T, 1> view(index_t d0) const noexcept { return {p_, {d0}}; }

 private:
  void release() noexcept {
    if (p_) cudaFree(p_);
    p_ = nullptr;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

/// Owning, contiguous, row-major device tensor (the trainers' [B, T] buffers
/// on rlhf::cuda): resize() keeps the storage when it is large enough, so a
/// buffer reused from step to step allocates once. Values are unspecified
/// after a resize.
template <class T, std::size_t Rank>
class device_tensor {
 public:
  using extents_type = std::array<index_t, Rank>;
  device_tensor() = default;
  explicit device_tensor(const extents_type& shape) { resize(shape); }
  void resize(const extents_type& shape) {
    index_t n = 1;
    for (auto e : shape) n *= e;
    if (static_cast<std::size_t>(n) > buf_.size()) buf_ = device_buffer<T>(static_cast<std::size_t>(n));
    shape_ = shape;
    n_ = n;
  }
  [[nodiscard]] const extents_type& shape() const noexcept { return shape_; }
  [[nodiscard]] index_t extent(std::size_t d) const noexcept { return shape_[d]; }
  [[nodiscard]] index_t size() const noexcept { return n_; }
  [[nodiscard]] T* data() const noexcept { return buf_.data(); }
  [[nodiscard]] tensor_view<T, Rank, device_space> view() noexcept { return {buf_.data(), shape_}; }
  [[nodiscard]] tensor_view<const T, Rank, device_space> view() const noexcept { return {buf_.data(), shape_}; }

 private:
  device_buffer<T> buf_;
  extents_type shape_{};
  index_t n_ = 0;
};

template <class T, std::size_t R>
struct view_adapter<device_tensor<T, R>> {
  static tensor_view<T, R, device_space> get(device_tensor<T, R>& t) noexcept { return t.view(); }
  static tensor_view<const T, R, device_space> get(const device_tensor<T, R>& t) noexcept { return t.view(); }
};

/// The scalar results of an op queued on a stream (`*_async` overloads):
/// get() waits for the stream and returns them (or raises the op's
/// data-dependent errors). The outputs written by the op are valid in the
/// stream's order even before get().
template <class R>
class deferred {
 public:
  explicit deferred(std::function<R()> finish) : finish_(std::move(finish)) {}
  R get() const { return finish_(); }

 private:
  std::function<R()> finish_;
};

/// Temporary device memory ordered on a stream (cudaMallocAsync /
/// cudaFreeAsync: from the device's memory pool, no device-wide
/// synchronization). The ops use it for their scratch; it is freed in the
/// stream's order, after the work queued before its destruction.
template <class T>
class stream_buffer {
 public:
  stream_buffer() = default;
  stream_buffer(std::size_t n, cudaStream_t s, const char* fn = "stream_buffer") : n_(n), s_(s) {
    if (n > 0)
      detail::check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&p_), n * sizeof(T), s), fn, "cudaMallocAsync");
  }
  stream_buffer(const stream_buffer&) = delete;
  stream_buffer& operator=(const stream_buffer&) = delete;
  stream_buffer(stream_buffer&& o) noexcept : p_(o.p_), n_(o.n_), s_(o.s_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  stream_buffer& operator=(stream_buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_;
      n_ = o.n_;
      s_ = o.s_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  ~stream_buffer() { release(); }

  [[nodiscard]] T* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }
  /// Host to device on the buffer's stream (the host memory may be reused on return: pageable copies are staged).
  void upload(const T* host, std::size_t n, const char* fn = "stream_buffer") {
    if (n > 0)
      detail::check_cuda(cudaMemcpyAsync(p_, host, n * sizeof(T), cudaMemcpyHostToDevice, s_), fn,
                         "cudaMemcpyAsync (to device)");
  }
  /// Device to host after the stream's queued work (synchronizes the stream).
  void download(T* host, std::size_t n, const char* fn = "stream_buffer") const {
    if (n > 0)
      detail::check_cuda(cudaMemcpyAsync(host, p_, n * sizeof(T), cudaMemcpyDeviceToHost, s_), fn,
                         "cudaMemcpyAsync (to host)");
    detail::check_cuda(cudaStreamSynchronize(s_), fn, "cudaStreamSynchronize");
  }

 private:
  void release() noexcept {
    if (p_) cudaFreeAsync(p_, s_);
    p_ = nullptr;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
  cudaStream_t s_ = nullptr;
};

}  // namespace rlhf
