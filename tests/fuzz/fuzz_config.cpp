// libFuzzer target: the JSON / configuration reader and the command line.
// Any input either reads (and then writes and reads back unchanged) or is an
// rlhf::error that changes nothing; any other exception, a crash or a
// sanitizer report is a finding (tests/fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <rlhf/config/experiment.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace {
using ppo = rlhf::experiment<rlhf::algo::ppo, rlhf::kl::k3, rlhf::kl_in_loss, rlhf::adv::grpo>;
using dpo = rlhf::experiment<rlhf::algo::dpo>;

template <class E>
void read(std::string_view text) {
  E e;
  const E before = e;
  try {
    e.read_json(text);
  } catch (const rlhf::error&) {
    if (!(e == before)) __builtin_trap();  // a failed read changed the experiment
    return;
  }
  if (!(E::from_json(e.json()) == e)) __builtin_trap();  // what was read writes and reads back
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  read<ppo>(text);
  read<dpo>(text);
  // the same bytes as a command line: one argument per line
  std::vector<std::string> args{"prog"};
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) args.push_back(cur);
  for (auto& a : args)  // no files: the JSON reader is fuzzed above
    if (a.rfind("--config", 0) == 0) a = "--steps=1";
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  ppo e;
  const ppo before = e;
  try {
    const rlhf::config::command_line cl(static_cast<int>(argv.size()), argv.data(), {"--jsonl"});
    cl.apply(e);
  } catch (const rlhf::error&) {
    if (!(e == before)) __builtin_trap();
  }
  return 0;
}
