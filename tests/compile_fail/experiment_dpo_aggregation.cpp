// DPO's loss is per pair: a token aggregation mode does not apply.
// expect: rlhf::experiment: DPO takes no token aggregation
#include <rlhf/config/experiment.hpp>
rlhf::experiment<rlhf::algo::dpo, rlhf::agg::token_mean> e;
