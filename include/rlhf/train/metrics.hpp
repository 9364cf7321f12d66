// rlhf++ — training metrics: an ordered record per step, a JSON-lines sink
// and a terminal progress line.
//
// The JSONL file's first record is the resolved configuration; then one
// record per step. Records hold no wall-clock time, so a resumed run writes
// exactly the lines an uninterrupted run would (timing lives in the progress
// line only).
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../core/error.hpp"

namespace rlhf::train {

/// A value of a record; std::monostate is JSON null (an unset optional).
using metric_value = std::variant<double, long long, bool, std::string, std::monostate>;

/// An ordered set of named values (insertion order is kept in the output).
class record {
 public:
  record& set(const std::string& key, double v) { return put(key, v); }
  record& set(const std::string& key, bool v) { return put(key, v); }
  record& set(const std::string& key, const char* v) { return put(key, std::string(v)); }
  record& set(const std::string& key, std::string v) { return put(key, std::move(v)); }
  record& set(const std::string& key, std::nullopt_t) { return put(key, std::monostate{}); }
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool>) record& set(const std::string& key, I v) {
    return put(key, static_cast<long long>(v));
  }
  [[nodiscard]] const std::vector<std::pair<std::string, metric_value>>& items() const noexcept { return items_; }
  [[nodiscard]] double number(const std::string& key, double fallback = NAN) const {
    for (const auto& [k, v] : items_)
      if (k == key) {
        if (auto* d = std::get_if<double>(&v)) return *d;
        if (auto* i = std::get_if<long long>(&v)) return static_cast<double>(*i);
        if (auto* b = std::get_if<bool>(&v)) return *b ? 1.0 : 0.0;
      }
    return fallback;
  }
  [[nodiscard]] bool has(const std::string& key) const {
    for (const auto& kv : items_)
      if (kv.first == key) return true;
    return false;
  }

  /// One line of JSON. Doubles are written in the shortest form that reads back exactly;
  /// non-finite doubles are written as the strings "NaN", "Infinity", "-Infinity".
  [[nodiscard]] std::string json() const {
    std::string s = "{";
    bool first = true;
    for (const auto& [k, v] : items_) {
      if (!first) s += ", ";
      first = false;
      s += quote(k) + ": ";
      if (auto* d = std::get_if<double>(&v)) {
        if (std::isnan(*d))
          s += "\"NaN\"";
        else if (std::isinf(*d))
          s += *d > 0 ? "\"Infinity\"" : "\"-Infinity\"";
        else
          s += shortest(*d);
      } else if (auto* i = std::get_if<long long>(&v)) {
        s += std::to_string(*i);
      } else if (auto* b = std::get_if<bool>(&v)) {
        s += *b ? "true" : "false";
      } else if (auto* t = std::get_if<std::string>(&v)) {
        s += quote(*t);
      } else {
        s += "null";
      }
    }
    return s + "}";
  }

  /// The shortest decimal form that reads back to exactly `v` (at most 17 digits).
  static std::string shortest(double v) {
    char buf[40];
    for (int prec = 1; prec <= 17; ++prec) {
      std::snprintf(buf, sizeof buf, "%.*g", prec, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
  }

  static std::string quote(const std::string& x) {
    std::string s = "\"";
    for (char c : x) {
      switch (c) {
        case '"':
          s += "\\\"";
          break;
        case '\\':
          s += "\\\\";
          break;
        case '\n':
          s += "\\n";
          break;
        case '\t':
          s += "\\t";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            s += buf;
          } else {
            s += c;
          }
      }
    }
    return s + "\"";
  }

 private:
  record& put(const std::string& key, metric_value v) {
    for (auto& kv : items_)
      if (kv.first == key) {
        kv.second = std::move(v);
        return *this;
      }
    items_.emplace_back(key, std::move(v));
    return *this;
  }
  std::vector<std::pair<std::string, metric_value>> items_;
};

/// Appends one JSON line per record; flushes each line (a crash loses nothing).
class jsonl_sink {
 public:
  jsonl_sink() = default;
  /// `append` keeps existing lines (resume); otherwise the file is truncated.
  explicit jsonl_sink(const std::string& path, bool append = false) { open(path, append); }
  void open(const std::string& path, bool append = false) {
    path_ = path;
    out_.open(path, append ? std::ios::app : std::ios::trunc);
    if (!out_)
      rlhf::detail::fail(error_kind::param, "train::jsonl_sink", "metrics_path",
                         "cannot open '" + path + "' for writing");
  }
  [[nodiscard]] bool is_open() const { return out_.is_open(); }
  void write(const record& r) {
    if (!out_.is_open()) return;
    out_ << r.json() << '\n';
    out_.flush();
  }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

/// The terminal line: step, reward, KL, entropy, steps/s, ETA.
class progress_line {
 public:
  progress_line(long long total, std::ostream& out = std::cerr) : total_(total), out_(out) {}
  void start(long long first_step) {
    t0_ = std::chrono::steady_clock::now();
    first_ = first_step;
  }
  void update(long long step, const record& r) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double rate = secs > 0 ? static_cast<double>(step - first_) / secs : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - step) / rate : 0.0;
    std::ostringstream os;
    os.setf(std::ios::fixed);
    os.precision(4);
    os << "step " << step << "/" << total_;
    for (const char* k : {"reward", "kl_ref", "entropy", "loss"})
      if (r.has(k)) os << " | " << k << " " << r.number(k);
    os.precision(1);
    os << " | " << rate << " steps/s | ETA " << static_cast<long long>(eta) / 60 << ":";
    const auto s = static_cast<long long>(eta) % 60;
    os << (s < 10 ? "0" : "") << s;
    out_ << os.str() << '\n';
    out_.flush();
  }

 private:
  long long total_, first_ = 0;
  std::ostream& out_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

/// The loop both trainers share: metrics (the configuration first, appended
/// to on resume), progress line, periodic checkpoints, user hooks.
/// `before_step(step)` (0-based) runs before each step (learning-rate
/// schedules); `after_step(record&)` may add the user's own evaluation to
/// the step's record before it is written.
template <class Trainer, class Options, class F, class G>
void run_loop(Trainer& t, const Options& o, F&& before_step, G&& after_step) {
  jsonl_sink sink;
  if (!o.metrics_path.empty()) {
    sink.open(o.metrics_path, t.step_count() > 0);
    if (t.step_count() == 0) sink.write(t.config());
  }
  progress_line progress(o.steps);
  progress.start(t.step_count());
  while (t.step_count() < o.steps) {
    before_step(t.step_count());
    auto r = t.step();
    after_step(r);
    sink.write(r);
    const long long s = t.step_count();
    if (o.progress && (s % o.progress_every == 0 || s == o.steps)) progress.update(s, r);
    if (!o.checkpoint_path.empty() && o.checkpoint_every > 0 && s % o.checkpoint_every == 0) t.save(o.checkpoint_path);
  }
}

/// The run() overloads of a trainer (CRTP): Derived provides step(),
/// step_count(), config(), save(path) and options().
template <class Derived>
struct runnable {
  /// Runs until the configured number of steps, writing metrics, progress
  /// and checkpoints (run_loop above).
  void run() {
    run([](long long) {});
  }
  template <class F>
  void run(F&& before_step) {
    run(before_step, [](record&) {});
  }
  template <class F, class G>
  void run(F&& before_step, G&& after_step) {
    auto& self = static_cast<Derived&>(*this);
    run_loop(self, self.options(), before_step, after_step);
  }
};

}  // namespace rlhf::train
