// rlhf++ — the collective protocol of every reducing op under a
// communicator: a rank's own error travels in the op's next collective, so
// every rank throws the same rlhf::error and no rank waits for one that
// left.
//
// Every collective of an op is one `exchange`: an allgather of a frame of
// frame_size doubles per rank, [status, payload...], status 0 for a rank
// that is well, 1 + its error kind for one whose input failed. The ranks'
// payloads are then combined in rank order (sums starting from rank 0's
// value, so one rank gives its own bits), the same arithmetic on every
// rank: every reduced value is bitwise the same on every rank, whatever
// the collective library's reduction order. When a status is set, a second
// allgather carries the lowest failing rank's argument and message, and
// every rank throws rlhf::error(kind, argument, message, rank) with them.
//
// An op's own checks before its first collective (shapes, parameters) run
// inside an `op_scope`: while it stands, an error is this rank's own
// (rlhf::detail::fail names the rank), and if it escapes before the op's
// next collective, the scope's destructor makes that collective with the
// error, so the other ranks, waiting in it, throw it too.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "../core/communicator.hpp"
#include "../core/error.hpp"

namespace rlhf::dist {

/// Doubles per rank in one collective of an op: the status and the payload.
inline constexpr std::size_t frame_size = 16;
inline constexpr std::size_t frame_payload = frame_size - 1;

/// A rank's error, to be sent in the next collective.
struct failure {
  bool failed = false;
  error_kind kind = error_kind::param;
  std::string argument, message;

  void set(const rlhf::error& e) {
    failed = true;
    kind = e.kind();
    argument = e.argument();
    message = e.what();
  }
  void set_other(const char* what, int rank, int size) {
    failed = true;
    kind = error_kind::dist;
    argument.clear();
    message = std::string("rlhf: rank ") + std::to_string(rank) + " of " + std::to_string(size) +
              " failed with an exception that is not an rlhf::error: " + what + " [dist]";
  }
};

namespace detail {
/// Bytes of an error's argument and message, one per double (only on the
/// failure path: its size does not matter, and every value is exact).
inline constexpr std::size_t message_doubles = 768;

template <communicator C>
[[noreturn]] void raise_from(const C& c, const std::vector<double>& frames, const failure& mine) {
  const auto P = static_cast<std::size_t>(c.size());
  std::size_t origin = P;
  for (std::size_t r = 0; r < P && origin == P; ++r)
    if (frames[r * frame_size] != 0) origin = r;
  std::array<double, message_doubles> text{};
  if (mine.failed) {
    const std::string s = mine.argument + '\0' + mine.message;
    for (std::size_t i = 0; i < s.size() && i + 1 < text.size(); ++i) text[i] = static_cast<unsigned char>(s[i]);
  }
  std::vector<double> all(P * message_doubles);
  c.allgather(std::span<const double>(text), std::span<double>(all));
  std::string argument, message;
  bool second = false;
  for (std::size_t i = 0; i + 1 < message_doubles; ++i) {
    const double ch = all[origin * message_doubles + i];
    if (ch == 0) {
      if (second) break;
      second = true;
      continue;
    }
    (second ? message : argument) += static_cast<char>(static_cast<unsigned char>(ch));
  }
  const auto kind = static_cast<error_kind>(static_cast<int>(frames[origin * frame_size]) - 1);
  throw rlhf::error(kind, argument, message, static_cast<int>(origin));
}
}  // namespace detail

/// The ranks' frames of one collective.
class frames {
 public:
  frames(std::vector<double> all, std::size_t ranks) : all_(std::move(all)), ranks_(ranks) {}
  [[nodiscard]] std::size_t ranks() const noexcept { return ranks_; }
  /// Payload slot i of rank r.
  [[nodiscard]] double at(std::size_t r, std::size_t i) const { return all_[r * frame_size + 1 + i]; }
  /// Slot i summed over the ranks in rank order (rank 0's own bits for one rank).
  [[nodiscard]] double sum(std::size_t i) const {
    double s = at(0, i);
    for (std::size_t r = 1; r < ranks_; ++r) s += at(r, i);
    return s;
  }
  [[nodiscard]] double max(std::size_t i) const {
    double m = at(0, i);
    for (std::size_t r = 1; r < ranks_; ++r) m = at(r, i) > m ? at(r, i) : m;
    return m;
  }

