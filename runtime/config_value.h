// Reading config files into one typed tree, whatever their format: JSON goes through the strict parse in
// json.h (nlohmann-json underneath), YAML through yaml-cpp with each plain scalar resolved by the YAML 1.2 core schema (quoted scalars stay
// strings), so "dim: 2048" and "dim: '2048'" are told apart exactly as in JSON. Duplicate keys are errors, and so
// are the core schema's .inf/.nan (a config takes finite numbers only). Anchors and aliases are allowed, but what a
// YAML document expands to is bounded, since a few hundred bytes of nested aliases can stand for billions of values.
#pragma once

#include <cstddef>
#include <string>

#include "runtime/json_fwd.h"

namespace mlarun {

// Bounds on a YAML config after its aliases are expanded (a DeepSeek config holds about 40 values and 1 KB):
// every mapping, list and scalar counts as a value, every key and scalar adds its bytes; nesting is bounded by
// json::kMaxDepth as in JSON. An alias that refers to a node containing it is refused.
inline constexpr size_t kMaxYamlValues = 100'000;
inline constexpr size_t kMaxYamlTextBytes = size_t(16) << 20;

// Reads `path` as YAML when it ends in .yaml/.yml, otherwise as JSON.
json::Value load_config_tree(const std::string& path);
json::Value parse_yaml(const std::string& text, const std::string& source);

}  // namespace mlarun
