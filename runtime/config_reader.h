// ConfigReader: typed access to one mapping of a config tree that remembers which keys were read, so unknown
// keys can be reported, and builds every error as "<file>: key '<path>': <value> <problem>".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>

#include "runtime/json_fwd.h"

namespace mlarun {

class ConfigReader {
 public:
  ConfigReader(const json::Value& tree, std::string source, std::string prefix = "");

  bool has(const std::string& key) const;
  bool is_null(const std::string& key) const;

  int64_t require_int(const std::string& key);
  int64_t get_int(const std::string& key, int64_t def);
  int64_t get_int_or_null(const std::string& key, int64_t def);  // null also gives def
  double require_double(const std::string& key);
  double get_double(const std::string& key, double def);
  double get_double_or_null(const std::string& key, double def);
  bool get_bool(const std::string& key, bool def);
  std::string get_string(const std::string& key, const std::string& def);
  std::string get_string_or_null(const std::string& key, const std::string& def);
  ConfigReader child(const std::string& key);  // a nested mapping

  void ignore_keys(std::initializer_list<const char*> keys);
  void reject_unknown_keys() const;  // throws on the first key never read
  void warn_unknown_keys() const;    // prints one line on stderr per key never read

  [[noreturn]] void bad_value(const std::string& key, const std::string& value, const std::string& problem) const;
  const std::string& source() const { return source_; }

 private:
  const json::Value* lookup(const std::string& key);
  double finite(const std::string& key, const json::Value& number) const;  // throws on infinity and NaN
  [[noreturn]] void wrong_type(const std::string& key, const json::Value& v, const char* expected) const;
  std::string path(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

  const json::Value& tree_;
  std::string source_;
  std::string prefix_;
  std::set<std::string> used_;
};

}  // namespace mlarun
