// rlhf++ — the group estimators over the ranks of a communicator
// (rlhf::cpu.with(comm)): GRPO, RLOO, MaxRL and GRPO pass@k, whose row
// values depend only on the rows' scores and group ids.
//
// Each rank sends its rows' (score, group id) to every rank (a count, then
// one allgather of max-B pairs per rank), every rank runs the
// single-process estimator on the concatenated batch (the ranks' rows in
// rank order, as one process would see them), and writes its own rows. So
// a group may be cut anywhere between ranks, and the advantages equal the
// one-process ones bitwise. With every group whole on one rank, calling
// the estimator with the plain rlhf::cpu tag on each rank needs no
// collective and gives the same values (docs/distributed.md).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "grpo.hpp"
#include "group_variants.hpp"
#include "rloo.hpp"

namespace rlhf::adv {

/// The estimators whose values are a function of (score, group id) alone,
/// with their names for errors.
template <class Fn>
inline constexpr const char* gathers_scores = nullptr;
template <>
inline constexpr const char* gathers_scores<grpo_fn> = "adv::grpo";
template <>
inline constexpr const char* gathers_scores<rloo_fn> = "adv::rloo";
template <>
inline constexpr const char* gathers_scores<maxrl_fn> = "adv::maxrl";
template <>
inline constexpr const char* gathers_scores<grpo_passk_fn> = "adv::grpo_passk";

template <class C, class Fn, class T, class M, class I, class Params>
requires(gathers_scores<Fn> != nullptr) void advantage_on(const on_ranks<cpu_t, C>& tag, const Fn& estimator,
                                                          tensor_view<T, 2> token_level_rewards,
                                                          tensor_view<M, 2> response_mask, tensor_view<I, 1> index,
                                                          const Params& p, outputs<value_t<T>> out) {
  const char* fn = gathers_scores<Fn>;
  [[maybe_unused]] const engine::op_scope scope(tag);
  const cpu_t local{tag.check_finite};
  detail::check_rewards(local, fn, token_level_rewards, response_mask, out);
  detail::check_index(fn, index, token_level_rewards);
  const auto s = detail::scores(fn, token_level_rewards);
  const auto& comm = *tag.comm;
  const auto B = static_cast<std::size_t>(token_level_rewards.extent(0));
  const double part[1] = {static_cast<double>(B)};
  const dist::frames g = dist::exchange(comm, dist::failure{}, part);
  std::vector<double> mine(2 * B);
  for (std::size_t b = 0; b < B; ++b) {
    mine[2 * b] = s[b];
    mine[2 * b + 1] = static_cast<double>(index(static_cast<index_t>(b)));
  }
  // the concatenated batch: one row per response, its score as its only token
  const dist::gathered_rows rows = dist::gather_rows(comm, g, 0, 2, mine);
  if (rows.n == 0) rlhf::detail::fail(error_kind::empty, fn, "token_level_rewards", "is empty on every rank");
  const auto n = static_cast<index_t>(rows.n);
  tensor<double, 2> rewards({n, 1}), ones({n, 1}), a({n, 1}), ret({n, 1});
  std::vector<double> ids(rows.n);
  for (std::size_t i = 0; i < rows.n; ++i) {
    rewards(static_cast<index_t>(i), 0) = rows.rows[2 * i];
    ids[i] = rows.rows[2 * i + 1];
    ones(static_cast<index_t>(i), 0) = 1.0;
  }
  estimator(local.unchecked(), tensor_view<const double, 2>(rewards.view()), tensor_view<const double, 2>(ones.view()),
            tensor_view<const double, 1>(ids.data(), {n}), p, outputs<double>{a.view(), ret.view()});
  std::vector<double> own(B);
  for (std::size_t b = 0; b < B; ++b) own[b] = a(static_cast<index_t>(rows.first + b), 0);
  detail::broadcast(fn, own, response_mask, out);
}

}  // namespace rlhf::adv
