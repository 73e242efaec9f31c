// Strict reading on top of nlohmann-json's SAX parser, and the checked writer (see json.h). The library lexes and
// parses (syntax, escapes, UTF-8 inside strings, number text); the SAX handler here builds the tree and adds the
// rules the library leaves open. A counting iterator tells the handler how far the library has read, so its own
// errors carry a position as the library's do.
#include "runtime/json.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <unordered_set>
#include <vector>

#include "runtime/error.h"

namespace mlarun::json {

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

// "line L, column C (byte B)" for byte offset `offset` of `text`; lines and columns count from 1, bytes from 0.
std::string location(const std::string& text, size_t offset) {
  offset = std::min(offset, text.size());
  auto begin = text.begin(), at = text.begin() + std::ptrdiff_t(offset);
  size_t line = 1 + size_t(std::count(begin, at, '\n'));
  size_t line_start = size_t(std::find(std::make_reverse_iterator(at), text.rend(), '\n').base() - begin);
  return "line " + std::to_string(line) + ", column " + std::to_string(offset - line_start + 1) + " (byte " +
         std::to_string(offset) + ")";
}

// A char iterator that records in *read_to how far it has been advanced: the library reads the text through it,
// one character at a time and never ahead of the token it reports to the handler.
class TrackedIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackedIterator(const char* p, const char** read_to) : p_(p), read_to_(read_to) {}
  reference operator*() const { return *p_; }
  TrackedIterator& operator++() {
    *read_to_ = ++p_;
    return *this;
  }
  TrackedIterator operator++(int) {
    TrackedIterator before = *this;
    ++*this;
    return before;
  }
  bool operator==(const TrackedIterator& o) const { return p_ == o.p_; }
  bool operator!=(const TrackedIterator& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  const char** read_to_;
};

// The library's message without its "[json.exception.parse_error.101] parse error at line 1, column 9: " prefix
// (we give the position ourselves, in the same words for every error).
std::string library_message(const Value::exception& e) {
  std::string what = e.what();
  size_t bracket = what.find("] ");
  if (what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos) what.erase(0, bracket + 2);
  size_t colon = what.find(": ");
  if (what.rfind("parse error", 0) == 0 && colon != std::string::npos) what.erase(0, colon + 2);
  return what;
}

// SAX handler building a Value, with the checks the library does not make. Every error throws mlarun::Error.
class StrictBuilder {
 public:
  StrictBuilder(const std::string& text, const std::string& source, const char* const* read_to)
      : text_(text), source_(source), read_to_(read_to) {}

  Value take() { return std::move(root_); }

  bool null() { return put(Value(nullptr)); }
  bool boolean(bool b) { return put(Value(b)); }
  bool number_integer(Value::number_integer_t v) { return put(Value(v)); }
  bool number_unsigned(Value::number_unsigned_t v) { return put(Value(v)); }
  bool number_float(Value::number_float_t v, const std::string& token) {
    // An integer the library cannot hold in 64 bits arrives here rounded; a shape or an offset must not change
    // silently, so we refuse it.
    if (token.find_first_of(".eE") == std::string::npos)
      error(text_.rfind(token, read_offset()), "integer " + token + " does not fit in 64 bits");
    return put(Value(v));
  }
  bool string(std::string& s) { return put(Value(std::move(s))); }
  bool binary(Value::binary_t&) { return false; }  // JSON text has no binary values

  bool start_object(size_t) { return open(Value::object()); }
  bool key(std::string& k) {
    // The library has just read the key's closing quote.
    if (!keys_.back().insert(k).second) error(read_offset() - 1, "duplicate key \"" + k + "\"");
    key_ = std::move(k);
    return true;
  }
  bool end_object() {
    keys_.pop_back();
    open_.pop_back();
    return true;
  }
  bool start_array(size_t) { return open(Value::array()); }
  bool end_array() {
    open_.pop_back();
    return true;
  }

  // `position` counts the characters read, the offending one included.
  // A number too large for a double (1e400) is refused by the library; the message then names the key it was for.
  bool parse_error(size_t position, const std::string&, const Value::exception& e) {
    std::string what = library_message(e);
    if (what.rfind("number overflow", 0) == 0 && !open_.empty()) what += " (key '" + current_path() + "')";
    error(position > 0 ? position - 1 : 0, what);
  }

