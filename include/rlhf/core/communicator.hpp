// rlhf++ — the communicator concept of data-parallel ops (rlhf::dist).
//
// A communicator joins the ranks of one data-parallel group: each rank
// holds a shard of the batch, and a reducing op (a loss over the global
// token count, a masked statistic, a group baseline) computes its local
// partials, makes one collective, and finishes with the global values. It
// rides on the backend tag: `rlhf::cpu.with(comm)` (core/backend.hpp).
//
// Only doubles cross ranks (statistics and counts; counts below 2^53 are
// exact). A user's own engine satisfies the concept in a few lines; the
// library has dist::single (below), dist::threads (dist/threads.hpp: ranks
// as threads of one process, for tests), dist::mpi (dist/mpi.hpp) and
// dist::nccl (dist/nccl.hpp). docs/distributed.md has the conventions.
#pragma once

#include <algorithm>
#include <concepts>
#include <span>
#include <type_traits>

namespace rlhf::dist {

/// rank() in [0, size()); allreduce_sum / allreduce_max in place, every
/// rank receiving the same bits; allgather(in, out): out.size() ==
/// size() * in.size(), rank r's `in` at out[r * in.size()], every rank
/// calling with the same in.size(). Each call is a collective: every rank
/// of the group makes it, in the same order.
template <class C>
concept communicator = requires(const C& c, std::span<double> x, std::span<const double> in, std::span<double> out) {
  { c.rank() } -> std::convertible_to<int>;
  { c.size() } -> std::convertible_to<int>;
  c.allreduce_sum(x);
  c.allreduce_max(x);
  c.allgather(in, out);
};

/// One process, one rank: every collective is the identity. `rlhf::cpu`
/// behaves as `rlhf::cpu.with(dist::single)`, and the distributed code path
/// with it is the single-process one.
struct single_t {
  [[nodiscard]] static constexpr int rank() noexcept { return 0; }
  [[nodiscard]] static constexpr int size() noexcept { return 1; }
  static constexpr void allreduce_sum(std::span<double>) noexcept {}
  static constexpr void allreduce_max(std::span<double>) noexcept {}
  static void allgather(std::span<const double> in, std::span<double> out) noexcept {
    std::copy(in.begin(), in.end(), out.begin());
  }
};
inline constexpr single_t single{};
static_assert(communicator<single_t>);

template <class C>
inline constexpr bool is_single_v = std::is_same_v<std::remove_cv_t<C>, single_t>;

}  // namespace rlhf::dist
