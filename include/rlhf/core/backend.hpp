// rlhf++ — backend tags.
//
// A tag is the first argument of every op and selects the implementation:
// the CPU overloads are in the layer headers (ops/, kl/, advantage/,
// objectives/; their loops on the engine of backend/cpu/), the CUDA ones in
// backend/cuda/. Tags are small values: they carry execution options,
// never data. `rlhf::backend<B>` is the concept every tag satisfies.
#pragma once

#include <concepts>
#include <type_traits>

namespace rlhf {

/// Memory spaces of views (tensor_view's third parameter) and of tags.
struct host_space {};
struct device_space {};

/// Host execution. `rlhf::cpu` checks every input for NaN/Inf;
/// `rlhf::cpu.unchecked()` skips that scan for hot loops whose inputs are
/// known to be finite (shape and parameter checks always run).
struct cpu_t {
  using backend_tag = void;  ///< marks a backend tag (an experiment's backend choice)
  using space = host_space;  ///< where its ops read and write
  static constexpr const char* name = "cpu";
  bool check_finite = true;
  [[nodiscard]] constexpr cpu_t unchecked() const noexcept { return cpu_t{false}; }
  [[nodiscard]] constexpr cpu_t checked() const noexcept { return cpu_t{true}; }
};

inline constexpr cpu_t cpu{};

/// The memory space a tag's ops work on (rlhf::cpu: host; rlhf::cuda: device).
template <class Tag>
using space_of_tag_t = typename Tag::space;

/// "cpu", "cuda": the tag's name in records and experiment names.
template <class Tag>
constexpr const char* backend_name() {
  return Tag::name;
}

/// A backend tag: a copyable value that marks itself (`backend_tag`),
/// names the memory space its ops read and write (`space`) and its name.
template <class B>
concept backend = std::copyable<B> && requires {
  typename B::backend_tag;
  typename B::space;
  { B::name } -> std::convertible_to<const char*>;
};

static_assert(backend<cpu_t>);

namespace detail {
template <class>
inline constexpr bool not_a_backend = false;
}  // namespace detail

/// A wrong first argument of op `name` (not a backend tag) fails with one
/// sentence instead of a list of overloads: a deleted-in-effect catch-all,
/// constrained to non-tags, so it never competes with a real overload.
#define RLHF_BACKEND_FIRST(name)                                                                      \
  template <class Tag, class... Args>                                                                 \
  requires(!::rlhf::backend<std::remove_cvref_t<Tag>>) void name(Tag&&, Args&&...) {                  \
    static_assert(::rlhf::detail::not_a_backend<Tag>, #name                                           \
                  ": the first argument must be a backend tag: rlhf::cpu, rlhf::cpu.unchecked(), or " \
                  "rlhf::cuda (<rlhf/cuda.hpp>)");                                                    \
  }

template <class Tag>
inline constexpr bool is_host_backend_v = false;
template <>
inline constexpr bool is_host_backend_v<cpu_t> = true;

}  // namespace rlhf
