// rlhf++ — checkpoint files written atomically and verified on load.
//
// Format: a header line "rlhfpp-checkpoint 1 <payload bytes> <fnv1a-64 hex>"
// followed by the payload (the trainer's text state, then each model's own
// bytes through Checkpointable::save). The file is written to "<path>.tmp"
// and renamed over <path>, so an existing checkpoint is never left
// half-written; a truncated or corrupted file fails its size or checksum
// check and is rejected with rlhf::error(param) naming the path.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "../core/error.hpp"

namespace rlhf::train {

inline std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline void write_checkpoint(const std::string& path, const std::string& payload) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) detail::fail(error_kind::param, "train::write_checkpoint", "checkpoint_path", "cannot write '" + tmp + "'");
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(payload)));
    out << "rlhfpp-checkpoint 1 " << payload.size() << ' ' << hex << '\n' << payload;
    out.flush();
    if (!out) detail::fail(error_kind::param, "train::write_checkpoint", "checkpoint_path", "short write to '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    detail::fail(error_kind::param, "train::write_checkpoint", "checkpoint_path", "cannot rename '" + tmp + "' to '" + path + "'");
}

/// Returns the verified payload.
inline std::string read_checkpoint(const std::string& path) {
  constexpr const char* fn = "train::read_checkpoint";
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::fail(error_kind::param, fn, "checkpoint_path", "cannot open '" + path + "'");
  std::string magic, hex;
  int version = 0;
  std::size_t size = 0;
  in >> magic >> version >> size >> hex;
  if (magic != "rlhfpp-checkpoint" || version != 1 || in.get() != '\n')
    detail::fail(error_kind::param, fn, "checkpoint", "'" + path + "' is not an rlhf++ checkpoint (bad header)");
  std::string payload(size, '\0');
  in.read(payload.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::size_t>(in.gcount()) != size || in.peek() != std::char_traits<char>::eof())
    detail::fail(error_kind::param, fn, "checkpoint", "'" + path + "' is truncated or has trailing bytes");
  char want[17];
  std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(fnv1a64(payload)));
  if (hex != want) detail::fail(error_kind::param, fn, "checkpoint", "'" + path + "' is corrupted (checksum mismatch)");
  return payload;
}

}  // namespace rlhf::train
