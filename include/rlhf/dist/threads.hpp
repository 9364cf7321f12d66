// rlhf++ — ranks as threads of one process: a communicator for tests (and
// for trying a data-parallel program without MPI), under AddressSanitizer,
// UndefinedBehaviorSanitizer and ThreadSanitizer.
//
//   rlhf::dist::thread_group group(4);
//   auto errors = group.run([&](const rlhf::dist::threads& comm) {
//     auto be = rlhf::cpu.with(comm);           // this rank's tag
//     ... every rank calls the same ops on its shard ...
//   });
//
// Every collective is an allgather through the group's memory; the sums
// and maxima of allreduce are taken in rank order by every rank, so each
// rank gets the same bits. A rank that leaves the group (its function
// returns or throws) while the others wait in a collective makes them throw
// rlhf::error(dist) instead of waiting forever; so does a wait longer than
// the group's timeout (a protocol error: ranks calling different ops).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "../core/communicator.hpp"
#include "../core/error.hpp"

namespace rlhf::dist {

class thread_group;

/// One rank's handle on a thread_group (a communicator; copyable, not owning).
class threads {
 public:
  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept;
  void allgather(std::span<const double> in, std::span<double> out) const;
  void allreduce_sum(std::span<double> x) const { reduce(x, false); }
  void allreduce_max(std::span<double> x) const { reduce(x, true); }
  /// The collectives this rank has made (for tests that count them).
  [[nodiscard]] long collectives() const noexcept;

 private:
  friend class thread_group;
  threads(thread_group* g, int r) : group_(g), rank_(r) {}
  void reduce(std::span<double> x, bool max) const;
  thread_group* group_;
  int rank_;
};

/// N ranks in one process.
class thread_group {
 public:
  explicit thread_group(int ranks, std::chrono::seconds timeout = std::chrono::seconds(120))
      : n_(ranks),
        timeout_(timeout),
        slots_(static_cast<std::size_t>(ranks)),
        counts_(static_cast<std::size_t>(ranks)) {
    if (ranks < 1) rlhf::detail::fail(error_kind::param, "dist::thread_group", "ranks", "must be >= 1");
  }
  thread_group(const thread_group&) = delete;
  thread_group& operator=(const thread_group&) = delete;

  [[nodiscard]] int size() const noexcept { return n_; }
  /// Rank r's communicator (0 <= r < size()).
  [[nodiscard]] threads rank(int r) {
    if (r < 0 || r >= n_) rlhf::detail::fail(error_kind::param, "dist::thread_group::rank", "r", "out of range");
    return threads(this, r);
  }

  /// Runs f(comm) on size() threads, one per rank, and waits for them all;
  /// returns each rank's exception (null where it returned). A rank that
  /// leaves makes the collectives the others wait in throw.
  template <class F>
  std::vector<std::exception_ptr> run(F&& f) {
    {
      std::lock_guard<std::mutex> lk(m_);
      left_ = 0;
      arrived_ = 0;
    }
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n_));
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r)
      pool.emplace_back([this, r, &f, &errors] {
        try {
          f(threads(this, r));
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
        }
        std::lock_guard<std::mutex> lk(m_);
        ++left_;
        cv_.notify_all();
      });
    for (auto& t : pool) t.join();
    return errors;
  }

 private:
  friend class threads;

  [[noreturn]] static void lost(int rank, const std::string& why) {
    throw rlhf::error(error_kind::dist, "",
                      "rlhf::dist::threads: rank " + std::to_string(rank) + ": " + why + " [dist]");
  }

  void gather(int r, std::span<const double> in, std::span<double> out) {
    if (out.size() != in.size() * static_cast<std::size_t>(n_))
      rlhf::detail::fail(error_kind::shape, "dist::threads::allgather", "out", "must hold size() * in.size() values");
    std::unique_lock<std::mutex> lk(m_);
    const auto ri = static_cast<std::size_t>(r);
    slots_[ri].assign(in.begin(), in.end());
    ++counts_[ri];
    if (++arrived_ == n_) {  // the last rank in publishes the round
      mismatch_ = false;
      for (const auto& s : slots_) mismatch_ = mismatch_ || s.size() != in.size();
      gathered_.clear();
      for (const auto& s : slots_) gathered_.insert(gathered_.end(), s.begin(), s.end());
      arrived_ = 0;
      ++round_;
      cv_.notify_all();
    } else {
      const long mine = round_;
      const bool done = cv_.wait_for(lk, timeout_, [&] { return round_ != mine || left_ > 0; });
      if (round_ == mine) {
        --arrived_;
        lost(r, done ? "a rank left the group while this one waited in a collective"
                     : "a collective waited past the group's timeout (ranks calling different ops?)");
      }
    }
    if (mismatch_) lost(r, "the ranks called a collective with different sizes");
    std::copy(gathered_.begin(), gathered_.end(), out.begin());
  }

  int n_;
  std::chrono::seconds timeout_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::vector<double>> slots_;
  std::vector<long> counts_;
  std::vector<double> gathered_;
  int arrived_ = 0, left_ = 0;
  long round_ = 0;
  bool mismatch_ = false;
};

inline int threads::size() const noexcept { return group_->size(); }

inline void threads::allgather(std::span<const double> in, std::span<double> out) const {
  group_->gather(rank_, in, out);
}

inline void threads::reduce(std::span<double> x, bool max) const {
  std::vector<double> all(x.size() * static_cast<std::size_t>(size()));
  allgather(std::span<const double>(x.data(), x.size()), all);
  for (std::size_t i = 0; i < x.size(); ++i) {
    double v = all[i];
    for (std::size_t r = 1; r < static_cast<std::size_t>(size()); ++r) {
      const double y = all[r * x.size() + i];
      v = max ? (y > v ? y : v) : v + y;
    }
    x[i] = v;
  }
}

inline long threads::collectives() const noexcept {
  std::lock_guard<std::mutex> lk(group_->m_);
  return group_->counts_[static_cast<std::size_t>(rank_)];
}

static_assert(communicator<threads>);

}  // namespace rlhf::dist
