// A small strict JSON value, parser and writer. We parse safetensors headers, checkpoint indexes and configs
// with it because they must be checked strictly: valid UTF-8, no duplicate keys, integers kept apart from
// floats, and no reads past the text. YAML configs are converted into the same tree (config_value.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mlarun::json {

class Value {
 public:
  enum class Kind { Null, Bool, Int, Float, String, Array, Object };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;  // keeps file order

  Value() = default;
  static Value null() { return Value(); }
  Value(bool b) : kind_(Kind::Bool), bool_(b) {}
  Value(int v) : kind_(Kind::Int), int_(v) {}
  Value(int64_t v) : kind_(Kind::Int), int_(v) {}
  Value(uint64_t v) : kind_(Kind::Int), int_(int64_t(v)) {}
  Value(double v) : kind_(Kind::Float), float_(v) {}
  Value(const char* s) : kind_(Kind::String), string_(s) {}
  Value(std::string s) : kind_(Kind::String), string_(std::move(s)) {}
  static Value array(Array a = {});
  static Value object(Object o = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const { return int_; }
  double as_double() const { return kind_ == Kind::Int ? double(int_) : float_; }
  const std::string& as_string() const { return string_; }
  const Array& items() const { return array_; }
  const Object& members() const { return object_; }

  const Value* find(const std::string& key) const;  // nullptr if absent or not an object
  Value& push_back(Value v);                         // arrays
  Value& set(const std::string& key, Value v);       // objects: replaces an existing key

  // Compact or indented (indent > 0) text; floats print with enough digits to round-trip.
  std::string dump(int indent = 0) const;

 private:
  void dump_to(std::string& out, int indent, int depth) const;
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string string_;
  Array array_;
  Object object_;
};

const char* kind_name(Value::Kind k);  // "integer", "string", ...

// Parses exactly one JSON value from `text` (trailing whitespace allowed). Throws mlarun::Error whose message
// starts with `source` (a file name) and gives the byte offset. Rejects invalid UTF-8 and duplicate keys.
Value parse(const std::string& text, const std::string& source);
Value parse_file(const std::string& path);

// Checks that `bytes` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(const std::string& bytes);

}  // namespace mlarun::json
