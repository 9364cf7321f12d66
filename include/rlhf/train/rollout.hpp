// rlhf++ — the rollout stage of the on-policy trainers: the next prompts,
// the policy's samples, the reward model's scores as token-level rewards.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "../concepts/model_concepts.hpp"
#include "../ops/masked.hpp"
#include "model_calls.hpp"

namespace rlhf::train::detail {

/// The dataset of prompts and the cursor into it (each prompt repeated
/// group_size times, groups in dataset order).
template <class Tok>
struct prompt_source {
  std::vector<std::vector<Tok>> prompts;
  long long cursor = 0;

  void check(const char* fn) const {
    if (prompts.empty()) rlhf::detail::fail(error_kind::empty, fn, "prompts", "is empty: nothing to train on");
    for (std::size_t i = 0; i < prompts.size(); ++i)
      if (prompts[i].empty())
        rlhf::detail::fail(error_kind::empty, fn, "prompts", "holds an empty prompt at index " + std::to_string(i));
  }

  basic_prompt_batch<Tok> next(long long per_step, long long group_size) {
    const index_t B = static_cast<index_t>(per_step * group_size);
    index_t width = 0;
    std::vector<std::size_t> which;
    for (long long i = 0; i < per_step; ++i) {
      which.push_back(static_cast<std::size_t>(cursor % static_cast<long long>(prompts.size())));
      width = std::max(width, static_cast<index_t>(prompts[which.back()].size()));
      ++cursor;
    }
    basic_prompt_batch<Tok> x;
    x.tokens = tensor<Tok, 2>({B, width});
    for (index_t i = 0; i < B; ++i) {
      const auto g = static_cast<std::size_t>(i / group_size);
      const auto& p = prompts[which[g]];
      for (std::size_t t = 0; t < p.size(); ++t) x.tokens(i, static_cast<index_t>(t)) = p[t];
      x.lengths.push_back(static_cast<index_t>(p.size()));
      x.ids.push_back(static_cast<index_t>(which[g]));
    }
    return x;
  }
};

/// The policy's samples for x, checked: one sequence per prompt, a mask of
/// the responses' shape, the prompts (ids, lengths) the trainer assigned.
template <class P, class Tok>
basic_rollout<Tok> sample(P& policy, const basic_prompt_batch<Tok>& x, const sampling& s, rng_t& g,
                          step_profile& prof) {
  constexpr const char* fn = "train::rl_trainer::step";
  basic_rollout<Tok> ro = timed(prof.model_s, [&] { return basic_rollout<Tok>(policy.generate(x, s, g)); });
  auto& b = ro.seqs;
  if (b.size() != x.size())
    rlhf::detail::fail(
        error_kind::shape, fn, "generate",
        "returned " + std::to_string(b.size()) + " sequences for " + std::to_string(x.size()) + " prompts");
  rlhf::detail::require_nonempty(fn, "generate responses", b.responses.view());
  rlhf::detail::require_same_shape(fn, "response_mask", b.response_mask.view(), "responses", b.responses.view());
  rlhf::detail::require_mask(fn, "response_mask", b.response_mask.view());
  b.prompts = x;  // keep the ids/lengths the trainer assigned
  b.temperature = s.temperature;
  return ro;
}

/// The reward buffers of a step, in the trainer's precision W and memory Space.
template <class W, class Space>
struct score_buffers {
  tensor<W, 1> seq;                                 ///< the sequence scores, on the host
  boundary_buf<double, 1, host_space> scores_host;  ///< a model's scores read as doubles
  boundary_buf<W, 1, Space> seq_dev;                ///< ... where the ops run
  boundary_buf<W, 2, Space> token_model;            ///< a TokenRewardModel's token scores, where the ops run
  work_t<W, 2, Space> token_scores;                 ///< [B, T] token-level scores
  work_t<W, 2, Space> components;                   ///< [K, B] a ComponentRewardModel's scores (else empty)
};

/// The reward model's scores as token-level scores [B, T] in precision W:
/// a TokenRewardModel's own, or each sequence's score on its last token.
/// Returns the mean sequence score (the logged `reward`) and leaves the
/// token-level scores in `sb.token_scores`.
template <class W, class RM, class B, class Tag, class Space>
double score(Tag be, RM& rm, const B& b, tensor_view<const double, 2, Space> mask, score_buffers<W, Space>& sb,
             step_profile& prof) {
  constexpr const char* fn = "train::rl_trainer::step";
  const index_t B_ = b.size();
  decltype(auto) s = timed(prof.model_s, [&]() -> decltype(auto) { return rm.score(b); });
  sb.seq.resize({B_});
  double mean = 0;
  auto take = [&](index_t n, auto&& at) {
    if (n != B_)
      rlhf::detail::fail(error_kind::shape, fn, "reward score",
                         "returned " + std::to_string(n) + " scores for " + std::to_string(B_) + " sequences");
    for (index_t i = 0; i < B_; ++i) {
      const double x = static_cast<double>(at(i));
      if (!std::isfinite(x))
        rlhf::detail::fail(error_kind::non_finite, fn, "reward score",
                           "is not finite for sequence " + std::to_string(i) + " (" + std::to_string(x) + ")");
      sb.seq(i) = static_cast<W>(x);
      mean += x / static_cast<double>(B_);
    }
  };
  if constexpr (std::is_convertible_v<decltype(s), std::vector<double>>) {
    const std::vector<double> v(s);
    take(static_cast<index_t>(v.size()), [&](index_t i) { return v[static_cast<std::size_t>(i)]; });
  } else {
    // scores in any viewable form; device scores are read back (B numbers)
    const auto v = bring<double, host_space>(be, rlhf::as_view(s), sb.scores_host, prof.boundary_bytes);
    take(v.extent(0), [&](index_t i) { return v(i); });
  }
  if constexpr (ComponentRewardModel<RM, B>) {
    decltype(auto) cs = timed(prof.model_s, [&]() -> decltype(auto) { return rm.components(b); });
    const auto v = rlhf::as_view(cs);
    rlhf::detail::require_nonempty(fn, "reward components", v);
    rlhf::detail::require_extent(fn, "reward components", v, 1, B_, "one score per sequence (shape [K, B])");
    const auto w = bring<W, Space>(be, v, sb.token_model, prof.boundary_bytes);
    memory<Space>::require_finite(be, fn, "reward components", w);
    sb.components.resize(v.shape());
    memory<Space>::convert(be, w, sb.components.view());
  }
  sb.token_scores.resize(b.responses.shape());
  if constexpr (TokenRewardModel<RM, B>) {
    decltype(auto) ts = timed(prof.model_s, [&]() -> decltype(auto) { return rm.token_scores(b); });
    const auto v = rlhf::as_view(ts);
    rlhf::detail::require_same_shape(fn, "reward token_scores", v, "responses", b.responses.view());
    const auto w = bring<W, Space>(be, v, sb.token_model, prof.boundary_bytes);
    memory<Space>::require_finite(be, fn, "reward token_scores", w);
    memory<Space>::convert(be, w, sb.token_scores.view());
  } else {
    const auto seq = bring<W, Space>(be, tensor_view<const W, 1>(sb.seq.view()), sb.seq_dev, prof.batch_bytes);
    timed(prof.ops_s, [&] { ops::place_at_last_token(be, seq, mask, sb.token_scores.view()); });
  }
  return mean;
}

}  // namespace rlhf::train::detail
