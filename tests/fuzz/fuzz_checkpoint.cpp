// libFuzzer target: the checkpoint reader of both trainers. The first byte
// chooses the trainer (PPO with a critic, or DPO) and whether the rest is
// the whole file or a payload given a valid header (so the parser behind
// the checksum is reached). A load either succeeds or is an rlhf::error that
// leaves the models and the trainer as they were.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "../../examples/tabular_models.hpp"

namespace {
namespace tr = rlhf::train;
using ppo_gae = tr::rl_structure<tr::algorithm::ppo, rlhf::kl_estimator::k3, tr::kl_placement::reward,
                                 tr::advantage_estimator::gae>;

/// In the system's temporary folder (TMPDIR), one file per process.
std::string file_path() {
  return (std::filesystem::temp_directory_path() / ("rlhf_fuzz_checkpoint_" + std::to_string(getpid()) + ".ckpt"))
      .string();
}

std::string with_header(const std::string& payload) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(tr::fnv1a64(payload)));
  return "rlhfpp-checkpoint 1 " + std::to_string(payload.size()) + " " + hex + "\n" + payload;
}

std::vector<double> init() {
  std::vector<double> v(bandit::K * bandit::M);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.1 * static_cast<double>(i % 7);
  return v;
}

/// Loads; a rejected file must leave everything as it was (`same` checks the models).
template <class T, class Same>
void load(T& t, const std::string& path, Same&& same) {
  const auto steps = t.step_count();
  try {
    t.load(path);
  } catch (const rlhf::error&) {
    if (!same() || t.step_count() != steps) __builtin_trap();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string path = file_path();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << ((data[0] & 1) != 0 ? with_header(rest) : rest);
  }
  bandit::tabular_policy pi(init()), ref(init());
  bandit::table_reward rm{std::vector<double>(bandit::K * bandit::M, 0.5)};
  if ((data[0] & 2) == 0) {
    bandit::tabular_value v;
    tr::rl_options o;
    o.progress = false;
    tr::rl_trainer<ppo_gae, bandit::tabular_policy, bandit::tabular_policy, bandit::table_reward, bandit::tabular_value>
        t(pi, ref, rm, {{0}, {1}, {2}, {3}}, o, &v);
    const auto p0 = pi.theta, r0 = ref.theta, v0 = v.v;
    load(t, path, [&] { return pi.theta == p0 && ref.theta == r0 && v.v == v0; });
  } else {
    std::vector<tr::preference> pairs{{{0}, {1}, {2}}, {{1}, {2}, {0}}, {{2}, {0}, {1}}};
    tr::dpo_options o;
    o.progress = false;
    o.batch_size = 2;
    tr::dpo_trainer<bandit::tabular_policy, bandit::tabular_policy> t(pi, ref, pairs, o);
    const auto p0 = pi.theta, r0 = ref.theta;
    load(t, path, [&] { return pi.theta == p0 && ref.theta == r0; });
  }
  std::remove(path.c_str());
  return 0;
}
