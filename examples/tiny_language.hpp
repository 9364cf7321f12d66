// The tiny language of the LM examples (tiny_lm, dpo, torch_lm): its
// vocabulary, its grammar, the hidden "true" preference and a sampler of
// grammatical sentences.
#pragma once

#include <random>
#include <rlhf/concepts/batch.hpp>
#include <string>
#include <vector>

namespace tiny {

using rlhf::index_t;
using rlhf::token_t;

// ---------------------------------------------------------------------------
// The language: S = NP VERB NP "."   NP = DET [ADJ] NOUN
const std::vector<std::string> vocab = {"<s>", ".",     "the", "a",   "good", "great", "happy", "bad",   "sad",
                                        "big", "small", "cat", "dog", "bird", "kid",   "sees",  "likes", "finds"};
inline constexpr token_t BOS = 0, EOS = 1;
inline bool is_det(token_t t) { return t == 2 || t == 3; }
inline bool is_adj(token_t t) { return t >= 4 && t <= 10; }
inline bool is_positive(token_t t) { return t >= 4 && t <= 6; }
inline bool is_noun(token_t t) { return t >= 11 && t <= 14; }
inline bool is_verb(token_t t) { return t >= 15 && t <= 17; }

inline bool grammatical(const std::vector<token_t>& s) {
  std::size_t i = 0;
  auto np = [&] {
    if (i >= s.size() || !is_det(s[i])) return false;
    ++i;
    if (i < s.size() && is_adj(s[i])) ++i;
    if (i >= s.size() || !is_noun(s[i])) return false;
    ++i;
    return true;
  };
  if (!np()) return false;
  if (i >= s.size() || !is_verb(s[i])) return false;
  ++i;
  if (!np()) return false;
  return i + 1 == s.size() && s[i] == EOS;
}

/// The hidden "true" preference: grammatical sentences, better with a
/// positive word.
inline double true_score(const std::vector<token_t>& s) {
  if (!grammatical(s)) return 0.0;
  for (auto t : s)
    if (is_positive(t)) return 1.0;
  return 0.2;
}

inline std::vector<token_t> sample_sentence(std::mt19937_64& g) {
  std::uniform_int_distribution<int> det(2, 3), adj(4, 10), noun(11, 14), verb(15, 17), coin(0, 1);
  std::vector<token_t> s;
  auto np = [&] {
    s.push_back(det(g));
    if (coin(g)) s.push_back(adj(g));
    s.push_back(noun(g));
  };
  np();
  s.push_back(verb(g));
  np();
  s.push_back(EOS);
  return s;
}

inline std::string text(const std::vector<token_t>& s) {
  std::string out;
  for (auto t : s) out += (out.empty() ? "" : " ") + vocab[static_cast<std::size_t>(t)];
  return out;
}

/// The response of row i of a batch, up to its mask.
template <class Tok>
std::vector<token_t> response(const rlhf::basic_batch<Tok>& b, index_t i) {
  std::vector<token_t> s;
  for (index_t t = 0; t < b.length(); ++t)
    if (b.response_mask(i, t) != 0) s.push_back(static_cast<token_t>(b.responses(i, t)));
  return s;
}

}  // namespace tiny
