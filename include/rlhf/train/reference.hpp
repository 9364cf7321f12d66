// rlhf++ — how the reference model follows the policy.
//
//   frozen     the reference never changes (InstructGPT, DPO; the default)
//   hard_sync  every `every` steps: theta_ref <- theta          (TR-DPO hard)
//   ema        every `every` steps: theta_ref <- a theta + (1 - a) theta_ref  (TR-DPO soft)
// Updates need the reference to be BlendableFrom the policy:
// ref.blend_from(policy, a) sets theta_ref <- (1 - a) theta_ref + a theta.
#pragma once

#include <string>

#include "../concepts/model_concepts.hpp"
#include "../core/named_enum.hpp"

namespace rlhf::train {

RLHF_NAMED_ENUM(ref_update, (frozen, "frozen"), (hard_sync, "hard_sync"), (ema, "ema"));

struct reference_policy {
  ref_update kind = ref_update::frozen;
  long long every = 1;  ///< period in steps
  double alpha = 0.5;   ///< EMA weight of the policy (TR-DPO alpha)
};

inline void check_reference_policy(const reference_policy& r, const char* fn) {
  rlhf::detail::require_param(r.every >= 1, fn, "ref.every", "must be >= 1");
  rlhf::detail::require_param(r.alpha > 0 && r.alpha <= 1, fn, "ref.alpha", "must be in (0, 1]");
}

/// A reference update needs a reference that can follow the policy: checked
/// when a trainer is built.
template <class R, class P>
void check_reference_update(const reference_policy& r, const char* fn) {
  check_reference_policy(r, fn);
  if (r.kind != ref_update::frozen && !BlendableFrom<R, P>)
    rlhf::detail::fail(
        error_kind::param, fn, "ref.kind",
        std::string("is ") + to_string(r.kind) +
            " but the reference model has no blend_from(const Policy&, double) (see Blendable in docs/concepts.md)");
}

/// Applies the policy after `step` (1-based); true when the reference changed.
template <class R, class P>
bool update_reference(R& ref, const P& policy, const reference_policy& r, long long step) {
  if (r.kind == ref_update::frozen || step % r.every != 0) return false;
  if constexpr (BlendableFrom<R, P>) {
    ref.blend_from(policy, r.kind == ref_update::hard_sync ? 1.0 : r.alpha);
    return true;
  } else {
    rlhf::detail::fail(
        error_kind::param, "train::update_reference", "ref.kind",
        std::string("is ") + to_string(r.kind) +
            " but the reference model has no blend_from(const Policy&, double) (see Blendable in docs/concepts.md)");
  }
}

}  // namespace rlhf::train
