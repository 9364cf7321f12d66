// expect: rlhf: a Policy needs a backward: backward(const rlhf::batch&, rlhf::tensor_view<const E, 2> dlogp)
#include <rlhf/rlhf.hpp>
struct policy {
  rlhf::tensor<double, 2> log_probs(const rlhf::batch&) { return {}; }
  rlhf::rollout generate(const rlhf::prompt_batch&, const rlhf::sampling&, rlhf::rng_t&) { return {}; }
  void step() {}
};
static_assert(rlhf::check_policy<policy>());
