// rlhf++ — the one exception type of the library.
//
// Every rejected input is an rlhf::error carrying a kind (what class of
// problem) and a message that names the function and the argument.
#pragma once

#include <stdexcept>
#include <string>

#include "named_enum.hpp"

namespace rlhf {

/// shape: inputs of mismatched or invalid shape; non_finite: NaN or Inf in an
/// input; empty: no element to average over where the op needs one; param: a
/// hyper-parameter out of range, or an unknown mode name; device: the
/// accelerator's runtime failed (the message is its own).
RLHF_NAMED_ENUM(error_kind, (shape, "shape"), (non_finite, "non_finite"), (empty, "empty"), (param, "param"),
                (device, "device"));

class error : public std::runtime_error {
 public:
  error(error_kind kind, std::string argument, const std::string& message)
      : std::runtime_error(message), kind_(kind), argument_(std::move(argument)) {}

  [[nodiscard]] error_kind kind() const noexcept { return kind_; }
  /// The argument (or parameter) the error is about; may be empty.
  [[nodiscard]] const std::string& argument() const noexcept { return argument_; }

 private:
  error_kind kind_;
  std::string argument_;
};

namespace detail {
[[noreturn]] inline void fail(error_kind kind, const char* fn, const std::string& arg, const std::string& what) {
  throw error(kind, arg,
              std::string("rlhf::") + fn + ": " + (arg.empty() ? "" : "argument '" + arg + "' ") + what + " [" +
                  to_string(kind) + "]");
}
}  // namespace detail

}  // namespace rlhf
