// A2C (Stable-Baselines3) averages over tokens: another aggregation is refused.
// expect: rlhf::experiment: A2C (Stable-Baselines3) averages its losses over tokens
#include <rlhf/config/experiment.hpp>
rlhf::experiment<rlhf::algo::a2c, rlhf::agg::seq_mean_token_sum> e;
