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
basic_rollout<Tok> sample(P& policy, const basic_prompt_batch<Tok>& x, const sampling& s, rng_t& g, step_profile& prof) {
  constexpr const char* fn = "train::rl_trainer::step";
  basic_rollout<Tok> ro = timed(prof.model_s, [&] { return basic_rollout<Tok>(policy.generate(x, s, g)); });
  auto& b = ro.seqs;
  if (b.size() != x.size())
    rlhf::detail::fail(error_kind::shape, fn, "generate",
                       "returned " + std::to_string(b.size()) + " sequences for " + std::to_string(x.size()) + " prompts");
  rlhf::detail::require_nonempty(fn, "generate responses", b.responses.view());
  rlhf::detail::require_same_shape(fn, "response_mask", b.response_mask.view(), "responses", b.responses.view());
  rlhf::detail::require_mask(fn, "response_mask", b.response_mask.view());
  b.prompts = x;  // keep the ids/lengths the trainer assigned
  b.temperature = s.temperature;
  return ro;
}

/// The reward model's scores as token-level scores [B, T] in precision W:
/// a TokenRewardModel's own, or each sequence's score on its last token.
/// Returns the mean sequence score (the logged `reward`).
template <class W, class RM, class B, class Tag>
double score(Tag be, RM& rm, const B& b, tensor<W, 2>& token_scores, step_profile& prof) {
  constexpr const char* fn = "train::rl_trainer::step";
  const index_t B_ = b.size();
  decltype(auto) s = timed(prof.model_s, [&]() -> decltype(auto) { return rm.score(b); });
  tensor<W, 1> seq({B_});
  double mean = 0;
  auto take = [&](const auto& v) {
    if (static_cast<index_t>(v.size()) != B_)
      rlhf::detail::fail(error_kind::shape, fn, "reward score",
                         "returned " + std::to_string(v.size()) + " scores for " + std::to_string(B_) + " sequences");
    for (index_t i = 0; i < B_; ++i) {
      const double x = static_cast<double>(v[static_cast<std::size_t>(i)]);
      if (!std::isfinite(x))
        rlhf::detail::fail(error_kind::non_finite, fn, "reward score",
                           "is not finite for sequence " + std::to_string(i) + " (" + std::to_string(x) + ")");
      seq(i) = static_cast<W>(x);
      mean += x / static_cast<double>(B_);
    }
  };
  if constexpr (std::is_convertible_v<decltype(s), std::vector<double>>) {
    take(std::vector<double>(s));
  } else {
    auto v = host_view_of(s);
    std::vector<double> tmp(static_cast<std::size_t>(v.extent(0)));
    for (index_t i = 0; i < v.extent(0); ++i) tmp[static_cast<std::size_t>(i)] = static_cast<double>(v(i));
    take(tmp);
  }
  token_scores.resize(b.responses.shape());
  if constexpr (TokenRewardModel<RM, B>) {
    decltype(auto) ts = timed(prof.model_s, [&]() -> decltype(auto) { return rm.token_scores(b); });
    auto v = host_view_of(ts);
    rlhf::detail::require_same_shape(fn, "reward token_scores", v, "responses", b.responses.view());
    rlhf::detail::require_finite(fn, "reward token_scores", v);
    for (index_t i = 0; i < v.extent(0); ++i)
      for (index_t t = 0; t < v.extent(1); ++t) token_scores(i, t) = static_cast<W>(v(i, t));
  } else {
    timed(prof.ops_s, [&] { ops::place_at_last_token(be, tensor_view<const W, 1>(seq.view()), b.response_mask.view(), token_scores.view()); });
  }
  return mean;
}

}  // namespace rlhf::train::detail
