// rlhf++ — a small JSON reader for configurations.
//
// Reads one JSON object into (key, value) pairs, nested objects flattened
// with '.' ({"ppo": {"clip_low": 0.1}} gives "ppo.clip_low"), in document
// order. Values keep their text: numbers as written (exact for integers and
// for the 17-digit doubles rlhf++ writes), strings unescaped, true/false,
// null. Arrays are rejected (no option is a list). Strict: numbers follow
// the JSON grammar and must be finite doubles (1e400 is an error, not
// infinity: write the string "Infinity"), a key may appear once (after
// flattening), objects nest at most max_depth levels (deep input cannot
// exhaust the stack), control characters in strings must be escaped.
// Malformed input is rlhf::error(param) naming the offset. No third-party
// header.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"

namespace rlhf::config {

struct json_item {
  enum class kind { null, boolean, number, string };
  std::string key;
  kind type = kind::null;
  std::string text;  ///< the number as written, the unescaped string, "true"/"false", "null"
};

namespace detail {

class json_reader {
 public:
  static constexpr int max_depth = 32;
  explicit json_reader(std::string_view s) : s_(s) {}

  std::vector<json_item> object() {
    std::vector<json_item> out;
    ws();
    read_object("", out, 1);
    ws();
    if (i_ != s_.size()) bad("unexpected text after the object");
    return out;
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    rlhf::detail::fail(error_kind::param, "config::read_json", "json",
                       "is malformed at offset " + std::to_string(i_) + ": " + what);
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    ws();
    if (i_ >= s_.size() || s_[i_] != c) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  bool literal(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) bad("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) bad("a control character in a string (escape it)");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) bad("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          if (i_ + 4 > s_.size()) bad("short \\u escape");
          unsigned cp = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            cp = cp * 16 + static_cast<unsigned>(h >= '0' && h <= '9'   ? h - '0'
                                                 : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                                 : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                                        : (bad("bad \\u escape"), 0));
          }
          utf8(out, cp);
          break;
        }
        default:
          bad(std::string("unknown escape \\") + e);
      }
    }
  }
  void add(std::vector<json_item>& out, json_item it) {
    if (!keys_.insert(it.key).second) bad("duplicate key '" + it.key + "'");
    out.push_back(std::move(it));
  }
  /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, finite as a double.
  std::string number(const std::string& key) {
    const std::size_t b = i_;
    auto digits = [&] {
      const std::size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ - d;
    };
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    const std::size_t int_at = i_;
    const std::size_t n = digits();
    if (n == 0) bad("expected a value for key '" + key + "'");
    if (n > 1 && s_[int_at] == '0') bad("a number with a leading zero (key '" + key + "')");
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (digits() == 0) bad("a number without digits after '.' (key '" + key + "')");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (digits() == 0) bad("a number without exponent digits (key '" + key + "')");
    }
    std::string t(s_.substr(b, i_ - b));
    errno = 0;
    const double v = std::strtod(t.c_str(), nullptr);
    if (!std::isfinite(v))
      bad("the number " + t + " of key '" + key +
          "' is out of the range of a double (write \"Infinity\" for infinity)");
    return t;
  }
  void read_object(const std::string& prefix, std::vector<json_item>& out, int depth) {
    if (depth > max_depth) bad("objects nest deeper than " + std::to_string(max_depth) + " levels");
    expect('{');
    ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return;
    }
    while (true) {
      ws();
      const std::string key = prefix + string();
      expect(':');
      ws();
      if (i_ >= s_.size()) bad("missing value");
      const char c = s_[i_];
      if (c == '{') {
        if (!keys_.insert(key).second) bad("duplicate key '" + key + "'");
        read_object(key + ".", out, depth + 1);
      } else if (c == '[') {
        bad("arrays are not supported (key '" + key + "')");
      } else if (c == '"') {
        add(out, {key, json_item::kind::string, string()});
      } else if (literal("true")) {
        add(out, {key, json_item::kind::boolean, "true"});
      } else if (literal("false")) {
        add(out, {key, json_item::kind::boolean, "false"});
      } else if (literal("null")) {
        add(out, {key, json_item::kind::null, "null"});
      } else {
        add(out, {key, json_item::kind::number, number(key)});
      }
      ws();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        continue;
      }
      expect('}');
      return;
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::set<std::string> keys_;  ///< every flattened key seen (objects' own keys too)
};

}  // namespace detail

/// The (flattened) members of one JSON object.
inline std::vector<json_item> read_json_object(std::string_view text) { return detail::json_reader(text).object(); }

}  // namespace rlhf::config
