// The data-parallel checks (checks.hpp) over MPI ranks: run by ctest as
// `mpiexec -n N rlhf_mpi_tests` (N = 1..4). Every rank runs every check;
// each prints its failures and the program exits 1 on any rank's failure.
#include <cstdio>
#include <rlhf/dist/mpi.hpp>  // <mpi.h>, C API

#include "checks.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int failed = 0;
  {
    const rlhf::dist::mpi world;
    dist_checks::report rep;
    try {
      dist_checks::run(world, rep);
    } catch (const std::exception& e) {
      rep.failures.push_back(std::string("threw: ") + e.what());
    }
    for (const auto& f : rep.failures) std::printf("rank %d: FAIL %s\n", world.rank(), f.c_str());
    double bad = rep.failures.empty() ? 0.0 : 1.0;
    world.allreduce_max(std::span<double>(&bad, 1));
    failed = bad != 0 ? 1 : 0;
    if (world.rank() == 0)
      std::printf("rlhf dist checks over %d MPI ranks: %d checks per rank, %s\n", world.size(), rep.checks,
                  failed ? "FAILED" : "all passed");
  }
  MPI_Finalize();
  return failed;
}
