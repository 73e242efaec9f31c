// YAML -> json::Value (nlohmann) conversion with the core-schema scalar rules (see config_value.h). yaml-cpp
// shares an anchored node among its aliases, so a few hundred bytes of nested aliases ("billion laughs") parse
// into a tiny graph that would expand into billions of values here; the conversion therefore counts what it
// builds and stops at the bounds in config_value.h, and refuses an alias that contains itself. Scalars are
// classified by hand, not by std::regex, whose recursive matcher overflows the stack on a long scalar.
#include "runtime/config_value.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

// Skips a run of digits from `i`; returns how many there were.
size_t digits(const std::string& s, size_t& i) {
  size_t start = i;
  while (i < s.size() && is_digit(s[i])) ++i;
  return i - start;
}

// Core schema int: [-+]?[0-9]+
bool is_core_int(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  return digits(s, i) > 0 && i == s.size();
}

// Core schema float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_core_float(const std::string& s) {
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits(s, i) == 0) return false;
  } else {
    if (digits(s, i) == 0) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits(s, i);
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits(s, i) == 0) return false;
  }
  return i == s.size();
}

// Core schema infinities and NaN: [-+]?(\.inf|\.Inf|\.INF) and \.nan|\.NaN|\.NAN.
bool is_core_nonfinite(const std::string& s) {
  std::string t = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? s.substr(1) : s;
  if (t == ".inf" || t == ".Inf" || t == ".INF") return true;
  return s == ".nan" || s == ".NaN" || s == ".NAN";
}

// A scalar as an error message shows it: a long one is cut, so a message stays a line.
std::string shown(const std::string& s) {
  return s.size() <= 64 ? s : s.substr(0, 40) + "... (" + std::to_string(s.size()) + " characters)";
}

json::Value resolve_plain_scalar(const std::string& s, const std::string& source, const std::string& where) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return json::Value(nullptr);
  if (s == "true" || s == "True" || s == "TRUE") return json::Value(true);
  if (s == "false" || s == "False" || s == "FALSE") return json::Value(false);
  if (is_core_int(s)) {
    errno = 0;
    long long v = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == 0) return json::Value(int64_t(v));
    fail(source, ": key '", where, "': integer ", shown(s), " does not fit in a signed 64-bit integer");
  }
  if (is_core_float(s)) {
    double d = std::strtod(s.c_str(), nullptr);
    if (!std::isfinite(d)) fail(source, ": key '", where, "': number ", shown(s), " is out of range for a double");
    return json::Value(d);
  }
  if (is_core_nonfinite(s))
    fail(source, ": key '", where, "': value ", s, ": a config takes finite numbers only (no infinity or NaN)");
  return json::Value(s);
}

// One conversion: the running totals that bound it, and the nodes being converted (to catch an alias cycle).
class Converter {
 public:
  explicit Converter(const std::string& source) : source_(source) {}

  json::Value convert(const YAML::Node& node, const std::string& where) {
    const std::string& at = where.empty() ? std::string("<root>") : where;
    if (++nodes_ > kMaxYamlValues)
      fail(source_, ": key '", at, "': the YAML expands to more than ", kMaxYamlValues,
           " values (aliases of anchors count once per use); a config is far smaller");
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null: return json::Value(nullptr);
      case YAML::NodeType::Scalar:
        charge(node.Scalar().size(), at);
        // yaml-cpp tags plain scalars "?" and quoted ones "!".
        if (node.Tag() == "!") return json::Value(node.Scalar());
        return resolve_plain_scalar(node.Scalar(), source_, at);
      case YAML::NodeType::Sequence: {
        Enter enter(*this, node, at);
        json::Value arr = json::Value::array();
        size_t i = 0;
        for (const YAML::Node& item : node) arr.push_back(convert(item, where + "[" + std::to_string(i++) + "]"));
        return arr;
      }
      case YAML::NodeType::Map: {
        Enter enter(*this, node, at);
        json::Value obj = json::Value::object();
        std::set<std::string> seen;
        for (const auto& kv : node) {
          if (!kv.first.IsScalar()) fail(source_, ": non-scalar key in mapping ", at);
          std::string key = kv.first.Scalar();
          charge(key.size(), at);
          if (!seen.insert(key).second) fail(source_, ": duplicate key '", key, "'");
          obj[key] = convert(kv.second, where.empty() ? key : where + "." + key);
        }
        return obj;
      }
    }
    return json::Value(nullptr);
  }

 private:
  // Marks a mapping or list as being converted for the lifetime of the object.
  class Enter {
   public:
    Enter(Converter& c, const YAML::Node& node, const std::string& at) : c_(c) {
      if (c_.open_.size() >= size_t(json::kMaxDepth))
        c_.fail_at(at, "nesting deeper than " + std::to_string(json::kMaxDepth) + " levels");
      for (const YAML::Node& open : c_.open_)
        if (open.is(node)) c_.fail_at(at, "an alias refers to a mapping or list that contains it (a cycle)");
      c_.open_.push_back(node);
    }
    ~Enter() { c_.open_.pop_back(); }

   private:
    Converter& c_;
  };

  void charge(size_t bytes, const std::string& at) {
    bytes_ += bytes;
    if (bytes_ > kMaxYamlTextBytes)
      fail_at(at, "the YAML expands to more than " + std::to_string(kMaxYamlTextBytes) +
                      " bytes of keys and scalars (aliases of anchors count once per use)");
  }

  [[noreturn]] void fail_at(const std::string& at, const std::string& what) const {
    fail(source_, ": key '", at, "': ", what);
  }

  const std::string& source_;
  size_t nodes_ = 0;
  size_t bytes_ = 0;
  std::vector<YAML::Node> open_;  // the mappings and lists being converted, outermost first
};

}  // namespace

json::Value parse_yaml(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(source, ": invalid YAML at line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg);
  }
  return Converter(source).convert(root, "");
}

json::Value load_config_tree(const std::string& path) {
  if (ends_with(path, ".yaml") || ends_with(path, ".yml")) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot open config file '", path, "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    return parse_yaml(ss.str(), path);
  }
  return json::parse_file(path);
}

}  // namespace mlarun
