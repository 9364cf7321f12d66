// rlhf++ — backend tags.
//
// A tag is the first argument of every op and selects the implementation
// (overloads in backend/<name>/). Tags are small values: they carry
// execution options, never data.
#pragma once

namespace rlhf {

/// Host execution. `rlhf::cpu` checks every input for NaN/Inf;
/// `rlhf::cpu.unchecked()` skips that scan for hot loops whose inputs are
/// known to be finite (shape and parameter checks always run).
struct cpu_t {
  bool check_finite = true;
  [[nodiscard]] constexpr cpu_t unchecked() const noexcept { return cpu_t{false}; }
  [[nodiscard]] constexpr cpu_t checked() const noexcept { return cpu_t{true}; }
};

inline constexpr cpu_t cpu{};

template <class Tag>
inline constexpr bool is_host_backend_v = false;
template <>
inline constexpr bool is_host_backend_v<cpu_t> = true;

}  // namespace rlhf
