// rlhf++ — the [B, T] objectives whose device version is not (yet) the
// backend-generic entry point over the engine (backend/engine.hpp): A2C
// (its advantage normalisation runs a device moments pass first) and
// ppo::policy_loss_async (the scalars stay on the device until get()).
// ppo::policy_loss, value_loss, entropy_bonus and kl::loss are written once
// in their family headers and run here through objective_engine<cuda_t>
// (engine.cuh); ppo::actor_loss composes them.
#pragma once

#include "../../objectives/a2c.hpp"
#include "../../objectives/ppo.hpp"
#include "common.cuh"
#include "engine.cuh"
#include "masked.cuh"

#include <functional>
#include <memory>

namespace rlhf::cuda_kernels {

// ---- per-token functors ----------------------------------------------------

template <class T>
using ppo_policy_token = ppo::rules::policy_token<in2<T>>;

template <class T>
using value_token = ppo::rules::value_token<in2<T>>;
template <class T>
using identity_token = ppo::rules::identity_token<in2<T>>;

template <class T>
using kl_token_fn = kl::rules::loss_token<in2<T>>;

template <class T>
using a2c_token = a2c::rules::token<in2<T>>;

}  // namespace rlhf::cuda_kernels

namespace rlhf::a2c {

/// a2c::loss on device views (the same contract as the CPU's).
template <class T, class M>
result loss(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> values, in_dview<T, 2> advantages,
            in_dview<T, 2> returns, in_dview<T, 2> entropy, tensor_view<M, 2, device_space> mask, const params& p,
            out_dview<T, 2> dlogp = {}, out_dview<T, 2> dvalues = {}, out_dview<T, 2> dentropy = {}) {
  constexpr const char* fn = "a2c::loss (cuda)";
  detail::check_shapes(fn, logp, values, advantages, returns, entropy, mask, dlogp, dvalues, dentropy);
  detail::check_params(p, fn);
  namespace ck = cuda_kernels;
  const index_t B = logp.extent(0), T_ = logp.extent(1);
  ck::scratch norm(4, tag.stream, fn);
  if (p.normalize_advantage)
    ck::launch_moments(tag, fn, ck::in(advantages), ck::in(mask), B, T_, 0.0, true, norm.data());
  const ck::a2c_token<value_t<T>> f{ck::in(logp),
                                    ck::in(values),
                                    ck::in(advantages),
                                    ck::in(returns),
                                    ck::in(entropy),
                                    p,
                                    p.normalize_advantage ? norm.data() : nullptr};
  const auto s = ck::run_objective<3, 3>(
      tag, fn, f, ck::in(mask), B, T_, agg_params{},
      std::array<ck::out2<value_t<T>>, 3>{ck::out(dlogp), ck::out(dvalues), ck::out(dentropy)}, 1.0, false, "mask");
  if (p.normalize_advantage) detail::require_two(s.n, fn);
  return detail::result_from(s, p, fn);
}

}  // namespace rlhf::a2c

namespace rlhf::ppo {

/// ppo::policy_loss queued on the tag's stream: the gradient is written in
/// stream order and the scalars stay on the device until get() (which waits
/// for the stream and raises the errors that depend on the data).
template <class T, class M>
deferred<policy_result> policy_loss_async(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> old_logp,
                                          in_dview<T, 2> adv, tensor_view<M, 2, device_space> mask,
                                          const policy_params& p, out_dview<T, 2> dlogp = {},
                                          in_dview<T, 2> weights = {}) {
  constexpr const char* fn = "ppo::policy_loss (cuda)";
  detail::check_policy_shapes(fn, logp, old_logp, adv, mask);
  rlhf::detail::require_output(fn, "dlogp", dlogp, "log_prob", logp);
  detail::check_weights_shape(fn, logp, weights);
  check_policy_params(p, fn);
  namespace ck = cuda_kernels;
  const ck::ppo_policy_token<value_t<T>> f{ck::in(logp),
                                           ck::in(old_logp),
                                           ck::in(adv),
                                           ck::in(weights),
                                           {p.clip_low, p.clip_high, p.dual_clip, p.log_ratio_clamp},
                                           stat_rules(p)};
  auto launch = std::make_shared<ck::objective_launch<3>>(
      ck::launch_objective<1, 3>(tag, fn, f, ck::in(mask), logp.extent(0), logp.extent(1), p.agg,
                                 std::array<ck::out2<value_t<T>>, 1>{ck::out(dlogp)}));
  return deferred<policy_result>(
      [launch, p] { return detail::policy_from(launch->finish(), p, "ppo::policy_loss (cuda)"); });
}

}  // namespace rlhf::ppo

namespace rlhf::ppo {

/// ppo::actor_loss on device views: the CPU's composition (ppo.hpp,
/// detail::compose_actor) with the device policy loss, entropy bonus and
/// KL in the loss.
template <class T, class M>
actor_result actor_loss(cuda_t tag, tensor_view<T, 2, device_space> logp, in_dview<T, 2> old_logp, in_dview<T, 2> adv,
                        tensor_view<M, 2, device_space> mask, in_dview<T, 2> entropy, in_dview<T, 2> ref_logp,
                        const actor_params& p, out_dview<T, 2> dlogp = {}, out_dview<T, 2> dentropy = {},
                        in_dview<T, 2> weights = {}) {
  return detail::compose_actor(
      tag, logp, old_logp, adv, mask, entropy, ref_logp, p, dlogp, dentropy, weights,
      [](auto&&... a) { return ppo::policy_loss(a...); }, [](auto&&... a) { return ppo::entropy_bonus(a...); },
      [](auto&&... a) { return kl::loss(a...); });
}

}  // namespace rlhf::ppo
