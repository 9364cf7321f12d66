// The comparisons of the device trainer tests: a CPU run and a device run
// of the same trainer, step by step, must log the same records.
#pragma once

#include <cmath>
#include <cstdio>
#include <rlhf/train/metrics.hpp>
#include <string>

namespace device_test {

inline int failures = 0;

inline void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

/// Every number of two records agrees to rel (the same fields).
inline void same_record(const rlhf::train::record& a, const rlhf::train::record& b, double rel,
                        const std::string& what) {
  check(a.items().size() == b.items().size(), what + ": the same fields");
  for (const auto& [k, v] : a.items()) {
    if (!b.has(k)) {
      check(false, what + ": field " + k + " only on the CPU");
      continue;
    }
    const double x = a.number(k), y = b.number(k);
    if (std::isnan(x) && std::isnan(y)) continue;
    const bool ok = std::fabs(x - y) <= rel * std::fmax(1.0, std::fabs(x));
    if (!ok) std::printf("  %s: %s cpu %.17g cuda %.17g\n", what.c_str(), k.c_str(), x, y);
    check(ok, what + ": " + k);
  }
}

/// The summary line and the exit code (0: every check held).
inline int report() {
  std::printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}

}  // namespace device_test
