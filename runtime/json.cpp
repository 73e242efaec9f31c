// Recursive-descent JSON parser with the strictness the safetensors format asks for, and a writer.
#include "runtime/json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/error.h"

namespace mlarun::json {

Value Value::array(Array a) {
  Value v;
  v.kind_ = Kind::Array;
  v.array_ = std::move(a);
  return v;
}

Value Value::object(Object o) {
  Value v;
  v.kind_ = Kind::Object;
  v.object_ = std::move(o);
  return v;
}

const Value* Value::find(const std::string& key) const {
  if (kind_ != Kind::Object) return nullptr;
  for (const auto& kv : object_)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

Value& Value::push_back(Value v) {
  if (kind_ == Kind::Null) kind_ = Kind::Array;
  MLARUN_CHECK(kind_ == Kind::Array, "json: push_back on a ", kind_name(kind_));
  array_.push_back(std::move(v));
  return array_.back();
}

Value& Value::set(const std::string& key, Value v) {
  if (kind_ == Kind::Null) kind_ = Kind::Object;
  MLARUN_CHECK(kind_ == Kind::Object, "json: set('", key, "') on a ", kind_name(kind_));
  for (auto& kv : object_)
    if (kv.first == key) return kv.second = std::move(v);
  object_.emplace_back(key, std::move(v));
  return object_.back().second;
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::Null: return "null";
    case Value::Kind::Bool: return "boolean";
    case Value::Kind::Int: return "integer";
    case Value::Kind::Float: return "number";
    case Value::Kind::String: return "string";
    case Value::Kind::Array: return "array";
    case Value::Kind::Object: return "object";
  }
  return "?";
}

bool is_valid_utf8(const std::string& s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + size_t(len) > n) return false;
    for (int k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += size_t(len);
  }
  return true;
}

namespace {

class Parser {
 public:
  Parser(const std::string& text, const std::string& source) : s_(text), source_(source) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) error("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(source_, ": invalid JSON at byte ", pos_, ": ", what);
  }
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  void skip_ws() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }

  Value parse_value(int depth) {
    if (depth > 128) error("nesting deeper than 128 levels");
    if (at_end()) error("unexpected end of text");
    char c = peek();
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') return Value(parse_string());
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    if (s_.compare(pos_, 4, "true") == 0) return pos_ += 4, Value(true);
    if (s_.compare(pos_, 5, "false") == 0) return pos_ += 5, Value(false);
    if (s_.compare(pos_, 4, "null") == 0) return pos_ += 4, Value();
    error(std::string("unexpected character '") + c + "'");
  }

  Value parse_object(int depth) {
    expect('{');
    Value::Object members;
    std::set<std::string> seen;
    skip_ws();
    if (peek() == '}') return ++pos_, Value::object();
    for (;;) {
      skip_ws();
      if (peek() != '"') error("expected a string key");
      size_t key_pos = pos_;
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        pos_ = key_pos;
        error("duplicate key \"" + key + "\"");
      }
      skip_ws();
      expect(':');
      skip_ws();
      Value v = parse_value(depth + 1);
      members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return Value::object(std::move(members));
    }
  }

  Value parse_array(int depth) {
    expect('[');
    Value::Array items;
    skip_ws();
    if (peek() == ']') return ++pos_, Value::array();
    for (;;) {
      skip_ws();
      items.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return Value::array(std::move(items));
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += char(0xe0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xf0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3f));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    }
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else error("bad hex digit in \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (at_end()) error("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_end()) error("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (s_.compare(pos_, 2, "\\u") != 0) error("unpaired surrogate in \\u escape");
            pos_ += 2;
            uint32_t lo = parse_hex4();
            if (lo < 0xdc00 || lo > 0xdfff) error("bad low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            error("unpaired surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: error(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  Value parse_number() {
    size_t start = pos_;
    bool is_float = false;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      error("bad number");
    }
    if (peek() == '.') {
      is_float = true;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("digit expected after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      is_float = true;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) error("digit expected in exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    std::string text = s_.substr(start, pos_ - start);
    if (!is_float) {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0) return Value(int64_t(v));
      // Integers beyond 64 bits fall through to a float (shapes that large are rejected by their checks).
    }
    return Value(std::strtod(text.c_str(), nullptr));
  }

  const std::string& s_;
  const std::string& source_;
  size_t pos_ = 0;
};

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

}  // namespace

Value parse(const std::string& text, const std::string& source) {
  if (!is_valid_utf8(text)) fail(source, ": text is not valid UTF-8");
  return Parser(text, source).parse_document();
}

Value parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

std::string Value::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

void Value::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent > 0) {
      out += '\n';
      out.append(size_t(indent * d), ' ');
    }
  };
  switch (kind_) {
    case Kind::Null: out += "null"; break;
    case Kind::Bool: out += bool_ ? "true" : "false"; break;
    case Kind::Int: out += std::to_string(int_); break;
    case Kind::Float: {
      if (!std::isfinite(float_)) {
        out += "null";  // JSON has no NaN/Inf
        break;
      }
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", float_);
      double back = std::strtod(buf, nullptr);
      char shorter[32];
      for (int p = 6; p < 17; ++p) {  // prefer the shortest text that round-trips
        std::snprintf(shorter, sizeof shorter, "%.*g", p, float_);
        if (std::strtod(shorter, nullptr) == back) {
          std::snprintf(buf, sizeof buf, "%s", shorter);
          break;
        }
      }
      std::string s = buf;
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      out += s;
      break;
    }
    case Kind::String: dump_string(out, string_); break;
    case Kind::Array: {
      out += '[';
      for (size_t i = 0; i < array_.size(); ++i) {
        if (i) out += indent > 0 ? "," : ", ";
        if (indent > 0) newline(depth + 1);
        array_[i].dump_to(out, indent, depth + 1);
      }
      if (indent > 0 && !array_.empty()) newline(depth);
      out += ']';
      break;
    }
    case Kind::Object: {
      out += '{';
      for (size_t i = 0; i < object_.size(); ++i) {
        if (i) out += indent > 0 ? "," : ", ";
        if (indent > 0) newline(depth + 1);
        dump_string(out, object_[i].first);
        out += ": ";
        object_[i].second.dump_to(out, indent, depth + 1);
      }
      if (indent > 0 && !object_.empty()) newline(depth);
      out += '}';
      break;
    }
  }
}

}  // namespace mlarun::json
