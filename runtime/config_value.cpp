// YAML -> json::Value (nlohmann) conversion with the core-schema scalar rules (see config_value.h).
#include "runtime/config_value.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

json::Value resolve_plain_scalar(const std::string& s, const std::string& source, const std::string& where) {
  static const std::regex int_re("[-+]?[0-9]+");
  static const std::regex float_re("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return json::Value(nullptr);
  if (s == "true" || s == "True" || s == "TRUE") return json::Value(true);
  if (s == "false" || s == "False" || s == "FALSE") return json::Value(false);
  if (std::regex_match(s, int_re)) {
    errno = 0;
    long long v = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == 0) return json::Value(int64_t(v));
    fail(source, ": key '", where, "': integer ", s, " does not fit in a signed 64-bit integer");
  }
  if (std::regex_match(s, float_re)) {
    double d = std::strtod(s.c_str(), nullptr);
    if (!std::isfinite(d)) fail(source, ": key '", where, "': number ", s, " is out of range for a double");
    return json::Value(d);
  }
  return json::Value(s);
}

json::Value convert(const YAML::Node& node, const std::string& source, const std::string& where) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: return json::Value(nullptr);
    case YAML::NodeType::Scalar:
      // yaml-cpp tags plain scalars "?" and quoted ones "!".
      if (node.Tag() == "!") return json::Value(node.Scalar());
      return resolve_plain_scalar(node.Scalar(), source, where.empty() ? "<root>" : where);
    case YAML::NodeType::Sequence: {
      json::Value arr = json::Value::array();
      for (size_t i = 0; i < node.size(); ++i)
        arr.push_back(convert(node[i], source, where + "[" + std::to_string(i) + "]"));
      return arr;
    }
    case YAML::NodeType::Map: {
      json::Value obj = json::Value::object();
      std::set<std::string> seen;
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) fail(source, ": non-scalar key in mapping ", where.empty() ? "<root>" : where);
        std::string key = kv.first.Scalar();
        if (!seen.insert(key).second) fail(source, ": duplicate key '", key, "'");
        obj[key] = convert(kv.second, source, where.empty() ? key : where + "." + key);
      }
      return obj;
    }
  }
  return json::Value(nullptr);
}

}  // namespace

json::Value parse_yaml(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(source, ": invalid YAML at line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg);
  }
  return convert(root, source, "");
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
