// Data-parallel ops over ranks that are threads of this process
// (dist::threads): every reducing op on an uneven split equals the
// single-process op on the whole batch (tests/dist/checks.hpp, the same
// checks mpirun runs), the collectives behave, a rank that leaves does not
// hang the others.
#include <rlhf/dist/threads.hpp>

#include "../dist/checks.hpp"
#include "helpers.hpp"

using rlhf::error_kind;

namespace {
void run_checks(int P) {
  rlhf::dist::thread_group group(P, std::chrono::seconds(20));
  std::vector<dist_checks::report> reps(static_cast<std::size_t>(P));
  const auto errors =
      group.run([&](const rlhf::dist::threads& c) { dist_checks::run(c, reps[static_cast<std::size_t>(c.rank())]); });
  for (int r = 0; r < P; ++r) {
    INFO("P = " << P << ", rank " << r);
    if (errors[static_cast<std::size_t>(r)]) {
      try {
        std::rethrow_exception(errors[static_cast<std::size_t>(r)]);
      } catch (const std::exception& e) {
        FAIL("rank " << r << " threw: " << e.what());
      }
    }
    const auto& rep = reps[static_cast<std::size_t>(r)];
    for (const auto& f : rep.failures) UNSCOPED_INFO(f);
    CHECK(rep.failures.empty());
    CHECK(rep.checks > 100);
  }
}
}  // namespace

TEST_CASE("dist: the reducing ops over 1, 2, 3, 4 and 7 thread ranks equal the single-process op") {
  for (int P : {1, 2, 3, 4, 7}) run_checks(P);
}

TEST_CASE("dist::threads: allgather in rank order, allreduce the same bits on every rank") {
  const int P = 3;
  rlhf::dist::thread_group group(P);
  std::vector<std::vector<double>> got(P), sums(P), maxs(P);
  const auto errors = group.run([&](const rlhf::dist::threads& c) {
    const auto r = static_cast<std::size_t>(c.rank());
    const double in[2] = {10.0 * c.rank(), 0.1 * (c.rank() + 1)};
    got[r].resize(6);
    c.allgather(in, got[r]);
    sums[r] = {0.1 * (c.rank() + 1), -1.0 * c.rank()};
    c.allreduce_sum(sums[r]);
    maxs[r] = {static_cast<double>(c.rank()), -static_cast<double>(c.rank())};
    c.allreduce_max(maxs[r]);
  });
  for (const auto& e : errors) REQUIRE(!e);
  for (int r = 0; r < P; ++r) {
    CHECK(got[r] == std::vector<double>{0.0, 0.1, 10.0, 0.2, 20.0, 0.30000000000000004});
    CHECK(sums[r][0] == (0.1 + 0.2) + 0.30000000000000004);  // rank order
    CHECK(sums[r][1] == -3.0);
    CHECK(maxs[r] == std::vector<double>{2.0, 0.0});
  }
}

TEST_CASE("dist::threads: a rank that leaves, or calls with another size, makes the others throw (no hang)") {
  rlhf::dist::thread_group group(2);
  auto errors = group.run([&](const rlhf::dist::threads& c) {
    if (c.rank() == 1) return;  // leaves without the collective
    std::vector<double> x{1.0};
    c.allreduce_sum(x);
  });
  REQUIRE(errors[0]);
  CHECK(!errors[1]);
  try {
    std::rethrow_exception(errors[0]);
  } catch (const rlhf::error& e) {
    CHECK(e.kind() == error_kind::dist);
    CHECK(std::string(e.what()).find("left the group") != std::string::npos);
  }
  errors = group.run([&](const rlhf::dist::threads& c) {
    std::vector<double> x(static_cast<std::size_t>(1 + c.rank()), 1.0);
    c.allreduce_sum(x);
  });
  for (const auto& e : errors) {
    REQUIRE(e);
    try {
      std::rethrow_exception(e);
    } catch (const rlhf::error& err) {
      CHECK(err.kind() == error_kind::dist);
      CHECK(std::string(err.what()).find("different sizes") != std::string::npos);
    }
  }
  CHECK_THROWS_AS(rlhf::dist::thread_group(0), rlhf::error);
}

TEST_CASE("dist::single: rlhf::cpu.with(dist::single) is rlhf::cpu, bit for bit") {
  testing::rng g(11);
  const auto lp = g.normal_mat(4, 6), old = g.normal_mat(4, 6), adv = g.normal_mat(4, 6);
  const auto m = g.prefix_mask(4, 6);
  testing::mat g1(4, 6), g2(4, 6);
  const auto be = rlhf::cpu.with(rlhf::dist::single);
  static_assert(!rlhf::is_distributed_v<decltype(be)>);
  static_assert(rlhf::is_distributed_v<rlhf::on_ranks<rlhf::cpu_t, rlhf::dist::threads>>);
  const auto p = rlhf::ppo::policy_params::verl(rlhf::agg_mode::seq_mean_token_mean);
  const auto a = rlhf::ppo::policy_loss(rlhf::cpu, lp.cview(), old.cview(), adv.cview(), m.cview(), p, g1.view());
  const auto b = rlhf::ppo::policy_loss(be, lp.cview(), old.cview(), adv.cview(), m.cview(), p, g2.view());
  CHECK(a.loss == b.loss);
  CHECK(a.clipfrac == b.clipfrac);
  CHECK(g1.v == g2.v);
  // the single-process counts
  const auto c = rlhf::ops::global_counts(rlhf::cpu, m.cview(), p.agg);
  double rows = 0;
  for (rlhf::index_t i = 0; i < 4; ++i) rows += m(i, 0);
  CHECK(c.global_batch_size.value() == rows);
  CHECK(!c.batch_num_tokens);
}
