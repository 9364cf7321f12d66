// expect: rlhf: a ReferenceModel needs log_probs(const rlhf::batch&)
#include <rlhf/rlhf.hpp>
struct reference {
  double value = 0;
};
static_assert(rlhf::check_reference_model<reference>());
