// rlhf++ — the exact KL between the policy and the reference over the whole
// vocabulary, from both models' logits.
//
//   KL_i = sum_k p_k (log p_k - log q_k),  p = softmax(z_i / tau), q = softmax(y_i / tau)
//   dKL_i / dz_ik = p_k (log p_k - log q_k - KL_i) / tau
// (verl's kl_penalty "full" needs exactly this). Rows in parallel; no
// softmax is stored.
#pragma once

#include <cmath>
#include <string>
#include <vector>

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
  if (!kl.null()) detail::require_out_extent(fn, "kl", kl, 0, N, "one value per row");
  if (!upstream.null()) {
    detail::require_extent(fn, "upstream", upstream, 0, N, "one gradient per row");
    detail::require_finite(tag, fn, "upstream", upstream);
  }
  if (!kl.null()) detail::require_disjoint(fn, "kl", kl, "policy_logits", policy_logits);
  if (!kl.null()) detail::require_disjoint(fn, "kl", kl, "ref_logits", ref_logits);
  // dpolicy_logits may be policy_logits itself (each row is read before it is written), not ref_logits
  detail::require_disjoint(fn, "dpolicy_logits", dpolicy_logits, "ref_logits", ref_logits);
  std::vector<unsigned char> bad(static_cast<std::size_t>(N), 0);
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
      szd += e > 0 ? e * (z - y) : 0.0;  // a token of probability 0 adds nothing (not 0 * Inf)
    }
    const double lz = mz + std::log(sz), ly = my + std::log(sy);
    double k_i = szd / sz - lz + ly;  // sum p (z - y) - (lse_z - lse_y)
    k_i = k_i < 0 ? 0.0 : k_i;        // KL >= 0 (rounding)
    if (!kl.null()) kl(i) = static_cast<value_t<T>>(k_i);
    value_t<T> probe = static_cast<value_t<T>>(k_i) - static_cast<value_t<T>>(k_i);  // 0 while finite
    if (!dpolicy_logits.null()) {
      const double g = upstream.null() ? 1.0 : static_cast<double>(upstream(i));
      for (index_t k = 0; k < V; ++k) {
        const double z = static_cast<double>(policy_logits(i, k)) * it, y = static_cast<double>(ref_logits(i, k)) * it;
        const double lp = z - lz, lq = y - ly, pk = std::exp(lp);
        const auto d = static_cast<value_t<T>>(pk > 0 ? g * pk * (lp - lq - k_i) * it : 0.0);
        probe += d - d;
        dpolicy_logits(i, k) = d;
      }
    }
    bad[static_cast<std::size_t>(i)] = probe == 0 ? 0 : 1;
  });
  for (index_t i = 0; i < N; ++i)
    if (bad[static_cast<std::size_t>(i)] != 0)
      detail::fail(error_kind::non_finite, fn, "policy_logits",
                   "row " + std::to_string(i) +
                       ": the KL or its gradient overflows for these finite logits (|logits| / temperature too large)");
}

}  // namespace rlhf::kl
