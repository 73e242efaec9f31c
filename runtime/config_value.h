// Reading config files into one typed tree, whatever their format: JSON goes through the strict parse in
// json.h (nlohmann-json underneath), YAML through yaml-cpp with each plain scalar resolved by the YAML 1.2 core schema (quoted scalars stay
// strings), so "dim: 2048" and "dim: '2048'" are told apart exactly as in JSON. Duplicate keys are errors.
#pragma once

#include <string>

#include "runtime/json_fwd.h"

namespace mlarun {

// Reads `path` as YAML when it ends in .yaml/.yml, otherwise as JSON.
json::Value load_config_tree(const std::string& path);
json::Value parse_yaml(const std::string& text, const std::string& source);

}  // namespace mlarun
