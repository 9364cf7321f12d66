// rlhf++ — the one exception type of the library.
//
// Every rejected input is an rlhf::error carrying a kind (what class of
// problem) and a message that names the function and the argument.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "named_enum.hpp"

namespace rlhf {

/// shape: inputs of mismatched or invalid shape; non_finite: NaN or Inf in an
/// input; empty: no element to average over where the op needs one; param: a
/// hyper-parameter out of range, or an unknown mode name; device: the
/// accelerator's runtime failed (the message is its own); dist: a
/// collective failed, a peer rank left, or a rank failed with an exception
/// that is not an rlhf::error (docs/distributed.md).
RLHF_NAMED_ENUM(error_kind, (shape, "shape"), (non_finite, "non_finite"), (empty, "empty"), (param, "param"),
                (device, "device"), (dist, "dist"));

class error : public std::runtime_error {
 public:
  error(error_kind kind, std::string argument, const std::string& message, int rank = -1)
      : std::runtime_error(message), kind_(kind), argument_(std::move(argument)), rank_(rank) {}

  [[nodiscard]] error_kind kind() const noexcept { return kind_; }
  /// The argument (or parameter) the error is about; may be empty.
  [[nodiscard]] const std::string& argument() const noexcept { return argument_; }
  /// Under a communicator (tag.with(comm)): the rank whose input raised it,
  /// the same on every rank; -1 for a single process, and for an error every
  /// rank raised from the same reduced values.
  [[nodiscard]] int rank() const noexcept { return rank_; }

 private:
  error_kind kind_;
  std::string argument_;
  int rank_;
};

namespace detail {
/// The calling thread's place in a distributed op (rlhf::dist): its rank
/// and the ranks' count while an op of a tag.with(comm) runs, and whether
/// the op's next collective is still ahead (`pending`: an error now is this
/// rank's own, and travels to the others in that collective).
struct rank_context {
  int rank = -1;
  int size = 0;
  bool pending = false;
  /// The last error this rank raised while `pending` (sent to the others).
  std::optional<error> raised;
};
inline rank_context& this_rank() noexcept {
  thread_local rank_context c;
  return c;
}

[[noreturn]] inline void fail(error_kind kind, const char* fn, const std::string& arg, const std::string& what) {
  std::string m = std::string("rlhf::") + fn + ": " + (arg.empty() ? "" : "argument '" + arg + "' ") + what + " [" +
                  to_string(kind) + "]";
  rank_context& c = this_rank();
  if (c.pending) {  // this rank's own input: the message and the error name it on every rank
    m += " (rank " + std::to_string(c.rank) + " of " + std::to_string(c.size) + ")";
    c.raised.emplace(kind, arg, m, c.rank);
    throw *c.raised;
  }
  throw error(kind, arg, m);
}
}  // namespace detail

}  // namespace rlhf
