// rlhf++ — checkpoint files written atomically and verified on load.
//
// Format: a header line "rlhfpp-checkpoint 1 <payload bytes> <fnv1a-64 hex>"
// followed by the payload (the trainer's text state, then each model's own
// bytes through Checkpointable::save). The file is written to "<path>.tmp"
// and renamed over <path>, so an existing checkpoint is never left
// half-written; a truncated or corrupted file fails its size or checksum
// check and is rejected with rlhf::error(param) naming the path.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../concepts/model_concepts.hpp"
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
    if (!out)
      rlhf::detail::fail(error_kind::param, "train::write_checkpoint", "checkpoint_path", "cannot write '" + tmp + "'");
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(payload)));
    out << "rlhfpp-checkpoint 1 " << payload.size() << ' ' << hex << '\n' << payload;
    out.flush();
    if (!out)
      rlhf::detail::fail(error_kind::param, "train::write_checkpoint", "checkpoint_path",
                         "short write to '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    rlhf::detail::fail(error_kind::param, "train::write_checkpoint", "checkpoint_path",
                       "cannot rename '" + tmp + "' to '" + path + "'");
}

/// Returns the verified payload. The whole file is read first, so the
/// header's size is checked against the bytes there are (a corrupt size
/// cannot ask for memory); every problem is an rlhf::error(param).
inline std::string read_checkpoint(const std::string& path) {
  constexpr const char* fn = "train::read_checkpoint";
  std::ifstream in(path, std::ios::binary);
  if (!in) rlhf::detail::fail(error_kind::param, fn, "checkpoint_path", "cannot open '" + path + "'");
  std::string file{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) rlhf::detail::fail(error_kind::param, fn, "checkpoint", "'" + path + "' cannot be read");
  auto bad_header = [&] {
    rlhf::detail::fail(error_kind::param, fn, "checkpoint", "'" + path + "' is not an rlhf++ checkpoint (bad header)");
  };
  // "rlhfpp-checkpoint 1 <size> <16 hex digits>\n"
  const std::size_t eol = file.find('\n');
  if (eol == std::string::npos || eol > 128) bad_header();
  const std::string head = file.substr(0, eol);
  const std::string magic = "rlhfpp-checkpoint 1 ";
  if (head.compare(0, magic.size(), magic) != 0) bad_header();
  const std::size_t sp = head.find(' ', magic.size());
  if (sp == std::string::npos) bad_header();
  const std::string size_text = head.substr(magic.size(), sp - magic.size()), hex = head.substr(sp + 1);
  if (size_text.empty() || size_text.size() > 19 || size_text.find_first_not_of("0123456789") != std::string::npos ||
      hex.size() != 16 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
    bad_header();
  const auto size = static_cast<std::size_t>(std::strtoull(size_text.c_str(), nullptr, 10));
  if (size != file.size() - eol - 1)
    rlhf::detail::fail(error_kind::param, fn, "checkpoint", "'" + path + "' is truncated or has trailing bytes");
  std::string payload = file.substr(eol + 1);
  char want[17];
  std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(fnv1a64(payload)));
  if (hex != want)
    rlhf::detail::fail(error_kind::param, fn, "checkpoint", "'" + path + "' is corrupted (checksum mismatch)");
  return payload;
}

/// The payload both trainers write: named text fields, then each model's
/// own bytes.
///   trainer <kind>
///   structure <the structure's name>
///   field <key> <bytes>\n<value>            (any number, any order)
///   model <name> <bytes>\n<bytes> | model <name> none
class state_writer {
 public:
  state_writer(const std::string& kind, const std::string& structure) {
    os_ << "trainer " << kind << "\nstructure " << structure << '\n';
  }
  state_writer& field(const std::string& key, const std::string& value) {
    os_ << "field " << key << ' ' << value.size() << '\n' << value << '\n';
    return *this;
  }
  template <class T>
  state_writer& number(const std::string& key, const T& v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return field(key, s.str());
  }
  template <class M>
  state_writer& model(const std::string& name, const M& m) {
    if constexpr (Checkpointable<M>) {
      std::ostringstream ms;
      m.save(ms);
      const std::string b = ms.str();
      os_ << "model " << name << ' ' << b.size() << '\n' << b << '\n';
    } else {
      os_ << "model " << name << " none\n";
    }
    return *this;
  }
  [[nodiscard]] std::string str() const { return os_.str(); }