 private:
  size_t read_offset() const { return size_t(*read_to_ - text_.data()); }

  // Where the value being read goes: "rope_scaling.factor", "layers[3]". Each open container but the innermost
  // holds the open child as its last member; the innermost gets the pending key or the next index.
  std::string current_path() const {
    std::string path;
    for (size_t i = 0; i < open_.size(); ++i) {
      const Value& c = *open_[i];
      bool innermost = i + 1 == open_.size();
      if (c.is_array()) {
        path += "[" + std::to_string(innermost ? c.size() : c.size() - 1) + "]";
      } else {
        const auto& members = static_cast<const Value::object_t::Container&>(c.get_ref<const Value::object_t&>());
        path += (path.empty() ? "" : ".") + (innermost ? key_ : members.back().first);
      }
    }
    return path;
  }

  [[noreturn]] void error(size_t offset, const std::string& what) const {
    fail(source_, ": invalid JSON at ", location(text_, offset), ": ", what);
  }

  // Places `v` in the innermost open container (or as the root) and returns where it now lives. Containers
  // only grow at their end and only while they are the innermost open one, so the pointers in open_ stay valid.
  Value* place(Value&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Value& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    // key() has checked that the key is new: append it without the library's linear search for it (which makes
    // ordered_json::parse quadratic: 26 s instead of 0.2 s for a 91,000-entry checkpoint index).
    auto& members = static_cast<Value::object_t::Container&>(parent.get_ref<Value::object_t&>());
    members.emplace_back(std::move(key_), std::move(v));
    return &members.back().second;
  }
  bool put(Value&& v) {
    place(std::move(v));
    return true;
  }
  bool open(Value&& container) {
    // The library has just read the '{' or '['.
    if (open_.size() >= size_t(kMaxDepth))
      error(read_offset() - 1, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    bool is_object = container.is_object();
    open_.push_back(place(std::move(container)));
    if (is_object) keys_.emplace_back();
    return true;
  }

  const std::string& text_;
  const std::string& source_;
  const char* const* read_to_;
  Value root_;
  std::vector<Value*> open_;                          // the containers being filled, outermost first
  std::vector<std::unordered_set<std::string>> keys_;  // keys seen in each open object
  std::string key_;                                    // the key of the next member
};

// What makes `v` impossible to write as JSON text ("" if nothing); `path` gets where it is, e.g. ".a[2].b".
std::string unwritable(const Value& v, std::string& path) {
  if (v.is_number_float() && !std::isfinite(v.get<double>()))
    return "is " + detail::concat(v.get<double>()) + ", which JSON cannot represent";
  if (v.is_string() && !is_valid_utf8(v.get_ref<const std::string&>())) return "is a string that is not valid UTF-8";
  if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      std::string why = unwritable(v[i], path);
      if (!why.empty()) {
        path = "[" + std::to_string(i) + "]" + path;
        return why;
      }
    }
  }
  if (v.is_object()) {
    for (const auto& [key, member] : v.get_ref<const Value::object_t&>()) {
      std::string why = is_valid_utf8(key) ? unwritable(member, path) : "is a key that is not valid UTF-8";
      if (!why.empty()) {
        path = "." + key + path;
        return why;
      }
    }
  }
  return "";
}

}  // namespace

Value parse(const std::string& text, const std::string& source) {
  const char* read_to = text.data();
  StrictBuilder builder(text, source, &read_to);
  Value::sax_parse(TrackedIterator(text.data(), &read_to), TrackedIterator(text.data() + text.size(), &read_to),
                   &builder);
  return builder.take();
}

Value parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

std::string dump(const Value& v, int indent) {
  std::string path;
  std::string why = unwritable(v, path);
  if (!why.empty()) {
    if (!path.empty() && path[0] == '.') path.erase(0, 1);
    fail("cannot write JSON: ", path.empty() ? std::string("the value") : "'" + path + "'", " ", why);
  }
  return v.dump(indent);
}

std::string show(const Value& v) { return v.dump(-1, ' ', false, Value::error_handler_t::replace); }

const Value* find(const Value& v, const std::string& key) {
  if (!v.is_object()) return nullptr;
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

std::optional<int64_t> to_int64(const Value& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

const char* kind_name(const Value& v) { return v.is_number_integer() ? "integer" : v.type_name(); }

}  // namespace mlarun::json
