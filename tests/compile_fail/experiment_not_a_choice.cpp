// Only structural choices are template arguments of an experiment.
// expect: rlhf::experiment: every template argument must be a structural choice
#include <rlhf/config/experiment.hpp>
rlhf::experiment<rlhf::algo::ppo, 3> e;
