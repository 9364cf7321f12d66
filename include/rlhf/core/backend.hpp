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

#include "communicator.hpp"

namespace rlhf {

template <class Base, class C>
struct on_ranks;

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
  /// The same execution over the ranks of `comm` (not owned: it outlives
  /// the tag): every reducing op returns the global value on every rank.
  template <dist::communicator C>
  [[nodiscard]] constexpr on_ranks<cpu_t, C> with(const C& comm) const noexcept;
  template <dist::communicator C>
  void with(const C&&) const = delete;  ///< a temporary communicator would dangle
};

inline constexpr cpu_t cpu{};

/// A backend tag over the ranks of a data-parallel group: `Base`'s
/// execution (rlhf::cpu, rlhf::cuda.on(s)) and a non-owning pointer to the
/// communicator. Every reducing op makes its collectives through it and
/// returns the global value, the same bits on every rank; a gradient output
/// receives this rank's rows of d(global loss)/d(input) times size(), so
/// that averaging the ranks' parameter gradients (DDP, FSDP, Horovod's
/// Average) gives the global gradient; `summed_gradients()` drops the
/// factor for engines that sum. docs/distributed.md.
template <class Base, class C>
struct on_ranks {
  using backend_tag = void;
  using space = typename Base::space;
  using base_type = Base;
  using comm_type = C;
  static constexpr const char* name = Base::name;
  Base base{};
  const C* comm = nullptr;
  bool check_finite = true;
  bool summed = false;  ///< gradients without the size() factor

  [[nodiscard]] constexpr on_ranks unchecked() const noexcept {
    on_ranks t = *this;
    t.base = base.unchecked();
    t.check_finite = false;
    return t;
  }
  [[nodiscard]] constexpr on_ranks checked() const noexcept {
    on_ranks t = *this;
    t.base = base.checked();
    t.check_finite = true;
    return t;
  }
  [[nodiscard]] constexpr on_ranks summed_gradients(bool on = true) const noexcept {
    on_ranks t = *this;
    t.summed = on;
    return t;
  }
  /// The factor of the gradient outputs: size(), or 1 with summed_gradients().
  [[nodiscard]] double gradient_factor() const noexcept { return summed ? 1.0 : static_cast<double>(comm->size()); }
};

template <dist::communicator C>
constexpr on_ranks<cpu_t, C> cpu_t::with(const C& comm) const noexcept {
  return on_ranks<cpu_t, C>{*this, &comm, check_finite, false};
}

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
static_assert(backend<on_ranks<cpu_t, dist::single_t>>);

/// A tag over the ranks of a communicator (on_ranks), other than dist::single.
template <class Tag>
inline constexpr bool is_distributed_v = false;
template <class B, class C>
inline constexpr bool is_distributed_v<on_ranks<B, C>> = !dist::is_single_v<C>;

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
template <class B, class C>
inline constexpr bool is_host_backend_v<on_ranks<B, C>> = is_host_backend_v<B>;

}  // namespace rlhf
