// rlhf++ — the vocabulary of a run's structure: the enums every layer
// names (aggregation modes, KL estimators, algorithms, KL placements,
// advantage estimators) and their names. Below math/ and ops/, so the
// formulas, the ops, the estimators and the configuration all use one
// definition and no include runs back up (core/choices.hpp adds the tag
// objects of each).
#pragma once

namespace rlhf {

enum class kl_estimator { k1, abs, k2, k3 };

inline const char* to_string(kl_estimator e) noexcept {
  switch (e) {
    case kl_estimator::k1:
      return "k1";
    case kl_estimator::abs:
      return "abs";
    case kl_estimator::k2:
      return "k2";
    case kl_estimator::k3:
      return "k3";
  }
  return "?";
}

enum class agg_mode { token_mean, token_sum, seq_mean_token_sum, seq_mean_token_mean, seq_mean_token_sum_norm };

inline const char* to_string(agg_mode m) noexcept {
  switch (m) {
    case agg_mode::token_mean:
      return "token-mean";
    case agg_mode::token_sum:
      return "token-sum";
    case agg_mode::seq_mean_token_sum:
      return "seq-mean-token-sum";
    case agg_mode::seq_mean_token_mean:
      return "seq-mean-token-mean";
    case agg_mode::seq_mean_token_sum_norm:
      return "seq-mean-token-sum-norm";
  }
  return "?";
}

enum class algorithm { ppo, a2c, dpo };
enum class kl_placement { reward, loss };
enum class advantage_estimator { gae, grpo, rloo, reinforce_pp };

inline const char* to_string(algorithm a) noexcept {
  switch (a) {
    case algorithm::ppo:
      return "ppo";
    case algorithm::a2c:
      return "a2c";
    case algorithm::dpo:
      return "dpo";
  }
  return "?";
}
inline const char* to_string(kl_placement k) noexcept {
  switch (k) {
    case kl_placement::reward:
      return "reward";
    case kl_placement::loss:
      return "loss";
  }
  return "?";
}
inline const char* to_string(advantage_estimator a) noexcept {
  switch (a) {
    case advantage_estimator::gae:
      return "gae";
    case advantage_estimator::grpo:
      return "grpo";
    case advantage_estimator::rloo:
      return "rloo";
    case advantage_estimator::reinforce_pp:
      return "reinforce_pp";
  }
  return "?";
}

}  // namespace rlhf
