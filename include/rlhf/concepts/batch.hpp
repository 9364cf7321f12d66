// rlhf++ — the data that crosses the boundary between the library and a
// user's models: token sequences, their masks, and sampling settings.
//
// Layout follows the Python stacks: prompts [B, P] (left-aligned, with
// per-row lengths), responses [B, T], response_mask [B, T] (1 for a generated
// token, 0 after the end of the response). Per-token log-probabilities and
// values are [B, T] doubles aligned with `responses`.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "../core/check.hpp"
#include "../core/tensor_view.hpp"

namespace rlhf {

using token_t = std::int32_t;
/// The random engine every trainer owns and hands to generate(); its state
/// is part of a checkpoint, so runs are reproducible and resumable.
using rng_t = std::mt19937_64;

struct prompt_batch {
  tensor<token_t, 2> tokens;          ///< [B, P], left-aligned, padded
  std::vector<index_t> lengths;       ///< valid prompt tokens per row
  std::vector<index_t> ids;           ///< dataset index of each prompt (groups, caching)
  [[nodiscard]] index_t size() const noexcept { return tokens.extent(0); }
};

struct batch {
  prompt_batch prompts;
  tensor<token_t, 2> responses;       ///< [B, T]
  tensor<double, 2> response_mask;    ///< [B, T], 1 = generated token
  [[nodiscard]] index_t size() const noexcept { return responses.extent(0); }
  [[nodiscard]] index_t length() const noexcept { return responses.extent(1); }
};

struct sampling {
  double temperature = 1.0;
  index_t max_new_tokens = 16;
};

/// What a policy's generate() returns: the sequences and the log-probability
/// of every sampled token under the sampling policy ([B, T]; 0 where masked).
struct rollout {
  batch seqs;
  tensor<double, 2> logprobs;
};

/// Rows `rows` of a batch (a minibatch), copied.
inline batch select_rows(const batch& b, const std::vector<index_t>& rows) {
  const auto n = static_cast<index_t>(rows.size());
  const index_t P = b.prompts.tokens.extent(1), T = b.length();
  batch out;
  out.prompts.tokens = tensor<token_t, 2>({n, P});
  out.responses = tensor<token_t, 2>({n, T});
  out.response_mask = tensor<double, 2>({n, T});
  for (index_t i = 0; i < n; ++i) {
    const index_t r = rows[static_cast<std::size_t>(i)];
    for (index_t p = 0; p < P; ++p) out.prompts.tokens(i, p) = b.prompts.tokens(r, p);
    for (index_t t = 0; t < T; ++t) {
      out.responses(i, t) = b.responses(r, t);
      out.response_mask(i, t) = b.response_mask(r, t);
    }
    if (!b.prompts.lengths.empty()) out.prompts.lengths.push_back(b.prompts.lengths[static_cast<std::size_t>(r)]);
    if (!b.prompts.ids.empty()) out.prompts.ids.push_back(b.prompts.ids[static_cast<std::size_t>(r)]);
  }
  return out;
}

/// Rows of a [B, T] tensor, copied.
template <class T>
tensor<T, 2> select_rows(const tensor<T, 2>& x, const std::vector<index_t>& rows) {
  const auto n = static_cast<index_t>(rows.size());
  tensor<T, 2> out({n, x.extent(1)});
  for (index_t i = 0; i < n; ++i)
    for (index_t t = 0; t < x.extent(1); ++t) out(i, t) = x(rows[static_cast<std::size_t>(i)], t);
  return out;
}

}  // namespace rlhf