 private:
  std::ostringstream os_;
};

/// Reads a state_writer payload completely (every section checked) before
/// anything is applied; every problem is an rlhf::error(param) naming the file.
class state_reader {
 public:
  state_reader(const std::string& payload, std::string path, const std::string& kind, const std::string& structure)
      : path_(std::move(path)) {
    std::size_t at = 0;
    const std::string k = word(payload, at), kv = word(payload, at);
    if (k != "trainer") bad("has no trainer line");
    if (kv != kind) bad("was written by '" + kv + "' where '" + kind + "' was expected (written by another trainer?)");
    if (word(payload, at) != "structure") bad("has no structure line");
    const std::string st = line(payload, at);
    if (st != structure)
      bad("holds a run of structure '" + st + "' but this trainer's structure is '" + structure + "'");
    while (at < payload.size()) {
      const std::string tag = word(payload, at), name = word(payload, at);
      if (tag != "field" && tag != "model") bad("has an unknown section '" + tag + "'");
      const std::string size = line(payload, at);
      if (tag == "model" && size == "none") {
        models_[name] = std::nullopt;
        continue;
      }
      const std::size_t n = parse_size(size);
      if (n > payload.size() - at || payload.size() - at - n < 1 || payload[at + n] != '\n')
        bad("has a truncated section '" + name + "'");
      if (tag == "field")
        fields_[name] = payload.substr(at, n);
      else
        models_[name] = payload.substr(at, n);
      at += n + 1;
    }
  }
  [[nodiscard]] const std::string& field(const std::string& key) const {
    const auto it = fields_.find(key);
    if (it == fields_.end()) bad("has no field '" + key + "'");
    return it->second;
  }
  long long integer(const std::string& key) const {
    const std::string& s = field(key);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE) bad("has a bad integer in field '" + key + "'");
    return v;
  }
  double real(const std::string& key) const {
    const std::string& s = field(key);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) bad("has a bad number in field '" + key + "'");
    return v;
  }
  /// A stream-readable value (the random engine, the diagnostics' state).
  template <class T>
  void read(const std::string& key, T& out) const {
    std::istringstream in(field(key));
    in >> out;
    if (!in) bad("has a malformed field '" + key + "'");
  }
  /// Checks that the file's model sections match the trainer's models.
  template <class M>
  void expect_model(const std::string& name) const {
    const auto it = models_.find(name);
    if (it == models_.end()) bad("has no section for the " + name + " model");
    if (it->second.has_value() && !Checkpointable<M>)
      bad("holds " + name + " weights but the model is not Checkpointable");
    if (!it->second.has_value() && Checkpointable<M>)
      bad("holds no " + name + " weights but the model is Checkpointable");
  }
  /// Every section of the file must be one the trainer has: a model or a
  /// field it does not know means a checkpoint of another run.
  void expect_only(const std::vector<std::string>& fields, const std::vector<std::string>& models) const {
    auto known = [](const std::vector<std::string>& names, const std::string& n) {
      for (const auto& k : names)
        if (k == n) return true;
      return false;
    };
    for (const auto& [k, v] : fields_)
      if (!known(fields, k)) bad("has a field '" + k + "' this trainer does not write (a checkpoint of another run?)");
    for (const auto& [k, v] : models_)
      if (!known(models, k)) bad("has a section for a " + k + " model this trainer does not have");
  }
  [[nodiscard]] const std::optional<std::string>& model_bytes(const std::string& name) const {
    return models_.at(name);
  }
  [[noreturn]] void bad(const std::string& what) const {
    rlhf::detail::fail(error_kind::param, "train::load", "checkpoint", "'" + path_ + "' " + what);
  }

 private:
  static std::string word(const std::string& s, std::size_t& at) {
    const std::size_t e = s.find_first_of(" \n", at);
    std::string w = s.substr(at, e == std::string::npos ? std::string::npos : e - at);
    at = e == std::string::npos ? s.size() : e + 1;
    return w;
  }
  static std::string line(const std::string& s, std::size_t& at) {
    const std::size_t e = s.find('\n', at);
    std::string w = s.substr(at, e == std::string::npos ? std::string::npos : e - at);
    at = e == std::string::npos ? s.size() : e + 1;
    return w;
  }
  std::size_t parse_size(const std::string& s) const {
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
      bad("has a bad section size '" + s + "'");
    return static_cast<std::size_t>(std::strtoull(s.c_str(), nullptr, 10));
  }
  std::string path_;
  std::map<std::string, std::string> fields_;
  std::map<std::string, std::optional<std::string>> models_;
};

