// rlhf++ — a communicator over MPI (Debian: libopenmpi-dev, openmpi-bin;
// CMake: the rlhf::mpi target, find_package(MPI COMPONENTS C)).
//
//   MPI_Init(&argc, &argv);                 // the program owns MPI's lifetime
//   rlhf::dist::mpi world;                  // MPI_COMM_WORLD, not owned
//   auto be = rlhf::cpu.with(world);
//
// Non-owning: it neither initializes nor finalizes MPI, nor frees the
// communicator. A failing MPI call is rlhf::error(dist) with MPI's message
// (the communicator's error handler is set to MPI_ERRORS_RETURN, so MPI
// reports instead of aborting the job). allreduce sums with MPI_Allreduce
// (MPI's reduction order; MPI asks implementations for the same result on
// every rank), while the library's ops reduce through allgather and sum in
// rank order (dist/collective.hpp), bitwise the same everywhere.
#pragma once

// MPI's C API only (Open MPI's and MPICH's deprecated C++ bindings off)
#ifndef OMPI_SKIP_MPICXX
#  define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#  define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <climits>
#include <span>
#include <string>

#include "../core/communicator.hpp"
#include "../core/error.hpp"

namespace rlhf::dist {

class mpi {
 public:
  /// `comm` must outlive this handle; MPI must be initialized.
  explicit mpi(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) rlhf::detail::fail(error_kind::dist, "dist::mpi", "", "MPI is not initialized (call MPI_Init first)");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] MPI_Comm native() const noexcept { return comm_; }

  void allreduce_sum(std::span<double> x) const {
    check(MPI_Allreduce(MPI_IN_PLACE, x.data(), count(x.size()), MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  }
  void allreduce_max(std::span<double> x) const {
    check(MPI_Allreduce(MPI_IN_PLACE, x.data(), count(x.size()), MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
  }
  void allgather(std::span<const double> in, std::span<double> out) const {
    if (out.size() != in.size() * static_cast<std::size_t>(size_))
      rlhf::detail::fail(error_kind::shape, "dist::mpi::allgather", "out", "must hold size() * in.size() values");
    check(MPI_Allgather(in.data(), count(in.size()), MPI_DOUBLE, out.data(), count(in.size()), MPI_DOUBLE, comm_),
          "MPI_Allgather");
  }
  /// Rank 0's `x` on every rank (the trainers' decisions, a seed).
  void broadcast(std::span<double> x, int root = 0) const {
    check(MPI_Bcast(x.data(), count(x.size()), MPI_DOUBLE, root, comm_), "MPI_Bcast");
  }

 private:
  static int count(std::size_t n) {
    if (n > static_cast<std::size_t>(INT_MAX))
      rlhf::detail::fail(error_kind::param, "dist::mpi", "count", "exceeds MPI's int count");
    return static_cast<int>(n);
  }
  static void check(int status, const char* what) {
    if (status == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    MPI_Error_string(status, text, &len);
    rlhf::detail::fail(error_kind::dist, "dist::mpi", "", std::string(what) + " failed: " + std::string(text, len));
  }
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

static_assert(communicator<mpi>);

}  // namespace rlhf::dist
