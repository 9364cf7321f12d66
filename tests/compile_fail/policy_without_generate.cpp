// A policy that cannot sample: the trainer names generate().
// expect: rlhf: a Policy needs generate(const rlhf::prompt_batch&, const rlhf::sampling&, rlhf::rng_t&)
#include <rlhf/rlhf.hpp>
struct policy {
  rlhf::tensor<double, 2> log_probs(const rlhf::batch&) { return {}; }
  void backward(const rlhf::batch&, rlhf::tensor_view<const double, 2>) {}
  void step() {}
};
struct reward {
  std::vector<double> score(const rlhf::batch&) { return {}; }
};
using S = rlhf::train::rl_structure<rlhf::train::algorithm::ppo, rlhf::kl_estimator::k1,
                                    rlhf::train::kl_placement::reward, rlhf::train::advantage_estimator::grpo>;
template class rlhf::train::rl_trainer<S, policy, policy, reward>;
