// expect: rlhf: a ValueFunction needs values(const rlhf::batch&)
#include <rlhf/rlhf.hpp>
struct critic {
  void backward(const rlhf::batch&, rlhf::tensor_view<const double, 2>) {}
  void step() {}
};
static_assert(rlhf::check_value_function<critic>());
