// rlhf++ — the exact KL between the policy and the reference over the whole
// vocabulary, from both models' logits.
//
//   KL_i = sum_k p_k (log p_k - log q_k),  p = softmax(z_i / tau), q = softmax(y_i / tau)
//   dKL_i / dz_ik = p_k (log p_k - log q_k - KL_i) / tau
// (verl's kl_penalty "full" needs exactly this). Rows in parallel; no
// softmax is stored.
#pragma once

#include <cmath>

#include "../backend/cpu/loops.hpp"
#include "../core/args.hpp"
#include "../core/backend.hpp"
#include "../core/check.hpp"

namespace rlhf::kl {

/// kl [N] and, when requested, d(sum_i g_i KL_i)/dz with upstream g [N]
/// (null g = ones). `dpolicy_logits` may alias `policy_logits`.
template <class T>
void full_from_logits(cpu_t tag, tensor_view<T, 2> policy_logits, in_view<T, 2> ref_logits, out_view<T, 1> kl,
                      out_view<T, 2> dpolicy_logits = {}, in_view<T, 1> upstream = {}, double temperature = 1.0) {
  constexpr const char* fn = "kl::full_from_logits";
  detail::require_same_shape(fn, "ref_logits", ref_logits, "policy_logits", policy_logits);
  detail::require_nonempty(fn, "policy_logits", policy_logits);
  detail::require_finite(tag, fn, "policy_logits", policy_logits);
  detail::require_finite(tag, fn, "ref_logits", ref_logits);
  detail::require_output(fn, "dpolicy_logits", dpolicy_logits, "policy_logits", policy_logits);
  detail::require_positive_param(temperature, fn, "temperature");
  const index_t N = policy_logits.extent(0), V = policy_logits.extent(1);
  if (!kl.null()) detail::require_extent(fn, "kl", kl, 0, N, "one value per row");
  if (!upstream.null()) detail::require_extent(fn, "upstream", upstream, 0, N, "one gradient per row");
  const double it = 1.0 / temperature;
  cpu_loops::for_each_row(N, V >= 4096, [&](index_t i) {
    double mz = -INFINITY, my = -INFINITY;
    for (index_t k = 0; k < V; ++k) {
      mz = std::fmax(mz, static_cast<double>(policy_logits(i, k)) * it);
      my = std::fmax(my, static_cast<double>(ref_logits(i, k)) * it);
    }
    double sz = 0, sy = 0, szd = 0;  // sum e^{z-mz}, sum e^{y-my}, sum e^{z-mz} (z - y)
    for (index_t k = 0; k < V; ++k) {
      const double z = static_cast<double>(policy_logits(i, k)) * it, y = static_cast<double>(ref_logits(i, k)) * it;
      const double e = std::exp(z - mz);
      sz += e;
      sy += std::exp(y - my);
      szd += e * (z - y);
    }
    const double lz = mz + std::log(sz), ly = my + std::log(sy);
    double k_i = szd / sz - lz + ly;  // sum p (z - y) - (lse_z - lse_y)
    k_i = k_i < 0 ? 0.0 : k_i;        // KL >= 0 (rounding)
    if (!kl.null()) kl(i) = static_cast<value_t<T>>(k_i);
    if (dpolicy_logits.null()) return;
    const double g = upstream.null() ? 1.0 : static_cast<double>(upstream(i));
    for (index_t k = 0; k < V; ++k) {
      const double z = static_cast<double>(policy_logits(i, k)) * it, y = static_cast<double>(ref_logits(i, k)) * it;
      const double lp = z - lz, lq = y - ly;
      dpolicy_logits(i, k) = static_cast<value_t<T>>(g * std::exp(lp) * (lp - lq - k_i) * it);
    }
  });
}

}  // namespace rlhf::kl
