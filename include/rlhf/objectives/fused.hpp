// rlhf++ — the policy objectives of the fused logits kernels: per-token
// functors (index, logp, H) -> ops::token_terms for
// ops::fused_token_objective and ops::fused_linear_objective, on both
// backends (the pointers are host pointers with rlhf::cpu, device pointers
// with rlhf::cuda). They are objectives, so they live here rather than in
// ops/ (which only defines the contract, ops::token_terms).
#pragma once

#include "../math/ppo.hpp"
#include "../ops/fused_logits.hpp"

namespace rlhf::ppo {

/// -w_i (A_i logp_i + c H_i): policy gradient with an entropy bonus, w the
/// aggregation weight of token i (e.g. mask / number of valid tokens). The
/// pointers are host pointers with rlhf::cpu and device pointers with rlhf::cuda.
template <class T>
struct pg_entropy_objective {
  const T* advantages;
  const T* weights;
  double entropy_coef;
  RLHF_HD ops::token_terms operator()(index_t i, double logp, double h) const {
    const double w = static_cast<double>(weights[i]), a = static_cast<double>(advantages[i]);
    return {-w * (a * logp + entropy_coef * h), -w * a, -w * entropy_coef};
  }
};

/// w_i (ppo_clip(logp_i, old_i, A_i) - c H_i): the clipped PPO token loss
/// (math/ppo.hpp) with an entropy bonus.
template <class T>
struct ppo_token_objective {
  const T* old_logp;
  const T* advantages;
  const T* weights;
  math::ppo_clip_params clip;
  double entropy_coef = 0;
  RLHF_HD ops::token_terms operator()(index_t i, double logp, double h) const {
    const double w = static_cast<double>(weights[i]);
    const auto t = math::ppo_clip(logp, static_cast<double>(old_logp[i]), static_cast<double>(advantages[i]), clip);
    return {w * (t.loss - entropy_coef * h), w * t.dlogp, -w * entropy_coef};
  }
};

}  // namespace rlhf::ppo

namespace rlhf::ops {
// the names of 0.x
using ppo::pg_entropy_objective;
using ppo::ppo_token_objective;
}  // namespace rlhf::ops
