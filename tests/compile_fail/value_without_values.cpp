// expect: rlhf: a ValueFunction needs values(const rlhf::batch&)
#include <rlhf/rlhf.hpp>
struct critic {
  void step() {}
};
static_assert(rlhf::check_value_function<critic>());
