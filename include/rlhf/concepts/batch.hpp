// rlhf++ — the data that crosses the boundary between the library and a
// user's models: token sequences, their masks, and sampling settings.
//
// Layout follows the Python stacks:
//
//   prompts.tokens  [B, P]   row i = prompt i, then padding: the first
//                            lengths[i] entries are the prompt, the rest is
//                            pad (id 0). "Left-aligned": the padding is on the
//                            right of the prompt, not before it.
//   responses       [B, T]   row i = the response to prompt i, then padding
//   response_mask   [B, T]   1 for a generated token, 0 after the response ends
//
//   row i, as a causal LM reads it:
//     [ p_0 ... p_{len-1} | pad ... pad ]   [ y_0 y_1 ... y_{k-1} | pad ... ]
//       prompts.tokens(i, :)                   responses(i, :) (mask 1 on y)
//   Per-token outputs ([B, T] log-probs, entropy, values) are aligned with
//   `responses`: entry (i, t) is about y_t given the prompt and y_<t. The
//   logits path hands over rows in the same order: row i*T + t of [B*T, V]
//   are the next-token logits that predict y_t (the label shift is the
//   model's: the logits of position len-1+t of the unpadded sequence).
//
// Token ids are std::int32_t (rlhf::token_t) or std::int64_t (torch): a model
// declares `using token_type = std::int64_t;` to get basic_batch<int64_t>.
// `temperature` is the sampling temperature of the run: a model that
// computes its own log-probs must return log softmax(z / temperature); the
// library applies it itself on the logits and hidden-state paths.
#pragma once

#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "../core/check.hpp"
#include "../core/tensor_view.hpp"

namespace rlhf {

using token_t = std::int32_t;
/// The random engine every trainer owns and hands to generate(); its state
/// is part of a checkpoint, so runs are reproducible and resumable. A model
/// whose sampler has its own generator seeds it from this engine on every
/// call (e.g. `gen.set_current_seed(g())`), and resume stays bit-identical.
using rng_t = std::mt19937_64;

template <class Tok>
struct basic_prompt_batch {
  using token_type = Tok;
  tensor<Tok, 2> tokens;         ///< [B, P], left-aligned, padded with 0
  std::vector<index_t> lengths;  ///< valid prompt tokens per row
  std::vector<index_t> ids;      ///< dataset index of each prompt (groups, caching)
  [[nodiscard]] index_t size() const noexcept { return tokens.extent(0); }
};

template <class Tok>
struct basic_batch {
  using token_type = Tok;
  basic_prompt_batch<Tok> prompts;
  tensor<Tok, 2> responses;         ///< [B, T]
  tensor<double, 2> response_mask;  ///< [B, T], 1 = generated token
  double temperature = 1.0;         ///< log-probs are asked for at this temperature
  [[nodiscard]] index_t size() const noexcept { return responses.extent(0); }
  [[nodiscard]] index_t length() const noexcept { return responses.extent(1); }
};

struct sampling {
  double temperature = 1.0;
  index_t max_new_tokens = 16;
};

/// What a policy's generate() returns: the sequences and, optionally, the
/// log-probability of every sampled token under the sampling policy
/// ([B, T]; 0 where masked; may be left empty: the trainers recompute the
/// old log-probs, as verl does, and use these only to report the mismatch).
template <class Tok>
struct basic_rollout {
  basic_batch<Tok> seqs;
  tensor<double, 2> logprobs;
};

using prompt_batch = basic_prompt_batch<token_t>;
using batch = basic_batch<token_t>;
using rollout = basic_rollout<token_t>;

/// The token type of a model: M::token_type when it declares one, else int32.
template <class M>
struct token_type_of {
  using type = token_t;
};
template <class M>
requires requires { typename M::token_type; }
struct token_type_of<M> {
  using type = typename M::token_type;
};
template <class M>
using token_type_of_t = typename token_type_of<std::remove_cvref_t<M>>::type;

/// out[i, :] = x[rows[i], :] (host views; out has rows.size() rows).
template <class T>
void gather_rows(tensor_view<const T, 2> x, const std::vector<index_t>& rows, tensor_view<T, 2> out) {
  const auto n = static_cast<index_t>(rows.size());
  for (index_t i = 0; i < n; ++i)
    for (index_t t = 0; t < x.extent(1); ++t) out(i, t) = x(rows[static_cast<std::size_t>(i)], t);
}

/// Rows `rows` of x into `out` (resized in place: no allocation once `out`
/// has held a tensor this large).
template <class T>
void gather_rows(const tensor<T, 2>& x, const std::vector<index_t>& rows, tensor<T, 2>& out) {
  out.resize({static_cast<index_t>(rows.size()), x.extent(1)});
  gather_rows(x.view(), rows, out.view());
}

/// Rows `rows` of a batch into `out`, reusing its storage.
template <class Tok>
void gather_rows(const basic_batch<Tok>& b, const std::vector<index_t>& rows, basic_batch<Tok>& out) {
  gather_rows(b.prompts.tokens, rows, out.prompts.tokens);
  gather_rows(b.responses, rows, out.responses);
  gather_rows(b.response_mask, rows, out.response_mask);
  out.prompts.lengths.clear();
  out.prompts.ids.clear();
  for (auto r : rows) {
    if (!b.prompts.lengths.empty()) out.prompts.lengths.push_back(b.prompts.lengths[static_cast<std::size_t>(r)]);
    if (!b.prompts.ids.empty()) out.prompts.ids.push_back(b.prompts.ids[static_cast<std::size_t>(r)]);
  }
  out.temperature = b.temperature;
}

}  // namespace rlhf
