// rlhf++ — backend tags.
//
// A tag is the first argument of every op and selects the implementation
// (overloads in backend/<name>/). Tags are small values: they carry
// execution options, never data.
#pragma once

namespace rlhf {

/// Memory spaces of views (tensor_view's third parameter) and of tags.
struct host_space {};
struct device_space {};

/// Host execution. `rlhf::cpu` checks every input for NaN/Inf;
/// `rlhf::cpu.unchecked()` skips that scan for hot loops whose inputs are
/// known to be finite (shape and parameter checks always run).
struct cpu_t {
  using backend_tag = void;   ///< marks a backend tag (an experiment's backend choice)
  using space = host_space;   ///< where its ops read and write
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

template <class Tag>
inline constexpr bool is_host_backend_v = false;
template <>
inline constexpr bool is_host_backend_v<cpu_t> = true;

}  // namespace rlhf