 private:
  std::vector<double> all_;
  std::size_t ranks_;
};

/// One collective of an op: every rank's status and payload (at most
/// frame_payload doubles, the same count on every rank). Throws the lowest
/// failing rank's error on every rank when one failed; with dist::single,
/// rethrows this rank's own failure.
template <communicator C>
frames exchange(const C& c, const failure& mine, std::span<const double> payload) {
  rlhf::detail::this_rank().pending = false;  // an error from here on is every rank's (or raised in here)
  std::array<double, frame_size> frame{};
  frame[0] = mine.failed ? 1.0 + static_cast<double>(static_cast<int>(mine.kind)) : 0.0;
  for (std::size_t i = 0; i < payload.size() && i < frame_payload; ++i) frame[1 + i] = payload[i];
  if constexpr (is_single_v<C>) {
    if (mine.failed) throw rlhf::error(mine.kind, mine.argument, mine.message);
    return frames(std::vector<double>(frame.begin(), frame.end()), 1);
  } else {
    const auto P = static_cast<std::size_t>(c.size());
    std::vector<double> all(P * frame_size);
    c.allgather(std::span<const double>(frame), std::span<double>(all));
    for (std::size_t r = 0; r < P; ++r)
      if (all[r * frame_size] != 0) detail::raise_from(c, all, mine);
    return frames(std::move(all), P);
  }
}

/// Every rank's rows of `K` doubles, concatenated in rank order.
struct gathered_rows {
  std::vector<double> rows;  ///< n * K values: the ranks' rows in rank order
  std::size_t n = 0;         ///< the rows of every rank
  std::size_t first = 0;     ///< this rank's first row among them
};

/// Gathers every rank's rows (`mine`: this rank's rows of K doubles;
/// `counts.at(r, slot)`: rank r's row count, from the op's exchange) in one
/// allgather of max-count rows per rank.
template <communicator C>
gathered_rows gather_rows(const C& c, const frames& counts, std::size_t slot, std::size_t K,
                          const std::vector<double>& mine) {
  const std::size_t P = counts.ranks();
  const auto width = static_cast<std::size_t>(counts.max(slot)) * K + 1;  // (+1: never an empty buffer)
  std::vector<double> sent(width, 0.0), all(width * P);
  std::copy(mine.begin(), mine.end(), sent.begin());
  c.allgather(std::span<const double>(sent), std::span<double>(all));
  gathered_rows g;
  for (std::size_t r = 0; r < P; ++r) {
    const auto rows = static_cast<std::size_t>(counts.at(r, slot));
    if (r == static_cast<std::size_t>(c.rank())) g.first = g.n;
    g.rows.insert(g.rows.end(), all.begin() + static_cast<std::ptrdiff_t>(r * width),
                  all.begin() + static_cast<std::ptrdiff_t>(r * width + rows * K));
    g.n += rows;
  }
  return g;
}

/// Runs `f` (an op's local work before its collective): under dist::single
/// directly (its errors propagate as they are), else catching this rank's
/// error into `mine`, to be sent in the next exchange.
template <communicator C, class F>
void local_phase(const C& c, failure& mine, F&& f) {
  if constexpr (is_single_v<C>) {
    (void)c, (void)mine;
    f();
  } else {
    try {
      f();
    } catch (const rlhf::error& e) {
      mine.set(e);
    } catch (const std::exception& e) {
      mine.set_other(e.what(), c.rank(), c.size());
    }
  }
}

/// The span of one op call under a communicator (see the top of this file).
/// Nested scopes (an op calling ops) re-arm `pending` at their start and
/// when they end (the enclosing op's next collective is ahead); the
/// outermost restores the thread's context when it ends.
template <communicator C>
class op_scope {
 public:
  explicit op_scope(const C& c) : comm_(&c), uncaught_(std::uncaught_exceptions()) {
    auto& ctx = rlhf::detail::this_rank();
    outer_ = ctx.size == 0;
    ctx.rank = c.rank();
    ctx.size = c.size();
    ctx.pending = true;
    ctx.raised.reset();
  }
  op_scope(const op_scope&) = delete;
  op_scope& operator=(const op_scope&) = delete;
  ~op_scope() {
    auto& ctx = rlhf::detail::this_rank();
    if (ctx.pending && std::uncaught_exceptions() > uncaught_) {
      // this rank's error escapes before the collective its peers wait in:
      // make that collective with it
      failure f;
      if (ctx.raised)
        f.set(*ctx.raised);
      else
        f.set_other("(before the op's first collective)", ctx.rank, ctx.size);
      try {
        (void)exchange(*comm_, f, {});
      } catch (...) {  // the peers' copy of this rank's error: this rank's own is in flight
      }
    }
    if (outer_)
      ctx = rlhf::detail::rank_context{};
    else if (std::uncaught_exceptions() == uncaught_)
      ctx.pending = true;  // back in the enclosing op, before its next collective
  }

 private:
  const C* comm_;
  int uncaught_;
  bool outer_ = false;
};

}  // namespace rlhf::dist
