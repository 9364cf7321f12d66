#!/usr/bin/env bash
# Compile time of the configuration layer (issue: "compile-time cost stays
# in check"). Times g++ (no ccache) on three translation units, best of N:
#   core     #include <rlhf/rlhf.hpp>, nothing instantiated
#   plain    + one PPO trainer instantiated and run through train::rl_structure (no experiment)
#   hana     + the same PPO run declared as an rlhf::experiment: JSON, command line, make_trainer
# Usage: bench/compile_time.sh [N=3] [FLAGS="-O2"]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
FLAGS=${2:--O2}
CXX=${CXX:-g++}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/core.cpp" <<'CPP'
#include <rlhf/rlhf.hpp>
int main() { return 0; }
CPP
cat > "$tmp/plain.cpp" <<'CPP'
#include <rlhf/rlhf.hpp>
#include "examples/tabular_models.hpp"
int main() {
  const bandit::problem pb(1);
  bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
  bandit::table_reward rm{pb.reward};
  using S = rlhf::train::rl_structure<rlhf::algorithm::ppo, rlhf::kl_estimator::k3, rlhf::kl_placement::loss,
                                      rlhf::advantage_estimator::grpo>;
  rlhf::train::rl_options o;
  o.steps = 1;
  o.group_size = 2;
  rlhf::train::rl_trainer<S, bandit::tabular_policy, bandit::tabular_policy, bandit::table_reward> t(pi, ref, rm, pb.prompts(), o);
  t.run();
  return 0;
}
CPP
cat > "$tmp/hana.cpp" <<'CPP'
#include <rlhf/rlhf.hpp>
#include <rlhf/config/experiment.hpp>
#include <iostream>
#include "examples/tabular_models.hpp"
int main(int argc, char** argv) {
  const bandit::problem pb(1);
  bandit::tabular_policy pi(pb.ref_logits), ref(pb.ref_logits);
  bandit::table_reward rm{pb.reward};
  rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k3, rlhf::kl_in_loss, rlhf::adv::grpo> e;
  e.options.steps = 1;
  e.options.group_size = 2;
  rlhf::config::command_line(argc, argv).apply(e);
  std::cout << e.json() << '\n';
  auto t = rlhf::make_trainer(e, pi, ref, rm, pb.prompts());
  t.run();
  return 0;
}
CPP

best() {  # best wall time of N compiles, seconds
  local src=$1 b=""
  for _ in $(seq "$N"); do
    local s e
    s=$(date +%s.%N)
    $CXX -std=c++20 $FLAGS -Iinclude -I. -c "$src" -o "$tmp/out.o"
    e=$(date +%s.%N)
    b=$(awk -v a="$b" -v s="$s" -v e="$e" 'BEGIN { d = e - s; if (a == "" || d < a) print d; else print a }')
  done
  printf '%.2f' "$b"
}

echo "compiler: $($CXX --version | head -1); flags: -std=c++20 $FLAGS; best of $N"
core=$(best "$tmp/core.cpp")
plain=$(best "$tmp/plain.cpp")
hana=$(best "$tmp/hana.cpp")
printf '%-58s %6s s\n' "include <rlhf/rlhf.hpp> only" "$core"
printf '%-58s %6s s\n' "+ one PPO trainer (train::rl_structure)" "$plain"
printf '%-58s %6s s\n' "+ one PPO rlhf::experiment (JSON, command line, trainer)" "$hana"
awk -v h="$hana" -v p="$plain" 'BEGIN { printf "the experiment layer adds %.2f s to the plain trainer'"'"'s translation unit\n", h - p }'