/// Loads the models of a checkpoint all or nothing: each Checkpointable
/// model's current state is saved first and restored if any load throws.
struct model_slot {
  std::string name;
  std::function<std::string()> save;  // empty for a model that is not Checkpointable
  std::function<void(const std::string&)> load;
};
template <class M>
model_slot slot(const std::string& name, M& m) {
  if constexpr (Checkpointable<M>)
    return {name,
            [&m] {
              std::ostringstream o;
              m.save(o);
              return o.str();
            },
            [&m](const std::string& bytes) {
              std::istringstream in(bytes);
              m.load(in);
            }};
  else
    return {name, {}, {}};
}

/// The models a step changes, each saved in memory (its save()) just before
/// the step first changes it and given its state back (load()) if the step
/// throws: a failed step leaves the models as they were (rl_options::rollback,
/// dpo_options::rollback). A model that is not Checkpointable is not kept.
class model_rollback {
 public:
  template <class M>
  void keep(const std::string& name, M& m) {
    if constexpr (Checkpointable<M>) {
      if (!on_) return;
      for (const auto& k : kept_)
        if (k.model == static_cast<const void*>(&m)) return;
      auto s = slot(name, m);
      std::string bytes = s.save();
      kept_.push_back({static_cast<const void*>(&m), std::move(s), std::move(bytes)});
    }
  }
  /// Starts a step: nothing kept; `on` = whether this step keeps models.
  void begin(bool on) noexcept {
    on_ = on;
    kept_.clear();
  }
  /// Gives every kept model its state back, the last kept first; returns the
  /// names of those whose load() threw (empty: all restored).
  std::string restore() noexcept {
    std::string lost;
    for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
      try {
        it->slot.load(it->bytes);
      } catch (...) {
        lost += (lost.empty() ? "" : ", ") + it->slot.name;
      }
    }
    kept_.clear();
    return lost;
  }

 private:
  struct kept {
    const void* model;
    model_slot slot;
    std::string bytes;
  };
  bool on_ = true;
  std::vector<kept> kept_;
};

inline void load_models(const state_reader& st, const std::vector<model_slot>& slots) {
  std::vector<std::string> backup;
  for (const auto& s : slots) backup.push_back(s.save ? s.save() : std::string());
  std::size_t done = 0;
  try {
    for (const auto& s : slots) {
      if (s.load) s.load(*st.model_bytes(s.name));
      ++done;
    }
  } catch (const std::exception& e) {
    // the models already loaded get their state back; the one that threw is
    // given its state back too (a load that throws midway may have changed it)
    std::string unrestored;
    for (std::size_t i = 0; i <= done && i < slots.size(); ++i) {
      if (!slots[i].load) continue;
      try {
        slots[i].load(backup[i]);
      } catch (...) {
        if (i < done) unrestored += " " + slots[i].name;
      }
    }
    if (!unrestored.empty())
      st.bad("was rejected by the " + slots[done].name + " model's load() (" + e.what() +
             ") and these models could not be given their state back:" + unrestored);
    if (dynamic_cast<const rlhf::error*>(&e)) throw;
    st.bad("was rejected by the " + slots[done].name + " model's load(): " + e.what());
  }
}

}  // namespace rlhf::train
