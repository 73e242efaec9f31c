// Typed, tracked reads from a config mapping (see config_reader.h); numbers are finite by the time they leave.
#include "runtime/config_reader.h"

#include <cmath>
#include <iostream>

#include "runtime/error.h"
#include "runtime/json.h"

namespace mlarun {

ConfigReader::ConfigReader(const json::Value& tree, std::string source, std::string prefix)
    : tree_(tree), source_(std::move(source)), prefix_(std::move(prefix)) {
  if (!tree_.is_object())
    fail(source_, ": ", prefix_.empty() ? "the config" : "key '" + prefix_ + "'", " must be a mapping, got a ",
         json::kind_name(tree_));
}

bool ConfigReader::has(const std::string& key) const { return json::find(tree_, key) != nullptr; }

bool ConfigReader::is_null(const std::string& key) const {
  const json::Value* v = json::find(tree_, key);
  return v && v->is_null();
}

const json::Value* ConfigReader::lookup(const std::string& key) {
  used_.insert(key);
  return json::find(tree_, key);
}

void ConfigReader::bad_value(const std::string& key, const std::string& value, const std::string& problem) const {
  fail(source_, ": key '", path(key), "': value ", value, ": ", problem);
}

void ConfigReader::wrong_type(const std::string& key, const json::Value& v, const char* expected) const {
  fail(source_, ": key '", path(key), "': expected ", expected, ", got ", json::kind_name(v), " ", json::show(v));
}

int64_t ConfigReader::require_int(const std::string& key) {
  const json::Value* v = lookup(key);
  if (!v || v->is_null()) fail(source_, ": missing required key '", path(key), "'");
  return get_int(key, 0);
}

int64_t ConfigReader::get_int(const std::string& key, int64_t def) {
  const json::Value* v = lookup(key);
  if (!v) return def;
  if (std::optional<int64_t> i = json::to_int64(*v)) return *i;
  if (v->is_number_integer()) bad_value(key, json::show(*v), "does not fit in a signed 64-bit integer");
  // 2048.0 is accepted as an integer (some tools write floats); 2048.5 is not.
  if (v->is_number_float()) {
    double d = finite(key, *v);
    if (std::floor(d) == d && std::fabs(d) < 9e15) return int64_t(d);
  }
  wrong_type(key, *v, "an integer");
}

int64_t ConfigReader::get_int_or_null(const std::string& key, int64_t def) {
  if (is_null(key)) {
    used_.insert(key);
    return def;
  }
  return get_int(key, def);
}

double ConfigReader::require_double(const std::string& key) {
  const json::Value* v = lookup(key);
  if (!v || v->is_null()) fail(source_, ": missing required key '", path(key), "'");
  return get_double(key, 0);
}

double ConfigReader::get_double(const std::string& key, double def) {
  const json::Value* v = lookup(key);
  if (!v) return def;
  if (!v->is_number()) wrong_type(key, *v, "a number");
  return finite(key, *v);
}

double ConfigReader::finite(const std::string& key, const json::Value& v) const {
  // The parsers refuse numbers that overflow a double; a tree built in code may still hold one.
  double d = v.get<double>();
  if (!std::isfinite(d)) bad_value(key, detail::concat(d), "a config takes finite numbers only");
  return d;
}

double ConfigReader::get_double_or_null(const std::string& key, double def) {
  if (is_null(key)) {
    used_.insert(key);
    return def;
  }
  return get_double(key, def);
}

bool ConfigReader::get_bool(const std::string& key, bool def) {
  const json::Value* v = lookup(key);
  if (!v || v->is_null()) return def;
  if (!v->is_boolean()) wrong_type(key, *v, "true or false");
  return v->get<bool>();
}

std::string ConfigReader::get_string(const std::string& key, const std::string& def) {
  const json::Value* v = lookup(key);
  if (!v) return def;
  if (!v->is_string()) wrong_type(key, *v, "a string");
  return v->get<std::string>();
}

std::string ConfigReader::get_string_or_null(const std::string& key, const std::string& def) {
  if (is_null(key)) {
    used_.insert(key);
    return def;
  }
  return get_string(key, def);
}

ConfigReader ConfigReader::child(const std::string& key) {
  const json::Value* v = lookup(key);
  if (!v) fail(source_, ": missing required key '", path(key), "'");
  if (!v->is_object()) wrong_type(key, *v, "a mapping");
  return ConfigReader(*v, source_, path(key));
}

void ConfigReader::ignore_keys(std::initializer_list<const char*> keys) {
  for (const char* k : keys) used_.insert(k);
}

void ConfigReader::reject_unknown_keys() const {
  for (const auto& [key, value] : tree_.items())
    if (!used_.count(key)) fail(source_, ": unknown key '", path(key), "' (value ", json::show(value), ")");
}

void ConfigReader::warn_unknown_keys() const {
  for (const auto& [key, value] : tree_.items())
    if (!used_.count(key)) std::cerr << "warning: " << source_ << ": ignoring unknown key '" << path(key) << "'\n";
}

}  // namespace mlarun
